/**
 * A real aedes broker behind a mutual-TLS listener on 127.0.0.1, port 0 (issue 17): the TLS handshake requires a
 * client certificate that chains to `clientCa`, as a broker configured for device certificates does. It records the
 * certificate each accepted client presented and the CONNECT fields it sent.
 */
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import tls, { type TLSSocket } from 'node:tls'
import { Aedes } from 'aedes'
import type { TlsFixture } from './tls.js'

export interface MtlsBroker {
  host: string
  port: number
  /** Per accepted CONNECT: the client certificate's fingerprint (SHA-256) and CN, and the CONNECT fields. */
  readonly clients: Array<{
    fingerprint256: string
    cn: string
    clientId: string
    username?: string
    password?: string
  }>
  /** TLS handshakes the broker refused (no certificate, or one of another CA). */
  readonly refused: string[]
  /** What clients published (not the broker's own $SYS messages): topic and payload. */
  readonly published: Array<{ topic: string; payload: string }>
  close(): Promise<void>
}

export async function startMtlsBroker(server: TlsFixture, clientCa: string | string[]): Promise<MtlsBroker> {
  const clients: MtlsBroker['clients'] = []
  const refused: string[] = []
  const published: MtlsBroker['published'] = []
  const peers = new WeakMap<object, TLSSocket>()
  const aedes = await Aedes.createBroker({
    preConnect(client, packet, done) {
      const socket = peers.get((client as unknown as { conn: object }).conn)
      const peer = socket?.getPeerCertificate()
      clients.push({
        fingerprint256: peer?.fingerprint256 ?? '',
        cn: String(peer?.subject?.CN ?? ''),
        clientId: packet.clientId,
        username: packet.username,
        password: packet.password?.toString(),
      })
      done(null, true)
    },
  })
  aedes.on('publish', (packet, client) => {
    if (client) published.push({ topic: packet.topic, payload: packet.payload.toString() })
  })
  const listener = tls.createServer(
    { key: server.key, cert: server.cert, ca: clientCa, requestCert: true, rejectUnauthorized: true, noDelay: true },
    (socket) => {
      peers.set(socket, socket)
      aedes.handle(socket)
    },
  )
  listener.on('tlsClientError', (error: Error & { code?: string }) => refused.push(error.code ?? error.message))
  listener.listen(0, '127.0.0.1')
  await once(listener, 'listening')
  const port = (listener.address() as AddressInfo).port
  return {
    host: `127.0.0.1:${port}`,
    port,
    clients,
    refused,
    published,
    close: async () => {
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      listener.close()
    },
  }
}
