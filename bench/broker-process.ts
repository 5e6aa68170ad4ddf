/**
 * The benches' MQTT broker, in its own process: aedes on 127.0.0.1, checking the aliyun signature of every CONNECT.
 * Plain TCP, or TLS with BROKER_TLS=1 (a CA generated at start, written to CA_FILE). BROKER_AUTH=plain checks
 * `auth: 'plain'` credentials instead (bench/lib/aedes.ts). With CLIENT_CA_FILE (and BROKER_TLS=1) the TLS handshake
 * requires a client certificate of that CA, which is then the credential (`auth: 'x509'`, issue 17). Prints `port <n>`.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { Aedes } from 'aedes'
import { verifyAliyunCredentials } from 'mqtt-bootstrap'
import { generateCertificates } from '../packages/mqtt-bootstrap-server/src/cli/certificates.js'
import { plainAccepts } from './lib/aedes.js'
import { deviceSecret, PRODUCT_KEY } from './lib/fleet-secrets.js'
import { serveToParent } from './lib/processes.js'

const clientCa = process.env.CLIENT_CA_FILE === undefined ? undefined : readFileSync(process.env.CLIENT_CA_FILE)
const aedes = await Aedes.createBroker({
  authenticate(client, username, password, done) {
    const secretOf = (pk: string, dn: string) => (pk === PRODUCT_KEY ? deviceSecret(dn) : undefined)
    const ok =
      clientCa !== undefined // mutual TLS: only clients whose certificate verified got this far
        ? true
        : process.env.BROKER_AUTH === 'plain'
          ? plainAccepts(client.id, username, password)
          : verifyAliyunCredentials({ clientId: client.id, username, password }, secretOf) !== undefined
    done(ok ? null : Object.assign(new Error('bad signature'), { returnCode: 4 as const }), ok)
  },
})
let server: import('node:net').Server
if (process.env.BROKER_TLS === '1') {
  const tls = await generateCertificates(['127.0.0.1'])
  writeFileSync(process.env.CA_FILE ?? 'broker-ca.pem', tls.ca)
  const mutual = clientCa === undefined ? {} : { ca: clientCa, requestCert: true, rejectUnauthorized: true }
  server = createTlsServer({ key: tls.key, cert: tls.cert, noDelay: true, ...mutual }, aedes.handle)
} else {
  server = createServer({ noDelay: true }, aedes.handle)
}
server.maxConnections = 20_000
// A deep accept queue (Linux caps it at net.core.somaxconn): with the default 511, a fleet's connects overflow it and
// wait out TCP's one-second SYN retry, which made the raw fleet's time swing by a second between runs.
serveToParent(server, {
  backlog: 4096,
  stop: (exit) => {
    server.close()
    aedes.close(exit)
  },
})
