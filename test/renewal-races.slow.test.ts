/**
 * A renewal that lands at an awkward moment (issue 18), in real time against a real aedes broker whose hooks can
 * hold a PUBACK or a CONNACK back, and a real HTTP provisioning server that answers each claim a new secret with an
 * `expiresAt` and can hold a renewal's answer until the test lets it go:
 * - while mqtt.js resends its outgoing store after a reconnect (from the CONNACK to its 'connect'),
 * - while the app ends the client gracefully, waiting for a PUBACK,
 * - while an attempt with the old secret is on its way, and the broker refuses that old one,
 * - and a server answering lifetimes of milliseconds: one renewal a second at most, not a loop.
 * Real time, so on the machine's Node only in CI (`*.slow.test.ts`).
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import type { MqttClient } from 'mqtt'
import { afterEach, expect, test } from 'vitest'
import { type BootstrapOptions, MemoryCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import { boot } from './helpers/env.js'
import { suite } from './helpers/exposure.js'

const PK = 'a1RacePK'
const NAME = 'race-device-001'
/** How long the boot's secret lives, unless a test says: renewed 6 s in with {@link SOON}. */
const LIFETIME_MS = 60_000
/** How long a renewed secret lives: its own renewal a minute away, after any test's end. */
const RENEWED_LIFETIME_MS = 600_000

interface Rig {
  brokerUrl: string
  /** The secret of each CONNECT the broker saw, in order. */
  connects: string[]
  /** Payloads the broker accepted from clients. */
  published: string[]
  /** The secrets answered, claim by claim. */
  secrets: string[]
  url: string
  /** Cut every client connection (the network dropped). */
  drop(): void
  close(): Promise<void>
}

interface RigOptions {
  /** Delay before the broker accepts a publish (its PUBACK). */
  pubackDelayMs?: number
  /** The broker's answer to a CONNECT with `secret`: a delay and a refusal (`returnCode`), or undefined to accept. */
  refuse?: (secret: string) => { delayMs: number; returnCode: number } | undefined
  /** Wait before answering claim `n` (1 for the boot's). */
  hold?: (n: number) => Promise<void>
  /** The lifetime of the secret answered to claim `n`, in ms. @default LIFETIME_MS, then RENEWED_LIFETIME_MS */
  lifetimeMs?: (n: number) => number
}

const rigs: Rig[] = []
const clients: MqttClient[] = []

afterEach(async () => {
  for (const client of clients.splice(0)) await client.endAsync(true)
  await Promise.all(rigs.splice(0).map((rig) => rig.close()))
})

async function rig(options: RigOptions = {}): Promise<Rig> {
  const {
    pubackDelayMs = 0,
    refuse = () => undefined,
    hold = async () => {},
    lifetimeMs = (n) => (n === 1 ? LIFETIME_MS : RENEWED_LIFETIME_MS),
  } = options
  const connects: string[] = []
  const published: string[] = []
  const secrets: string[] = []
  const broker = await Aedes.createBroker({
    authenticate(_client, _username, password, done) {
      const secret = password?.toString() ?? ''
      connects.push(secret)
      const refusal = refuse(secret)
      if (refusal === undefined) return done(null, true)
      const error = Object.assign(new Error('refused'), { returnCode: refusal.returnCode })
      setTimeout(() => done(error as never, false), refusal.delayMs)
    },
    authorizePublish(_client, _packet, done) {
      setTimeout(() => done(null), pubackDelayMs)
    },
  })
  broker.on('publish', (packet, client) => {
    if (client) published.push(packet.payload.toString())
  })
  const sockets = new Set<net.Socket>()
  const tcp = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    broker.handle(socket)
  })
  tcp.listen(0, '127.0.0.1')
  await once(tcp, 'listening')
  const brokerUrl = `mqtt://127.0.0.1:${(tcp.address() as AddressInfo).port}`
  const server = http.createServer((request, response) => {
    request.resume()
    request.on('end', async () => {
      const n = secrets.length + 1
      const secret = `S3cr3t-race-${n}-${randomBytes(12).toString('hex')}`
      secrets.push(secret)
      suite.secret(secret)
      await hold(n)
      const device = { productKey: PK, deviceName: NAME, deviceSecret: secret }
      const expiresAt = new Date(Date.now() + lifetimeMs(n)).toISOString()
      response.setHeader('content-type', 'application/json')
      response.end(
        JSON.stringify({
          code: '00000',
          result: { device: { ...device, expiresAt }, connect: { host: brokerUrl, qos: 1, cleanSession: 0 } },
        }),
      )
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const made: Rig = {
    brokerUrl,
    connects,
    published,
    secrets,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/provision`,
    drop: () => {
      for (const socket of sockets) socket.destroy()
    },
    close: async () => {
      server.closeAllConnections()
      server.close()
      for (const socket of sockets) socket.destroy()
      tcp.close()
      await new Promise<void>((resolve) => broker.close(() => resolve()))
    },
  }
  rigs.push(made)
  return made
}

function options(at: Rig, extra: Partial<BootstrapOptions> = {}): BootstrapOptions {
  return {
    url: at.url,
    data: { imei: '860000000000031' },
    auth: 'plain',
    allowInsecureHttp: true,
    cache: new MemoryCredentialStore(),
    retry: false,
    reconnect: { minDelay: 20, maxDelay: 50 },
    ...extra,
  }
}

/** A renewal's answer held until `release()`: claims after the first wait for it. */
function gate() {
  let release = () => {}
  const released = new Promise<void>((resolve) => {
    release = resolve
  })
  return { release, hold: async (n: number) => (n > 1 ? released : undefined) }
}

const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Renewal due at once: a renewBeforeMs longer than any lifetime (a tenth of the lifetime after receipt, 6 s). */
const SOON = { renewBeforeMs: 10 * 365 * 86_400_000 }

test('a renewal answered while mqtt.js resends its outgoing store after a reconnect: no QoS 1 message lost', async () => {
  const held = gate()
  const at = await rig({
    pubackDelayMs: 1500,
    hold: held.hold,
    lifetimeMs: (n) => (n === 1 ? 20_000 : RENEWED_LIFETIME_MS),
  })
  const { boot: bootstrap, events } = boot(options(at, SOON))
  const client = await bootstrap.connect()
  clients.push(client)
  const outcome: Record<string, string> = {}
  const publish = (payload: string) =>
    client.publish('race/out', payload, { qos: 1 }, (error) => {
      outcome[payload] = error ? error.message : 'ok'
    })
  publish('m1')
  publish('m2')
  publish('m3')
  await new Promise((resolve) => setTimeout(resolve, 100))
  at.drop() // three unacknowledged: resent one PUBACK at a time after the reconnect
  await until(() => at.secrets.length >= 2, 'the renewal request')
  const internals = client as unknown as { _storeProcessing?: boolean }
  await until(() => client.connected && internals._storeProcessing === true, 'the resend after the reconnect')
  publish('m4') // queued by mqtt.js behind the resend
  held.release() // the renewal's answer arrives now, mid-resend
  await until(() => Object.keys(outcome).length === 4, 'every publish settled', 15_000)
  expect(outcome).toEqual({ m1: 'ok', m2: 'ok', m3: 'ok', m4: 'ok' })
  expect(new Set(at.published)).toEqual(new Set(['m1', 'm2', 'm3', 'm4']))
  await until(() => events.some(([name]) => name === 'renewed'), 'renewed')
  expect(at.connects.at(-1)).toBe(at.secrets[1])
}, 30_000)

test('a renewal answered while the app ends the client gracefully: end() completes, its message delivered', async () => {
  const held = gate()
  const at = await rig({ pubackDelayMs: 1000, hold: held.hold })
  const { boot: bootstrap, events } = boot(options(at, SOON))
  const client = await bootstrap.connect()
  await until(() => at.secrets.length >= 2, 'the renewal request', 10_000)
  let delivered: string | undefined
  client.publish('race/out', 'last', { qos: 1 }, (error) => {
    delivered = error ? error.message : 'ok'
  })
  const ended = client.endAsync() // graceful: waits for the PUBACK
  await new Promise((resolve) => setTimeout(resolve, 50))
  held.release()
  const done = await Promise.race([
    ended.then(() => 'ended'),
    new Promise((resolve) => setTimeout(() => resolve('still ending after 8 s'), 8000)),
  ])
  if (done !== 'ended') clients.push(client) // ended forcibly after the test
  expect(done).toBe('ended')
  expect(delivered).toBe('ok')
  expect(at.published).toEqual(['last'])
  expect(at.connects).toEqual([at.secrets[0]]) // no switch: the client was ending
  expect(events.some(([name]) => name === 'renewed')).toBe(false)
}, 30_000)

test('the broker refuses the old secret while the renewed one waits: the renewed one is tried, not given up', async () => {
  const held = gate()
  let revoked: string | undefined
  const at = await rig({
    hold: held.hold,
    refuse: (secret) => (secret === revoked ? { delayMs: 500, returnCode: 5 } : undefined),
  })
  const { boot: bootstrap, events } = boot(options(at, SOON))
  const client = await bootstrap.connect()
  clients.push(client)
  await until(() => at.secrets.length >= 2, 'the renewal request')
  revoked = at.secrets[0] // the server revoked the old secret when it issued the new one
  at.drop()
  await new Promise((resolve) => setTimeout(resolve, 200)) // an attempt with the old secret is on its way
  held.release()
  await until(() => events.some(([name]) => name === 'renewed'), 'renewed')
  expect(client.connected).toBe(true)
  expect(at.connects.at(-1)).toBe(at.secrets[1])
  expect(at.secrets).toHaveLength(2) // no fresh claim: the renewed secret was there
  expect(events.filter(([name, event]) => name === 'error' && event.fatal)).toEqual([])
  expect(events.filter(([name]) => name === 'auth-rejected').map(([, event]) => event)).toEqual([
    { returnCode: 5, source: 'server', reprovision: false },
  ])
}, 30_000)

test('a server answering lifetimes of milliseconds gets one renewal a second at most', async () => {
  const at = await rig({ lifetimeMs: (n) => (n === 1 ? 1500 : 60) })
  const { boot: bootstrap, events } = boot(options(at))
  clients.push(await bootstrap.connect())
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const renewals = events.filter(([name]) => name === 'renewing').length
  expect(renewals).toBeGreaterThanOrEqual(2) // it does renew: short lifetimes are the server's call
  expect(renewals).toBeLessThanOrEqual(5) // 1 s or more apart, the first 1 s after the boot
  expect(at.secrets.length).toBe(renewals + 1)
}, 20_000)
