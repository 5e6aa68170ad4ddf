/** Loopback ports for tests that need one with nothing listening (a server to start later, a connect to be refused). */
import { once } from 'node:events'
import net, { type AddressInfo } from 'node:net'

/** A port free on 127.0.0.1 a moment ago (bound to port 0, then closed), other than those in `avoid`. */
export async function freePort(avoid: readonly number[] = []): Promise<number> {
  for (let i = 0; i < 10; i++) {
    const server = net.createServer().listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as AddressInfo
    server.close()
    await once(server, 'close')
    if (!avoid.includes(port)) return port
  }
  throw new Error('no free port on 127.0.0.1')
}

/** An HTTP(S) server, as far as listening and closing go. */
interface Listening {
  listen(port: number, host: string): unknown
  address(): AddressInfo | string | null
  close(): unknown
  closeAllConnections?(): void
  once(event: string, listener: () => void): unknown
}

/**
 * `server` listening on 127.0.0.1 and a port the system picks; answers the port and `close()`, which ends its open
 * connections too (keep-alive clients would hold it open) and resolves once it has closed.
 */
export async function listenOnLoopback(server: Listening): Promise<{ port: number; close(): Promise<void> }> {
  server.listen(0, '127.0.0.1')
  await new Promise<void>((resolve) => server.once('listening', resolve))
  const { port } = server.address() as AddressInfo
  return {
    port,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.once('close', resolve))
      server.closeAllConnections?.()
      server.close()
      await closed
    },
  }
}
