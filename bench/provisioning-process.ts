/**
 * The benches' provisioning server, in its own process: the reference handler over HTTPS (a CA generated at start,
 * written to CA_FILE), answering any `{ imei: "dev-<n>" }` with that device's credentials for BROKER_HOST. With
 * REFUSE_FIRST=<fraction>, that share of devices gets 503 + Retry-After: RETRY_AFTER on its first request. Prints
 * `port <n>`; on the IPC message 'report' sends back the time of every request (ms since its start). With
 * ISSUING_CA_FILE and ISSUING_KEY_FILE it issues certificates for the CSRs devices send (issue 17).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:https'
import { createProvisioningHandler, issueCertificates } from 'mqtt-bootstrap-server'
import { generateCertificates } from '../packages/mqtt-bootstrap-server/src/cli/certificates.js'
import { deviceSecret, PRODUCT_KEY } from './lib/fleet-secrets.js'
import { serveToParent } from './lib/processes.js'

const brokerHost = process.env.BROKER_HOST ?? '127.0.0.1:1883'
const refuseFirst = Number(process.env.REFUSE_FIRST ?? 0)
const retryAfter = process.env.RETRY_AFTER ?? '1'
const tls = await generateCertificates(['127.0.0.1'])
writeFileSync(process.env.CA_FILE ?? 'bench-ca.pem', tls.ca)

const started = performance.now()
const requests: number[] = []
const seen = new Set<string>()
const { ISSUING_CA_FILE: caFile, ISSUING_KEY_FILE: keyFile } = process.env
const issue =
  caFile === undefined || keyFile === undefined
    ? undefined
    : issueCertificates({
        ca: { cert: readFileSync(caFile, 'utf8'), key: readFileSync(keyFile, 'utf8') },
        validitySeconds: 86_400,
      })
const handler = createProvisioningHandler({
  ...(issue === undefined ? {} : { issue }),
  resolve: (data) => {
    const name = (data as { imei?: unknown } | null)?.imei
    if (typeof name !== 'string' || !name.startsWith('dev-')) return undefined
    return {
      device: { productKey: PRODUCT_KEY, deviceName: name, deviceSecret: deviceSecret(name) },
      connect: { host: brokerHost, qos: 1, cleanSession: 1 },
    }
  },
})
const server = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, (req, res) => {
  requests.push(performance.now() - started)
  // The first request of a device that hashes into the refused share: 503 + Retry-After, as an overloaded server.
  let body = ''
  req.on('data', (chunk: Buffer) => {
    body += chunk.toString()
  })
  req.on('end', () => {
    const name = /"imei":"([^"]+)"/.exec(body)?.[1] ?? ''
    const index = Number(name.slice(4))
    if (refuseFirst > 0 && !seen.has(name) && (index * 7919) % 1000 < refuseFirst * 1000) {
      seen.add(name)
      res.writeHead(503, { 'retry-after': retryAfter, 'content-type': 'application/json' }).end('{"code":"77777"}')
      return
    }
    seen.add(name)
    handler(req, res, JSON.parse(body))
  })
})
server.maxConnections = 20_000
serveToParent(server, {
  backlog: 2048,
  onMessage: (message) => {
    if (message === 'report') process.send?.({ requests })
    if (message === 'reset') {
      requests.length = 0
      seen.clear()
    }
  },
})
