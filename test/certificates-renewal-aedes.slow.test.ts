/**
 * Certificate renewal on the device side (issue 18), in real time, against a real aedes broker that requires a client
 * certificate (mutual TLS) and a real HTTPS provisioning server that asks every client for one and records what it
 * presented. Certificates come from the reference issuer (issueCertificates), valid for a few seconds, so a renewal
 * (a third of the lifetime before notAfter) comes seconds after a boot: the broker, the server and the device all
 * judge by the real time. Real time, so on the machine's Node only in CI (`*.slow.test.ts`).
 * test/certificates-renewal.slow.test.ts is issue 18's acceptance case, against mosquitto;
 * test/certificates-renewal.test.ts the cases that need no timer to fire.
 */

import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { type BootstrapOptions, credentialKey, MemoryCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import { type CertificateIssuer, issueCertificates } from '../packages/mqtt-bootstrap-server/src/index.js'
import { boot, nextEvent } from './helpers/env.js'
import { type MtlsBroker, startMtlsBroker } from './helpers/mtls-broker.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { type Authority, authority } from './helpers/x509.js'

const PK = 'a1RenewPK'
const NAME = 'renew-device-001'
const DATA = { imei: '860000000000018' }
/** How long the certificates of these tests live: a renewal 4 s after each arrives, its retry 5 s after. */
const VALIDITY_S = 6
/** How far a timer may be off what the schedule says: its own lateness, and the second X.509 times are cut to. */
const SLACK_MS = 1200
/** The longest a test waits for one event: past any certificate these tests are issued. */
const WAIT_MS = 15_000

/** One provisioning request as the server saw it: the body, and the client certificate the TLS handshake carried. */
interface Seen {
  body: { imei: string; csr: string }
  /** SHA-256 fingerprint of the client certificate, if the request presented one. */
  presented: string | undefined
}

let tls: TlsFixture
let ca: Authority
let otherCa: Authority
let broker: MtlsBroker
let provisioning: https.Server
let url: string
const seen: Seen[] = []
const clients: MqttClient[] = []
let answer: (request: Seen) => Promise<{ status?: number; body: unknown }> = (request) => issued(request)

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256
const notAfterOf = (pem: string) => Date.parse(new X509Certificate(pem).validTo)

/** A chain for the request's CSR from `by` (the reference issuer), valid `seconds` from now. */
async function issued(request: Seen, seconds = VALIDITY_S, by: Authority = ca) {
  const issuer: CertificateIssuer = issueCertificates({ ca: by, validitySeconds: seconds })
  const checked = await issuer.check(request.body.csr)
  if (!checked.ok) throw new Error(`the device sent a bad CSR: ${checked.problem}`)
  return {
    body: {
      code: '00000',
      result: {
        device: {
          productKey: PK,
          deviceName: NAME,
          certificate: await issuer.issue(checked.request, { productKey: PK, deviceName: NAME }),
        },
        connect: { host: broker.host, qos: 1, cleanSession: 1 },
      },
    },
  }
}

beforeAll(async () => {
  tls = await tlsFixture()
  ca = await authority('device CA')
  otherCa = await authority('another CA')
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
        answer(request).then(
          ({ status = 200, body }) =>
            res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)),
          (error: Error) => res.writeHead(500).end(error.message),
        )
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

async function bootWith(extra: Partial<BootstrapOptions> = {}) {
  const cache = new MemoryCredentialStore()
  const { boot: bootstrap, events } = boot(options({ cache, ...extra }))
  const client = await bootstrap.connect()
  clients.push(client)
  const entry = async () => (await cache.get(credentialKey(url, DATA)))!
  const { savedAt, config } = await entry()
  return { bootstrap, events, client, cache, entry, receivedAt: savedAt, first: config.device.certificate as string }
}

/** The next `renewing` event and when (real time) it came. */
async function renewingAt(bootstrap: Awaited<ReturnType<typeof bootWith>>['bootstrap']) {
  const event = await nextEvent(bootstrap, 'renewing', undefined, WAIT_MS)
  return { event, at: Date.now() }
}

describe('renewal before expiry', () => {
  test('a third of the lifetime before notAfter, a new key, the current certificate as the TLS client certificate, the switch at a reconnect', async () => {
    const { bootstrap, events, client, entry, receivedAt, first } = await bootWith()
    expect(seen[0]?.presented).toBeUndefined() // the first claim has no certificate to show
    expect(broker.clients.map((c) => c.fingerprint256)).toEqual([fingerprint(first)])
    const renewed = nextEvent(bootstrap, 'renewed', undefined, WAIT_MS)
    const { event: renewing, at } = await renewingAt(bootstrap)
    const notAfter = notAfterOf(first)
    expect(renewing).toEqual({
      credential: 'certificate',
      productKey: PK,
      deviceName: NAME,
      expiresAt: new Date(notAfter).toISOString(),
      expired: false,
      attempt: 1,
    })
    // A third of the lifetime (from when it arrived to notAfter) before notAfter.
    expect(Math.abs(at - (notAfter - (notAfter - receivedAt) / 3))).toBeLessThan(SLACK_MS)
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
      expiresAt: new Date(notAfterOf(second)).toISOString(),
    })
    // The same client, connected again with the new certificate; no connection was "lost" on the way.
    expect(client.connected).toBe(true)
    expect(broker.clients.map((c) => c.fingerprint256)).toEqual([fingerprint(first), fingerprint(second)])
    expect(events.some(([name, event]) => name === 'retry' && event.phase === 'reconnect')).toBe(false)
    expect(events.filter(([name]) => name === 'error')).toEqual([])
    // Stored only once the broker had accepted it: the write comes after the reconnect, `renewed` after the write.
    const order = events.map(([name, event]) => (name === 'cache' ? `cache ${event.action}` : name))
    const tail = order.slice(order.indexOf('renewing'), order.indexOf('renewed') + 1)
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
    const { bootstrap, client } = await bootWith()
    const received: string[] = []
    await client.subscribeAsync('renewal/in', { qos: 1 })
    client.on('message', (_topic, payload) => received.push(payload.toString()))
    let n = 0
    const publishing = setInterval(() => {
      if (n < 5000) void client.publishAsync('renewal/out', String(++n), { qos: 1 }).catch(() => {})
    }, 2)
    try {
      await nextEvent(bootstrap, 'renewed', undefined, WAIT_MS)
      await new Promise((resolve) => setTimeout(resolve, 50))
    } finally {
      clearInterval(publishing)
    }
    const last = n
    await client.publishAsync('renewal/out', 'end', { qos: 1 })
    const numbers = new Set(broker.published.filter((p) => p.topic === 'renewal/out').map((p) => p.payload))
    const missing = Array.from({ length: last }, (_, i) => String(i + 1)).filter((v) => !numbers.has(v))
    expect(last).toBeGreaterThan(100)
    expect(missing).toEqual([])
    expect(broker.clients).toHaveLength(2) // it did switch, in the middle of the stream
    // The device's subscription, resubscribed on the new connection: a message to it arrives.
    await client.publishAsync('renewal/in', 'after', { qos: 1 })
    await expect.poll(() => received).toContain('after')
  })

  test('a cached certificate already due is renewed right after the cached boot', async () => {
    const { cache, receivedAt, first } = await bootWith()
    await clients.splice(0)[0]?.endAsync(true)
    // Past the renewal time, before notAfter, the device boots again from its cache.
    const notAfter = notAfterOf(first)
    const due = notAfter - (notAfter - receivedAt) / 3
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now() + 300)))
    const { boot: bootstrap, events } = boot(options({ cache }))
    const renewing = nextEvent(bootstrap, 'renewing', undefined, WAIT_MS)
    const renewed = nextEvent(bootstrap, 'renewed', undefined, WAIT_MS)
    clients.push(await bootstrap.connect())
    const booted = Date.now()
    await renewing
    expect(Date.now() - booted).toBeLessThan(500) // due already: no wait
    await renewed
    expect(events.find(([name]) => name === 'provisioned')?.[1]).toMatchObject({ source: 'cache' })
    expect(seen.map((request) => request.presented)).toEqual([undefined, fingerprint(first)])
  })
})

describe('renewal that fails', () => {
  test('a broker that refuses the new certificate leaves the device on the old one, reported; the renewal is tried again', async () => {
    const { bootstrap, events, client, entry, first } = await bootWith()
    answer = (request) => issued(request, VALIDITY_S, otherCa) // a CA the broker does not trust
    const reported = nextEvent(bootstrap, 'error', undefined, WAIT_MS)
    await renewingAt(bootstrap)
    const { error, fatal } = await reported
    const failedAt = Date.now()
    expect(fatal).toBe(false)
    // Node's TLS server resets a handshake it refuses (no alert): three failed attempts, then back to the old one.
    expect((error as { code?: string }).code).toMatch(/^ERR_BROKER_(AUTH_REJECTED|CONNECT)$/)
    expect(error.message).toMatch(/renewed .*: the device stays on the previous ones/)
    // Back on the old certificate, connected; the store still holds it and its key.
    await expect.poll(() => client.connected, { timeout: 5000 }).toBe(true)
    await expect.poll(() => broker.clients.at(-1)?.fingerprint256).toBe(fingerprint(first))
    expect((await entry()).config.device.certificate).toBe(first)
    expect(events.some(([name]) => name === 'renewed')).toBe(false)
    // Tried again halfway to the expiry (at least a second later), and this time the broker takes it.
    answer = (request) => issued(request)
    const renewed = nextEvent(bootstrap, 'renewed', undefined, WAIT_MS)
    const { event: again, at } = await renewingAt(bootstrap)
    expect(again).toMatchObject({ attempt: 2, expired: false })
    expect(at - failedAt).toBeGreaterThanOrEqual(900)
    expect(at).toBeLessThan(notAfterOf(first))
    await renewed
    expect((await entry()).config.device.certificate).not.toBe(first)
    expect(seen.at(-1)?.presented).toBe(fingerprint(first))
  })

  test('a server that fails the renewal: retried with the retry policy, reported, the old certificate kept and used', async () => {
    const { bootstrap, events, client, entry, first } = await bootWith()
    answer = async () => ({ status: 503, body: { code: '77777' } })
    const reported = nextEvent(bootstrap, 'error', undefined, WAIT_MS)
    await renewingAt(bootstrap)
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
    const renewed = nextEvent(bootstrap, 'renewed', undefined, WAIT_MS)
    const { event: again } = await renewingAt(bootstrap)
    expect(again.attempt).toBe(2)
    await renewed
    expect(seen.at(-1)?.presented).toBe(fingerprint(first))
  })

  test('an expired certificate leads to a fresh claim, without a client certificate', async () => {
    // renewBeforeMs 0: the renewal is due when the certificate expires.
    const { bootstrap, entry, first } = await bootWith({ renewBeforeMs: 0 })
    const renewed = nextEvent(bootstrap, 'renewed', undefined, WAIT_MS)
    const { event: renewing, at } = await renewingAt(bootstrap)
    expect(renewing).toMatchObject({ expired: true, attempt: 1 })
    expect(at).toBeGreaterThanOrEqual(notAfterOf(first))
    await renewed
    expect(seen.at(-1)?.presented).toBeUndefined()
    expect((await entry()).config.device.certificate).not.toBe(first)
  })
})

describe('the renewal timer', () => {
  test('ends with the client: no renewal after end()', async () => {
    const { events, client, first } = await bootWith()
    await client.endAsync()
    clients.length = 0
    // Wait past the certificate's notAfter: nothing renews, nothing asks the server.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, notAfterOf(first) - Date.now() + 500)))
    expect(events.some(([name]) => name === 'renewing')).toBe(false)
    expect(seen).toHaveLength(1)
  })

  test('renewBeforeMs (top level, or the certificate option, which wins for the certificate) sets when', async () => {
    for (const [extra, before] of [
      [{ renewBeforeMs: 1000 }, 1000],
      [{ renewBeforeMs: 1000, certificate: { renewBeforeMs: 2500 } }, 2500],
    ] as const) {
      const { bootstrap, client, first } = await bootWith(extra)
      const { at } = await renewingAt(bootstrap)
      expect(Math.abs(at - (notAfterOf(first) - before))).toBeLessThan(SLACK_MS)
      await nextEvent(bootstrap, 'renewed', undefined, WAIT_MS)
      await client.endAsync(true)
      clients.length = 0
    }
  })
})
