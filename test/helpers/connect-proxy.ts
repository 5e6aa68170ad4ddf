/**
 * A real HTTP CONNECT proxy on 127.0.0.1, port 0, that tunnels to loopback only: a 127.0.0.x address as named, and
 * `provision.test`, a name only it resolves (to 127.0.0.1); any other host is refused with 403. `silent` makes it read
 * CONNECTs and never answer them. With `tls`, an https:// proxy with that certificate.
 */
import { once } from 'node:events'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type { TlsFixture } from './tls.js'

export interface ConnectProxy {
  /** `http://127.0.0.1:<port>` (`https://` with `tls`) */
  url: string
  /** Targets of the CONNECTs received. */
  tunnels: string[]
  /** Client connections the proxy holds open. */
  readonly open: number
  /** Accept CONNECTs and never answer them. */
  silent: boolean
  close(): Promise<void>
}

export async function startConnectProxy(tls?: TlsFixture): Promise<ConnectProxy> {
  const held = new Set<net.Socket>()
  const refuse = (_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(405).end()
  const server = tls
    ? https.createServer({ key: tls.key, cert: tls.cert, noDelay: true }, refuse)
    : http.createServer(refuse)
  const proxy: ConnectProxy = {
    url: '',
    tunnels: [],
    get open() {
      return held.size
    },
    silent: false,
    close: async () => {
      for (const socket of held) socket.destroy()
      server.close()
      await once(server, 'close')
    },
  }
  server.on('connection', (socket: net.Socket) => {
    held.add(socket)
    socket.on('close', () => held.delete(socket))
  })
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    proxy.tunnels.push(req.url ?? '')
    client.on('error', () => {})
    // An http.Server's sockets are half-open: end ours when the client ends, as a proxy would.
    client.on('end', () => client.end())
    if (proxy.silent) {
      client.resume()
      return
    }
    const [host = '', port] = (req.url ?? '').split(':')
    const target = host === 'provision.test' ? '127.0.0.1' : host
    if (!/^127\.0\.0\.\d{1,3}$/.test(target)) {
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n')
      return
    }
    const upstream = net.connect(Number(port), target, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    upstream.on('error', () => client.destroy())
    upstream.on('close', () => client.destroy())
    client.on('close', () => upstream.destroy())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  proxy.url = `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  return proxy
}
