/**
 * The claims bench's provisioning server, in its own process (its CPU is asked for over IPC, apart from the device's):
 * the reference handler twice on one HTTPS server, `/signed` with `verify: signedClaims(…)` over a MemoryNonceStore
 * (keys derived from GROUP_KEY, identity `imei`) and `/plain` without verify, both answering any `{ imei }` with the
 * same configuration. A CA generated at start, written to CA_FILE. Prints `port <n>`; answers 'verify-cpu' with the
 * CPU the verifier itself has used so far, and the number of claims.
 */
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:https'
import { createProvisioningHandler, deriveDeviceKey, MemoryNonceStore, signedClaims } from 'mqtt-bootstrap-server'
import { generateCertificates } from '../packages/mqtt-bootstrap-server/src/cli/certificates.js'
import { serveToParent } from './lib/processes.js'

// Decoded once, as the JSON registry does (claims/declaration.ts).
const groupKey = Buffer.from(process.env.GROUP_KEY ?? '', 'base64')
const tls = await generateCertificates(['127.0.0.1'])
writeFileSync(process.env.CA_FILE ?? 'bench-ca.pem', tls.ca)

const resolve = (data: unknown) => {
  const imei = (data as { imei?: unknown } | null)?.imei
  if (typeof imei !== 'string') return undefined
  return {
    device: { productKey: 'a1BenchPK01', deviceName: `meter-${imei}`, deviceSecret: `bench-secret-${imei}` },
    connect: { host: '127.0.0.1:1883', qos: 1, cleanSession: 1 },
  }
}
const plain = createProvisioningHandler({ resolve })
const verifier = signedClaims({
  keyFor: (id) => deriveDeviceKey(groupKey, id),
  identity: 'imei',
  // One bench device signs every claim (1,500 a run): the per-key bound that protects a real fleet would stop it.
  nonces: new MemoryNonceStore({ maxPerKey: Number.MAX_SAFE_INTEGER }),
})
/** The verifier's own CPU (its awaits included: nothing else runs meanwhile, the requests come one at a time). */
const verifyCpu = { us: 0, calls: 0 }
const signed = createProvisioningHandler({
  resolve,
  verify: async (claim) => {
    const before = process.cpuUsage()
    try {
      return await verifier(claim)
    } finally {
      const used = process.cpuUsage(before)
      verifyCpu.us += used.user + used.system
      verifyCpu.calls++
    }
  },
})
const server = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, (req, res) =>
  (req.url === '/signed' ? signed : plain)(req, res),
)
serveToParent(server, { onMessage: (message) => message === 'verify-cpu' && process.send?.({ ...verifyCpu }) })
