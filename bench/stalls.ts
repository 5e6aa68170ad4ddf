/**
 * `npm run bench:stalls`: how long a provisioning request takes to settle against a server that stalls at each stage
 * (TCP accepted and TLS never spoken; TLS done and no response headers; headers sent and the body stalled), with
 * `timeoutMs: 300`, and when the caller aborts 100 ms in. Loopback only; five of each, medians and maxima.
 */
import { once } from 'node:events'
import https from 'node:https'
import net, { type AddressInfo } from 'node:net'
import tls from 'node:tls'
import { PointAccess } from 'mqtt-bootstrap'
import { tlsFixture } from '../test/helpers/tls.js'
import { median, round } from './lib/stats.js'

const fixture = await tlsFixture()
const pem = { key: fixture.key, cert: fixture.cert, noDelay: true }
const servers: Record<string, net.Server> = {
  'TCP accepted, TLS never spoken': net.createServer((socket) => socket.on('data', () => {})),
  'TLS done, no response headers': tls.createServer(pem, (socket) => socket.on('data', () => {})),
  'headers sent, body stalls': https.createServer(pem, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-length': '64' })
    res.write('{"code":')
  }),
}

for (const [stage, server] of Object.entries(servers)) {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`
  const timedOut: number[] = []
  const aborted: number[] = []
  for (let i = 0; i < 5; i++) {
    const bounded = new PointAccess({ tls: { ca: fixture.ca }, timeoutMs: 300 })
    let started = performance.now()
    await bounded.request(url, {})
    timedOut.push(performance.now() - started)

    const unbounded = new PointAccess({ tls: { ca: fixture.ca }, timeoutMs: 60_000 })
    const controller = new AbortController()
    const pending = unbounded.request(url, {}, { signal: controller.signal }).catch(() => undefined)
    await new Promise((resolve) => setTimeout(resolve, 100))
    started = performance.now()
    controller.abort()
    await pending
    aborted.push(performance.now() - started)
  }
  const shown = (values: number[]) => `median ${round(median(values), 2)} ms, max ${round(Math.max(...values), 2)} ms`
  console.log(`${stage}: timeoutMs 300 -> ${shown(timedOut)}; abort -> ${shown(aborted)}`)
  ;(server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.()
  server.close()
}
process.exit(0)
