/**
 * An aedes broker in the bench's own process, on 127.0.0.1, plain TCP, checking `auth: 'plain'` CONNECTs (password =
 * the device's secret): what the cached-boot figures are measured against. Both sides of every comparison
 * pay the broker's work alike.
 */
import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import { Aedes } from 'aedes'
import { deviceSecret, PRODUCT_KEY } from './fleet-secrets.js'

export interface InProcessBroker {
  host: string
  stop(): Promise<void>
}

/** Plain credentials: clientId `${PRODUCT_KEY}.${name}`, username `name`, password its secret. */
export function plainAccepts(clientId: string, username: string | undefined, password: Buffer | undefined): boolean {
  if (username === undefined || password === undefined || clientId !== `${PRODUCT_KEY}.${username}`) return false
  return password.toString() === secretOf(username)
}

const secrets = new Map<string, string>()
/** The broker looks a secret up as a registry would, not by an HMAC per CONNECT. */
function secretOf(name: string): string {
  let secret = secrets.get(name)
  if (secret === undefined) {
    secret = deviceSecret(name)
    secrets.set(name, secret)
  }
  return secret
}

export async function startInProcessBroker(): Promise<InProcessBroker> {
  const aedes = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const ok = plainAccepts(client.id, username, password)
      done(ok ? null : Object.assign(new Error('bad credentials'), { returnCode: 4 as const }), ok)
    },
  })
  const sockets = new Set<Socket>()
  const server = createServer({ noDelay: true }, (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    aedes.handle(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return {
    host: `127.0.0.1:${port}`,
    stop: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    },
  }
}
