/** A TCP server on 127.0.0.1 that accepts connections and never says a word: a server or broker that hangs. */
import { once } from 'node:events'
import net from 'node:net'

export interface SilentServer {
  readonly port: number
  /** Drop every connection it holds, then stop listening. */
  close(): Promise<void>
}

export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, 'close')
    },
  }
}
