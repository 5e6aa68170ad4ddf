/**
 * Secrets with a lifetime on the device side (issue 18), in real time: an answer's `result.device.expiresAt` makes the
 * session renew the deviceSecret before it, switch to the new one at a reconnect of its own, and keep the old one (in
 * memory and in the cache) until the broker has accepted the new. Against a real aedes broker (plain TCP, aliyun
 * signatures checked against its map of accepted secrets) and a real HTTPS provisioning server that issues a new
 * secret at every claim, expiring a few seconds after the answer: the renewal timer waits real time (it only reads the
 * clock), so a renewal comes seconds after a boot. Real time, so on the machine's Node only in CI (`*.slow.test.ts`).
 * test/secret-renewal.test.ts has the cases that need no timer to fire; test/certificates-renewal-aedes.slow.test.ts
 * is the same for certificates.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, test } from 'vitest'
import {
  type BootstrapEvents,
  type BootstrapOptions,
  credentialKey,
  MemoryCredentialStore,
  type MqttBootstrap,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot, nextEvent, payloads, type RecordedEvent, useTestEnv } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { DEVICE, json } from './helpers/https-server.js'
import { type Issued, type Issuing, secretIssuer } from './helpers/secret-issuer.js'

const env = useTestEnv()

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
/** How far a renewal may be off what the schedule says: the timer's own lateness (up to 250 ms), a boot, a request. */
const SLACK_MS = 1000
/** The longest a test waits for one event: past any secret these tests are issued. */
const WAIT_MS = 15_000
const { productKey: PK, deviceName: NAME } = DEVICE

const issuer = secretIssuer(env)
const { issued, issue, signer } = issuer

afterEach(() => issuer.reset())

const iso = (ms: number | undefined) => new Date(ms as number).toISOString()

function options(extra: Partial<BootstrapOptions> = {}): BootstrapOptions {
  return env.options({
    retry: { retries: 1, minTimeout: 1, maxTimeout: 1 },
    reconnect: { minDelay: 20, maxDelay: 50 },
    ...extra,
  })
}

/** Boot a device on the system clock and its own cache; the server issues secrets as `issuing` says. */
async function bootWith(
  extra: Partial<BootstrapOptions> = {},
  issuing: Issuing = {},
  cache = new MemoryCredentialStore(),
) {
  issue(issuing)
  const { boot: bootstrap, events } = boot(options({ cache, ...extra }))
  const client = env.track(await bootstrap.connect())
  const key = credentialKey(env.server.url, options().data)
  /** The cached secret now (read at once: a store read that resolves later still tells what it held now). */
  const cached = async () => (await cache.get(key))?.config.device.deviceSecret
  return { bootstrap, events, client, cache, cached }
}

/** The next `name` event within WAIT_MS, and the real time it came at. */
function timed<K extends keyof BootstrapEvents>(
  bootstrap: MqttBootstrap,
  name: K,
): Promise<{ event: Parameters<BootstrapEvents[K]>[0]; at: number }> {
  return nextEvent(bootstrap, name, () => true, WAIT_MS).then((event) => ({ event, at: Date.now() }))
}

/** Sleep until the real time is `at` (at once if it has passed). */
const until = (at: number) => sleep(Math.max(0, at - Date.now()))

const named = (events: RecordedEvent[], name: RecordedEvent[0]) => events.filter(([n]) => n === name)

/** Expect `at` within SLACK_MS of `expected`. */
function near(at: number, expected: number): void {
  expect(Math.abs(at - expected), `${at - expected} ms off the schedule`).toBeLessThan(SLACK_MS)
}

describe('a secret with an expiresAt is renewed before it', () => {
  test('by default a third of the time left when received, counted back from expiresAt; the switch at a reconnect with the new secret, cached once the broker accepted it', {
    timeout: 15_000,
  }, async () => {
    const { bootstrap, events, client, cached } = await bootWith({}, { lifetimeMs: 6 * SECOND })
    const [first] = issued as [Issued]
    expect(await cached()).toBe(first.secret)
    issue() // the renewal's secret lives a minute
    // What the cache holds when the renewal's answer has arrived, and when the reconnect with it starts.
    const seen: Array<Promise<[string, string | undefined]>> = []
    const look = (moment: string) => seen.push(cached().then((secret) => [moment, secret]))
    bootstrap.on('renewing', () => {
      bootstrap.once('provisioned', () => look('answered'))
      bootstrap.once('connecting', () => look('reconnecting'))
    })
    const renewing = timed(bootstrap, 'renewing')
    const renewed = nextEvent(bootstrap, 'renewed', () => true, WAIT_MS)
    const { event, at } = await renewing
    expect(event).toEqual({
      credential: 'secret',
      productKey: PK,
      deviceName: NAME,
      expiresAt: iso(first.expiresAt),
      expired: false,
      attempt: 1,
    })
    // 6 s left when it arrived: renewed 2 s before expiresAt, 4 s after the answer.
    near(at, (first.expiresAt as number) - 2 * SECOND)
    const done = await renewed
    const second = issued[1] as Issued
    expect(done).toEqual({ credential: 'secret', productKey: PK, deviceName: NAME, expiresAt: iso(second.expiresAt) })
    expect(second.secret).not.toBe(first.secret)
    // The same client, connected again, signed with the new secret: the only one the broker accepts now.
    expect(client.connected).toBe(true)
    expect(env.broker.connects.map(signer)).toEqual([1, 2])
    expect(env.broker.accepted).toBe(2)
    expect(env.server.requests).toHaveLength(2)
    // The old secret stayed cached until the broker had accepted the new one.
    expect(await Promise.all(seen)).toEqual([
      ['answered', first.secret],
      ['reconnecting', first.secret],
    ])
    expect(await cached()).toBe(second.secret)
    const order = events.map(([name, event]) => (name === 'cache' ? `cache ${event.action}` : name))
    expect(order.slice(order.indexOf('renewing'))).toEqual([
      'renewing',
      'provisioning',
      'provisioned',
      'connecting',
      'connected',
      'cache write',
      'renewed',
    ])
    expect(named(events, 'error')).toEqual([])
    expect(payloads(events, 'retry')).toEqual([])
  })

  test.each([
    // The default would be 4 s after the answer.
    ['renewBeforeMs before expiresAt', 6 * SECOND, 4 * SECOND, (got: Issued) => (got.expiresAt as number) - 4 * SECOND],
    // Larger than the lifetime: a tenth of the lifetime after receipt, not at once (no renewal loop).
    [
      'a renewBeforeMs beyond the lifetime: a tenth of it after receipt',
      20 * SECOND,
      DAY,
      (got: Issued) => got.answeredAt + 2 * SECOND,
    ],
  ])('%s', { timeout: 15_000 }, async (_name, lifetimeMs, renewBeforeMs, expected) => {
    const { bootstrap, cached } = await bootWith({ renewBeforeMs }, { lifetimeMs, zone: '+08:00' })
    const first = issued[0] as Issued
    issue()
    const renewing = timed(bootstrap, 'renewing')
    const renewed = nextEvent(bootstrap, 'renewed', () => true, WAIT_MS)
    const { event, at } = await renewing
    // An expiresAt with an offset names the same instant: the event says it in UTC.
    expect(event).toMatchObject({ credential: 'secret', expiresAt: iso(first.expiresAt), attempt: 1 })
    near(at, expected(first))
    await renewed
    expect(await cached()).toBe(issued[1]?.secret)
    expect(env.broker.connects.map(signer)).toEqual([1, 2])
  })

  test('a renewal answered without an expiresAt: renewed (no expiresAt in the event), then no timer', {
    timeout: 15_000,
  }, async () => {
    const { bootstrap, events, client, cached } = await bootWith({}, { lifetimeMs: 6 * SECOND })
    const [first] = issued as [Issued]
    issue({ lifetimeMs: null })
    expect(await nextEvent(bootstrap, 'renewed', () => true, WAIT_MS)).toEqual({
      credential: 'secret',
      productKey: PK,
      deviceName: NAME,
    })
    expect(await cached()).toBe(issued[1]?.secret)
    // Past the old secret's expiry, and then some: nothing renewed again (nor retried, nor claimed afresh).
    await until((first.expiresAt as number) + SECOND)
    expect(named(events, 'renewing')).toHaveLength(1)
    expect(env.server.requests).toHaveLength(2)
    expect(env.broker.connects.map(signer)).toEqual([1, 2])
    expect(client.connected).toBe(true)
    expect(named(events, 'error')).toEqual([])
  })
})

describe('a renewal that fails', () => {
  // 9 s: renewed 6 s after the answer, the retry halfway to the expiry (1.5 s later) is more than the 1 s floor.
  const LIFETIME_MS = 9 * SECOND

  test.each([4, 5])(
    'the broker refuses the renewed secret (CONNACK %i): back on the old one, connected, reported; renewed later',
    { timeout: 20_000 },
    async (returnCode) => {
      const { bootstrap, events, client, cached } = await bootWith({}, { lifetimeMs: LIFETIME_MS })
      const [first] = issued as [Issued]
      issue({ brokerAccepts: false }) // aedes answers 4 to a secret it does not know
      if (returnCode === 5) env.broker.refuse.push(5) // the next CONNECT: the renewed one
      const reported = timed(bootstrap, 'error')
      const rejected = nextEvent(bootstrap, 'auth-rejected', () => true, WAIT_MS)
      const renewing = timed(bootstrap, 'renewing')
      near((await renewing).at, (first.expiresAt as number) - 3 * SECOND)
      const {
        event: { error, fatal },
        at: revertedAt,
      } = await reported
      expect(fatal).toBe(false)
      expect(error).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', returnCode })
      expect(error.message).toMatch(
        new RegExp(`renewed credentials \\(CONNACK ${returnCode}\\): the device stays on the previous ones`),
      )
      expect(await rejected).toEqual({ returnCode, source: 'server', reprovision: false })
      // Back on the first secret, the same client; the cache never held the refused one.
      await expect.poll(() => env.broker.connects.length, { timeout: 5000 }).toBe(3)
      await expect.poll(() => client.connected, { timeout: 5000 }).toBe(true)
      expect(env.broker.connects.map(signer)).toEqual([1, 2, 1])
      expect(await cached()).toBe(first.secret)
      expect(env.server.requests).toHaveLength(2) // no fresh claim: the old secret is still good
      expect(payloads(events, 'cache').filter((e) => e.action === 'invalidate')).toEqual([])
      expect(named(events, 'renewed')).toEqual([])
      expect(payloads(events, 'error').filter((e) => e.fatal)).toEqual([])
      // Tried again halfway to the expiry, and this time the broker takes it.
      issue()
      const again = timed(bootstrap, 'renewing')
      const renewed = nextEvent(bootstrap, 'renewed', () => true, WAIT_MS)
      const { event, at } = await again
      expect(event).toMatchObject({ attempt: 2, expired: false, expiresAt: iso(first.expiresAt) })
      near(at, revertedAt + ((first.expiresAt as number) - revertedAt) / 2)
      await renewed
      expect(await cached()).toBe(issued[2]?.secret)
      expect(env.broker.connects.map(signer)).toEqual([1, 2, 1, 3])
      expect(client.connected).toBe(true)
    },
  )

  test.each([
    ['a refusal code ("10001"): not retried', 200, '10001', 1],
    ['503 until the retries are spent', 503, '77777', 2],
  ])(
    'the server fails the renewal, %s: reported, still connected on the old secret, tried again later',
    { timeout: 20_000 },
    async (_name, status, code, requests) => {
      const { bootstrap, events, client, cached } = await bootWith({}, { lifetimeMs: LIFETIME_MS })
      const [first] = issued as [Issued]
      env.server.handle((_request, response) => json(response, status, { code }))
      const reported = timed(bootstrap, 'error')
      const renewing = timed(bootstrap, 'renewing')
      const started = await renewing
      expect(started.event).toMatchObject({ attempt: 1, expired: false })
      near(started.at, (first.expiresAt as number) - 3 * SECOND)
      const {
        event: { error, fatal },
        at: failedAt,
      } = await reported
      expect(fatal).toBe(false)
      expect(error).toMatchObject({ resultCode: code })
      expect(env.server.requests).toHaveLength(1 + requests)
      const retries = payloads(events, 'retry').filter((e) => e.phase === 'provision')
      expect(retries).toHaveLength(requests - 1)
      expect(client.connected).toBe(true)
      expect(env.broker.connects.map(signer)).toEqual([1]) // no switch: still the first connection
      expect(await cached()).toBe(first.secret)
      expect(named(events, 'renewed')).toEqual([])
      // The next try, halfway to the expiry, succeeds.
      issue()
      const again = timed(bootstrap, 'renewing')
      const renewed = nextEvent(bootstrap, 'renewed', () => true, WAIT_MS)
      const { event, at } = await again
      expect(event).toMatchObject({ attempt: 2, expired: false })
      near(at, failedAt + ((first.expiresAt as number) - failedAt) / 2)
      await renewed
      expect(await cached()).toBe(issued[1]?.secret)
      expect(env.broker.connects.map(signer)).toEqual([1, 2])
      expect(client.connected).toBe(true)
    },
  )
})

describe('a cached secret with an expiresAt', () => {
  /**
   * Boot once (a secret living `lifetimeMs`, cached), end; then, `laterMs` after the answer by the real time, boot again
   * from the cache, listening for its renewal from the start.
   */
  async function rebootAfter(lifetimeMs: number, laterMs: number) {
    const cache = new MemoryCredentialStore()
    const { client, cached } = await bootWith({}, { lifetimeMs }, cache)
    const first = issued[0] as Issued
    await client.endAsync(true)
    issue() // a claim from now on: a secret living a minute
    await until(first.answeredAt + laterMs)
    // The ended client's renewal stopped with it: nothing was renewed meanwhile.
    expect(env.server.requests).toHaveLength(1)
    const { boot: bootstrap, events } = boot(options({ cache }))
    const renewing = timed(bootstrap, 'renewing')
    const renewed = nextEvent(bootstrap, 'renewed', () => true, WAIT_MS)
    const bootedAt = Date.now()
    const again = env.track(await bootstrap.connect())
    return { events, client: again, cached, first, bootedAt, renewing, renewed }
  }

  test('not yet due: a hit, no request; its renewal counted from when it was stored, not from the boot', {
    timeout: 20_000,
  }, async () => {
    // Stored with 12 s left: renewed 8 s after (counted from the boot 6 s later, it would be 10 s after).
    const { events, client, first, cached, renewing, renewed } = await rebootAfter(12 * SECOND, 6 * SECOND)
    expect(payloads(events, 'cache')[0]).toMatchObject({ action: 'hit' })
    expect(payloads(events, 'provisioned')).toMatchObject([{ source: 'cache' }])
    expect(env.server.requests).toHaveLength(1)
    expect(env.broker.connects.map(signer)).toEqual([1, 1])
    expect(client.connected).toBe(true)
    const { event, at } = await renewing
    expect(event).toMatchObject({ credential: 'secret', expiresAt: iso(first.expiresAt), attempt: 1 })
    near(at, (first.expiresAt as number) - 4 * SECOND)
    await renewed
    expect(await cached()).toBe(issued[1]?.secret)
    expect(env.broker.connects.map(signer)).toEqual([1, 1, 2])
  })

  test('past its renewal time, before its expiry: a hit, renewed at once', { timeout: 15_000 }, async () => {
    // Stored with 6 s left: due 4 s after, booted again 4.6 s after.
    const { events, cached, bootedAt, renewing, renewed } = await rebootAfter(6 * SECOND, 4.6 * SECOND)
    const { event, at } = await renewing
    expect(event).toMatchObject({ credential: 'secret', expired: false, attempt: 1 })
    expect(at - bootedAt).toBeLessThan(SLACK_MS) // due already: no wait
    await renewed
    expect(payloads(events, 'cache')[0]).toMatchObject({ action: 'hit' })
    expect(payloads(events, 'provisioned').map((e) => e.source)).toEqual(['cache', 'server'])
    expect(env.broker.connects.map(signer)).toEqual([1, 1, 2])
    expect(await cached()).toBe(issued[1]?.secret)
  })
})

describe('no secret in any event or log line', () => {
  test('through a renewal the broker refuses and one it accepts', { timeout: 15_000 }, async () => {
    // 6 s: renewed 4 s after the answer, refused, tried again a second later.
    const { bootstrap } = await bootWith({}, { lifetimeMs: 6 * SECOND })
    issue({ brokerAccepts: false })
    await nextEvent(bootstrap, 'error', () => true, WAIT_MS)
    await expect.poll(() => env.broker.connects.length, { timeout: 5000 }).toBe(3)
    issue()
    await nextEvent(bootstrap, 'renewed', () => true, WAIT_MS)
    // The suite's exposure saw the renewal (its log lines and events), and none of the three secrets.
    const text = suite.exposure.text
    expect(text).toContain('renewing credentials')
    expect(text).toContain('renewed credentials')
    expect(issued).toHaveLength(3)
    for (const { secret } of issued) expect(suite.secrets.has(secret)).toBe(true) // checked after every test too
    const passwords = env.broker.connects.map((c) => c.password as string)
    expect(suite.exposure.leaks([...issued.map((i) => i.secret), ...passwords])).toEqual([])
  })
})
