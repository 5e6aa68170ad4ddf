/**
 * Certificate renewal on the device side (issue 18), against a real aedes broker that requires a client certificate
 * (mutual TLS) and a real HTTPS provisioning server that asks every client for one and records what it presented.
 * Certificates come from the openssl command line (test/helpers/openssl-ca.ts), valid for a day by real time; the
 * device's clock runs ahead when a test lets it (test/helpers/fast-forward-clock.ts), so that a renewal hours away
 * comes in an instant while the broker and the server judge certificates by the real time.
 * test/certificates-renewal.slow.test.ts is the real-time case, against mosquitto.
 */

import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  type BootstrapEvents,
  type BootstrapOptions,
  credentialKey,
  InvalidOptionError,
  MemoryCredentialStore,
  type MqttBootstrap,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot } from './helpers/env.js'
import { FastForwardClock } from './helpers/fast-forward-clock.js'
import { type MtlsBroker, startMtlsBroker } from './helpers/mtls-broker.js'
import { type OpensslCa, opensslCa } from './helpers/openssl-ca.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

const PK = 'a1RenewPK'
const NAME = 'renew-device-001'
const DATA = { imei: '860000000000018' }
const DAY = 86_400_000

/** One provisioning request as the server saw it: the body, and the client certificate the TLS handshake carried. */
interface Seen {
  body: { imei: string; csr: string }
  /** SHA-256 fingerprint of the client certificate, if the request presented one. */
  presented: string | undefined
}

let tls: TlsFixture
let ca: OpensslCa
let otherCa: OpensslCa
let broker: MtlsBroker
let provisioning: https.Server
let url: string
const seen: Seen[] = []
const clients: MqttClient[] = []
let answer: (request: Seen) => { status?: number; body: unknown } = (request) => issued(request)

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256

/** A chain for the request's CSR, valid `days` from now (real time), issued by `by`. */
function issued(request: Seen, days = 1, by: OpensslCa = ca) {
  return {
    body: {
      code: '00000',
      result: {
        device: {
          productKey: PK,
          deviceName: NAME,
          certificate: `${by.issue(request.body.csr, NAME, days)}${by.cert}`,
        },
        connect: { host: broker.host, qos: 1, cleanSession: 1 },
      },
    },
  }
}

beforeAll(async () => {
  tls = await tlsFixture()
  ca = opensslCa('device CA')
  otherCa = opensslCa('another CA')
  broker = await startMtlsBroker(tls, ca.cert)
  provisioning = https.createServer(
    { key: tls.key, cert: tls.cert, requestCert: true, rejectUnauthorized: false, ca: ca.cert, noDelay: true },
    (req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate()
        const request = {
          body: JSON.parse(Buffer.concat(chunks).toString()) as Seen['body'],
          presented: peer?.fingerprint256,
        }
        seen.push(request)
        const { status = 200, body } = answer(request)
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
      })
    },
  )
  provisioning.listen(0, '127.0.0.1')
  await once(provisioning, 'listening')
  url = `https://127.0.0.1:${(provisioning.address() as AddressInfo).port}/provision`
})

afterAll(async () => {
  provisioning?.close()
  provisioning?.closeAllConnections()
  await broker?.close()
  ca?.close()
  otherCa?.close()
})

afterEach(async () => {
  for (const client of clients.splice(0)) await client.endAsync(true)
  seen.length = 0
  broker.clients.length = 0
  broker.published.length = 0
  answer = (request) => issued(request)
})

function options(extra: Partial<BootstrapOptions> = {}): BootstrapOptions {
  return {
    url,
    data: DATA,
    tls: { ca: tls.ca },
    mqtt: { ca: tls.ca },
    certificate: true,
    retry: { retries: 1, minTimeout: 1, maxTimeout: 1 },
    reconnect: { minDelay: 20, maxDelay: 50 },
    ...extra,
  }
}

/** The next `name` event (matching `accept`), or a failure after `timeoutMs`: no test waits forever. */
function next<K extends keyof BootstrapEvents>(
  bootstrap: MqttBootstrap,
  name: K,
  accept: (event: Parameters<BootstrapEvents[K]>[0]) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<Parameters<BootstrapEvents[K]>[0]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} event in ${timeoutMs} ms`)), timeoutMs)
    const listener = (event: Parameters<BootstrapEvents[K]>[0]) => {
      if (!accept(event)) return
      clearTimeout(timer)
      bootstrap.off(name, listener as never)
      resolve(event)
    }
    bootstrap.on(name, listener as never)
  })
}

/** Let the device's clock run until one renewal starts (then it holds again): that renewal's `renewing` event. */
function renewOnce(clock: FastForwardClock, bootstrap: MqttBootstrap) {
  bootstrap.once('renewing', () => clock.pause())
  const renewing = next(bootstrap, 'renewing')
  clock.run()
  return renewing
}

async function bootWith(extra: Partial<BootstrapOptions> = {}) {
  const cache = new MemoryCredentialStore()
  const clock = new FastForwardClock()
  const { boot: bootstrap, events } = boot(options({ cache, ...extra }), { clock })
  const client = await bootstrap.connect()
  clients.push(client)
  const entry = async () => (await cache.get(credentialKey(url, DATA)))!
  return { bootstrap, events, client, clock, cache, entry }
}

describe('renewal before expiry', () => {
  test('a third of the lifetime before notAfter, a new key, the current certificate as the TLS client certificate, the switch at a reconnect', async () => {
    const { bootstrap, events, client, clock, entry } = await bootWith()
    const first = (await entry()).config.device.certificate as string
    expect(seen[0]?.presented).toBeUndefined() // the first claim has no certificate to show
    expect(broker.clients.map((c) => c.fingerprint256)).toEqual([fingerprint(first)])
    const renewed = next(bootstrap, 'renewed')
    const renewing = await renewOnce(clock, bootstrap)
    const notAfter = Date.parse(new X509Certificate(first).validTo)
    expect(renewing).toEqual({
      credential: 'certificate',
      productKey: PK,
      deviceName: NAME,
      expiresAt: new Date(notAfter).toISOString(),
      expired: false,
      attempt: 1,
    })
    // A third of the lifetime (a day, from when it arrived) before notAfter: 16 hours after it arrived, give or take
    // the time the test took.
    const waited = clock.waits.reduce((sum, ms) => sum + ms, 0)
    expect(Math.abs(waited - (2 * DAY) / 3)).toBeLessThan(30_000)
    const done = await renewed
    // The renewal request: the current certificate as its client certificate, for a new key (a rekey).
    expect(seen).toHaveLength(2)
    expect(seen[1]?.presented).toBe(fingerprint(first))
    const stored = await entry()
    const second = stored.config.device.certificate as string
    expect(fingerprint(second)).not.toBe(fingerprint(first))
    expect(new X509Certificate(second).publicKey.equals(new X509Certificate(first).publicKey)).toBe(false)
    expect(done).toEqual({
      credential: 'certificate',
      productKey: PK,
      deviceName: NAME,
      expiresAt: new Date(Date.parse(new X509Certificate(second).validTo)).toISOString(),
    })
    // The same client, connected again with the new certificate; no connection was "lost" on the way.
    expect(client.connected).toBe(true)
    expect(broker.clients.map((c) => c.fingerprint256)).toEqual([fingerprint(first), fingerprint(second)])
    expect(events.some(([name, event]) => name === 'retry' && event.phase === 'reconnect')).toBe(false)
    expect(events.filter(([name]) => name === 'error')).toEqual([])
    // Stored only once the broker had accepted it: the write comes after the reconnect, `renewed` after the write.
    const order = events.map(([name, event]) => (name === 'cache' ? `cache ${event.action}` : name))
    const tail = order.slice(order.indexOf('renewing'))
    expect(tail).toEqual([
      'renewing',
      'provisioning',
      'provisioned',
      'connecting',
      'connected',
      'cache write',
      'renewed',
    ])
  })

  test('messages published through the switch reach the broker, and a subscription made before it still delivers', async () => {
    const { bootstrap, client, clock } = await bootWith()
    const received: string[] = []
    await client.subscribeAsync('renewal/in', { qos: 1 })
    client.on('message', (_topic, payload) => received.push(payload.toString()))
    let n = 0
    const publishing = setInterval(() => {
      void client.publishAsync('renewal/out', String(++n), { qos: 1 }).catch(() => {})
    }, 2)
    try {
      const renewed = next(bootstrap, 'renewed')
      await renewOnce(clock, bootstrap)
      await renewed
      await new Promise((resolve) => setTimeout(resolve, 50))
    } finally {
      clearInterval(publishing)
    }
    const last = n
    await client.publishAsync('renewal/out', 'end', { qos: 1 })
    const numbers = new Set(broker.published.filter((p) => p.topic === 'renewal/out').map((p) => p.payload))
    const missing = Array.from({ length: last }, (_, i) => String(i + 1)).filter((v) => !numbers.has(v))
    expect(last).toBeGreaterThan(10)
    expect(missing).toEqual([])
    // The device's subscription, resubscribed on the new connection: a message to it arrives.
    await client.publishAsync('renewal/in', 'after', { qos: 1 })
    await expect.poll(() => received).toContain('after')
  })

  test('a cached certificate already due is renewed right after the cached boot', async () => {
    const { cache, clock, entry } = await bootWith()
    const first = (await entry()).config.device.certificate as string
    await clients.splice(0)[0]?.endAsync(true)
    // Twenty hours later (past the renewal time, before notAfter), the device boots again from its cache.
    const later = new FastForwardClock()
    later.offset = clock.offset + (20 * DAY) / 24
    later.run()
    const { boot: bootstrap, events } = boot(options({ cache }), { clock: later })
    let waitedBefore: number[] | undefined
    bootstrap.once('renewing', () => {
      later.pause()
      waitedBefore = [...later.waits]
    })
    const renewed = next(bootstrap, 'renewed')
    clients.push(await bootstrap.connect())
    await renewed
    expect(events.find(([name]) => name === 'provisioned')?.[1]).toMatchObject({ source: 'cache' })
    expect(seen.map((request) => request.presented)).toEqual([undefined, fingerprint(first)])
    expect(waitedBefore).toEqual([]) // due already: no wait
  })
})

describe('renewal that fails', () => {
  test('a broker that refuses the new certificate leaves the device on the old one, reported; the renewal is tried again', async () => {
    const { bootstrap, events, client, clock, entry } = await bootWith()
    const first = (await entry()).config.device.certificate as string
    answer = (request) => issued(request, 1, otherCa) // a CA the broker does not trust
    const reported = next(bootstrap, 'error')
    await renewOnce(clock, bootstrap)
    const { error, fatal } = await reported
    expect(fatal).toBe(false)
    // Node's TLS server resets a handshake it refuses (no alert): three failed attempts, then back to the old one.
    expect((error as { code?: string }).code).toMatch(/^ERR_BROKER_(AUTH_REJECTED|CONNECT)$/)
    expect(error.message).toMatch(/renewed .*: the device stays on the previous ones/)
    // Back on the old certificate, connected; the store still holds it and its key.
    await expect.poll(() => client.connected, { timeout: 5000 }).toBe(true)
    await expect.poll(() => broker.clients.at(-1)?.fingerprint256).toBe(fingerprint(first))
    expect((await entry()).config.device.certificate).toBe(first)
    expect(events.some(([name]) => name === 'renewed')).toBe(false)
    // Tried again later (halfway to the expiry), and this time the broker takes it.
    answer = (request) => issued(request)
    const renewed = next(bootstrap, 'renewed')
    const again = await renewOnce(clock, bootstrap)
    expect(again).toMatchObject({ attempt: 2, expired: false })
    await renewed
    expect((await entry()).config.device.certificate).not.toBe(first)
  })

  test('a server that fails the renewal: retried with the retry policy, reported, the old certificate kept and used', async () => {
    const { bootstrap, events, client, clock, entry } = await bootWith()
    const first = (await entry()).config.device.certificate as string
    answer = () => ({ status: 503, body: { code: '77777' } })
    const reported = next(bootstrap, 'error')
    await renewOnce(clock, bootstrap)
    const { error, fatal } = await reported
    expect(fatal).toBe(false)
    expect(error).toMatchObject({ resultCode: '77777' })
    expect(seen).toHaveLength(3) // the first claim, then the renewal and its one retry (retries: 1)
    expect(events.filter(([name, event]) => name === 'retry' && event.phase === 'provision')).toHaveLength(1)
    expect(client.connected).toBe(true)
    expect(broker.clients).toHaveLength(1) // no switch: still the first connection
    expect((await entry()).config.device.certificate).toBe(first)
    // The next try comes halfway to the expiry, and succeeds.
    answer = (request) => issued(request)
    const renewed = next(bootstrap, 'renewed')
    const again = await renewOnce(clock, bootstrap)
    expect(again.attempt).toBe(2)
    await renewed
    expect(seen.at(-1)?.presented).toBe(fingerprint(first))
  })

  test('an expired certificate leads to a fresh claim, without a client certificate', async () => {
    const { bootstrap, clock, entry } = await bootWith()
    const first = (await entry()).config.device.certificate as string
    clock.offset += 1.5 * DAY // the device was away longer than the certificate lasted
    answer = (request) => issued(request, 5)
    const renewed = next(bootstrap, 'renewed')
    const renewing = await renewOnce(clock, bootstrap)
    expect(renewing).toMatchObject({ expired: true, attempt: 1 })
    await renewed
    expect(seen.at(-1)?.presented).toBeUndefined()
    expect((await entry()).config.device.certificate).not.toBe(first)
  })
})

describe('the renewal timer', () => {
  test('ends with the client: no renewal after end(), no timer left', async () => {
    const { bootstrap, events, client, clock } = await bootWith()
    expect(clock.holding).toBe(1)
    await client.endAsync()
    clients.length = 0
    expect(clock.holding).toBe(0)
    clock.run()
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(events.some(([name]) => name === 'renewing')).toBe(false)
    expect(seen).toHaveLength(1)
    void bootstrap
  })

  test('renewBeforeMs (top level, or the certificate option, which wins for the certificate) sets when', async () => {
    for (const [extra, before] of [
      [{ renewBeforeMs: 3_600_000 }, 3_600_000],
      [{ renewBeforeMs: 3_600_000, certificate: { renewBeforeMs: 7_200_000 } }, 7_200_000],
    ] as const) {
      const { bootstrap, client, clock } = await bootWith(extra)
      await renewOnce(clock, bootstrap)
      expect(Math.abs(clock.waits.reduce((a, b) => a + b, 0) - (DAY - before))).toBeLessThan(30_000)
      await next(bootstrap, 'renewed')
      await client.endAsync(true)
      clients.length = 0
    }
  })

  test.each([
    [{ renewBeforeMs: -1 }, 'renewBeforeMs'],
    [{ renewBeforeMs: 1.5 }, 'renewBeforeMs'],
    [{ renewBeforeMs: '60000' }, 'renewBeforeMs'],
    [{ certificate: { renewBeforeMs: Number.POSITIVE_INFINITY } }, 'certificate.renewBeforeMs'],
  ])('%o is refused at the door', (extra, option) => {
    expect(() => boot(options(extra as Partial<BootstrapOptions>))).toThrow(InvalidOptionError)
    expect(() => boot(options(extra as Partial<BootstrapOptions>))).toThrow(
      new RegExp(`\`${option.replace('.', '\\.')}\``),
    )
  })
})
