/** A real HTTPS server on 127.0.0.1, port 0, whose answers each test programs. */
import { once } from 'node:events'
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { suite } from './exposure.js'
import type { TlsFixture } from './tls.js'

export interface RecordedRequest {
  method: string
  path: string
  headers: IncomingHttpHeaders
  body: string
}

export type Handler = (request: RecordedRequest, response: ServerResponse) => unknown

export interface TestServer {
  /** `https://127.0.0.1:<port>/provision` */
  url: string
  port: number
  requests: RecordedRequest[]
  /** Replace the handler for the next requests. */
  handle(handler: Handler): void
  close(): Promise<void>
}

export async function startHttpsServer(
  tls: TlsFixture,
  handler: Handler,
  options: https.ServerOptions = {},
  port = 0,
  host = '127.0.0.1',
): Promise<TestServer> {
  const requests: RecordedRequest[] = []
  let current = handler
  // noDelay: without it every TLS exchange waits ~40 ms on Nagle + delayed ACK.
  const server = https.createServer({ key: tls.key, cert: tls.cert, noDelay: true, ...options }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const recorded = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      }
      requests.push(recorded)
      Promise.resolve(current(recorded, res)).catch((error: unknown) => {
        res.destroy(error as Error)
      })
    })
  })
  server.listen(port, host)
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  return {
    url: `https://${host}:${address.port}/provision`,
    port: address.port,
    requests,
    handle: (next) => {
      current = next
    },
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** Answer `body` as JSON. */
export function json(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  response.writeHead(status, { 'content-type': 'application/json', ...headers })
  response.end(typeof body === 'string' ? body : JSON.stringify(body))
}

export const DEVICE = Object.freeze({
  productKey: 'a1TestPK001',
  deviceName: 'device-001',
  deviceSecret: 'S3cr3t-device-001-XXXXXXXXXXXXXXX',
})

/** A valid "00000" answer. */
export function configAnswer(
  connect: { host: string; qos?: number; cleanSession?: number | boolean },
  device: Record<string, unknown> = DEVICE,
): { code: string; result: unknown } {
  suite.secret(device.deviceSecret)
  suite.secret(device.productSecret)
  return { code: '00000', result: { device, connect: { qos: 1, cleanSession: 1, ...connect } } }
}
