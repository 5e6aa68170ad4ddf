/**
 * A real aedes broker on 127.0.0.1, port 0 (plain TCP or TLS), checking aliyun or plain credentials, or with a check of
 * the test's own.
 */
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import tls from 'node:tls'
import { Aedes } from 'aedes'
import {
  type AliyunVerifyOptions,
  signAliyun,
  verifyAliyunCredentials,
} from '../../packages/mqtt-bootstrap/src/index.js'
import { suite } from './exposure.js'
import type { TlsFixture } from './tls.js'

export interface ConnectRecord {
  clientId: string
  username: string | undefined
  password: string | undefined
  clean: boolean
  keepalive: number
}

/** A broker's check of the CONNECT fields. */
export type BrokerCheck = (connect: {
  clientId: string
  username?: string | undefined
  password?: Buffer | undefined
}) => boolean

export interface TestBroker {
  /** `127.0.0.1:<port>`: what a provisioning server answers as connect.host. */
  host: string
  port: number
  /** Every CONNECT the broker saw, accepted or not. */
  connects: ConnectRecord[]
  /** Accepted connections. */
  accepted: number
  /** Publishes from clients: topic and QoS. */
  published: Array<{ topic: string; qos: number; payload: string }>
  subscribed: Array<{ topic: string; qos: number }>
  /** Device secrets the broker accepts, by `${productKey}.${deviceName}`. */
  secrets: Map<string, string>
  /** Return codes (2 to 5) to refuse the next CONNECTs with, whatever their credentials. */
  refuse: number[]
  /**
   * The aliyun timestamp check (verifyAliyunCredentials' options). By default any timestamp passes: the devices under
   * test sign with whatever clock their test injects (a FakeClock starts in 2023). Set it to check freshness.
   */
  freshness: AliyunVerifyOptions
  /** Cut every client connection (as a network failure or a broker restart would). */
  drop(): void
  close(): Promise<void>
}

export async function startBroker(
  options: {
    /** A function: the test's own check of each CONNECT's fields. */
    auth?: 'aliyun' | 'plain' | 'none' | BrokerCheck
    tls?: TlsFixture
    secrets?: Record<string, string>
    port?: number
    freshness?: AliyunVerifyOptions
  } = {},
): Promise<TestBroker> {
  const auth = options.auth ?? 'aliyun'
  const secrets = new Map(Object.entries(options.secrets ?? {}))
  const record: Pick<TestBroker, 'connects' | 'published' | 'subscribed' | 'refuse' | 'freshness'> & {
    accepted: number
  } = {
    connects: [],
    published: [],
    subscribed: [],
    refuse: [],
    freshness: options.freshness ?? { maxSkewMs: Number.POSITIVE_INFINITY },
    accepted: 0,
  }
  const aedes = await Aedes.createBroker({
    preConnect(_client, packet, done) {
      suite.secret(packet.password?.toString())
      record.connects.push({
        clientId: packet.clientId,
        username: packet.username,
        password: packet.password?.toString(),
        clean: packet.clean ?? true,
        keepalive: packet.keepalive ?? 0,
      })
      done(null, true)
    },
    authenticate(client, username, password, done) {
      const forced = record.refuse.shift()
      if (forced !== undefined) {
        done(Object.assign(new Error('refused by the test'), { returnCode: forced as 2 | 3 | 4 | 5 }), false)
        return
      }
      const ok = (() => {
        if (auth === 'none') return true
        if (typeof auth === 'function') return auth({ clientId: client.id, username, password })
        if (auth === 'plain') {
          const [productKey] = client.id.split('.')
          return secrets.get(`${productKey}.${username}`) === password?.toString()
        }
        const lookup = (productKey: string, deviceName: string) =>
          secrets.get(`${productKey}.${deviceName}`) ?? peers.get(`${productKey}.${deviceName}`)
        const connect = { clientId: client.id, username, password }
        return verifyAliyunCredentials(connect, lookup, record.freshness) !== undefined
      })()
      if (ok) {
        record.accepted++
        done(null, true)
      } else {
        done(Object.assign(new Error('bad username or password'), { returnCode: 4 as const }), false)
      }
    },
  })
  aedes.on('publish', (packet, client) => {
    if (client) record.published.push({ topic: packet.topic, qos: packet.qos, payload: packet.payload.toString() })
  })
  aedes.on('subscribe', (subscriptions) => {
    for (const { topic, qos } of subscriptions) record.subscribed.push({ topic, qos })
  })
  const server = options.tls
    ? tls.createServer({ key: options.tls.key, cert: options.tls.cert, noDelay: true }, aedes.handle)
    : net.createServer(aedes.handle)
  server.listen(options.port ?? 0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  const sockets = new Set<net.Socket>()
  server.on(options.tls ? 'secureConnection' : 'connection', (socket: net.Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return Object.assign(record, {
    host: `127.0.0.1:${port}`,
    port,
    secrets,
    drop: () => {
      for (const socket of sockets) socket.destroy()
    },
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      server.close()
    },
  })
}

/** Devices signedAs() made up, by `${productKey}.${deviceName}`: every test broker knows them. */
const peers = new Map<string, string>()

/**
 * CONNECT fields another client can use (to publish to the device under test, say): a valid aliyun signature for a
 * sibling of `device`, deviceName `${deviceName}-${suffix}`, with its secret. Not the device itself: a clientId of
 * its own must name its own device (verifyAliyunCredentials refuses a cid naming another).
 */
export function signedAs(device: { productKey: string; deviceName: string; deviceSecret: string }, suffix: string) {
  const deviceName = `${device.deviceName}-${suffix}`
  peers.set(`${device.productKey}.${deviceName}`, device.deviceSecret)
  return signAliyun({
    cid: `${device.productKey}.${deviceName}`,
    productKey: device.productKey,
    deviceName,
    deviceSecret: device.deviceSecret,
    timestamp: Date.now(),
    signMethod: 'hmacsha256',
    secureMode: 3,
  })
}
