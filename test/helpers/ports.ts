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
