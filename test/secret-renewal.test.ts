/**
 * Secrets with a lifetime on the device side (issue 18), the cases that need no renewal timer to fire: an answer
 * without an `expiresAt` (nothing to renew), a cached secret past it (a fresh claim), an answer already expired by the
 * device's clock (refused), and a fake clock whose sleeps pass at once (the renewal waits real time and only reads the
 * clock: it never renews). Against a real aedes broker (plain TCP, aliyun signatures checked against its map of
 * accepted secrets) and a real HTTPS provisioning server that issues a new secret at every claim.
 * test/secret-renewal.slow.test.ts renews in real time.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, test } from 'vitest'
import {
  type BootstrapOptions,
  type Clock,
  credentialKey,
  MemoryCredentialStore,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot, payloads, type RecordedEvent, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { secretIssuer } from './helpers/secret-issuer.js'

const env = useTestEnv()

const HOUR = 3_600_000
const DAY = 24 * HOUR

/** A device clock `offsetMs` ahead of the real time (the rest of the Clock is the system's). */
const ahead = (offsetMs: number) => ({ now: () => Date.now() + offsetMs }) as Clock
const systemTime = { now: () => Date.now() }

const issuer = secretIssuer(env)
const { issued, signer } = issuer

afterEach(() => issuer.reset())

/** From now on, every claim gets a new secret living `lifetimeMs` from the answer by `clock`; `null`: no `expiresAt`. */
const issue = (clock: Pick<Clock, 'now'>, lifetimeMs: number | null = DAY) => issuer.issue({ clock, lifetimeMs })

function options(extra: Partial<BootstrapOptions> = {}): BootstrapOptions {
  return env.options({
    retry: { retries: 1, minTimeout: 1, maxTimeout: 1 },
    reconnect: { minDelay: 20, maxDelay: 50 },
    ...extra,
  })
}

const named = (events: RecordedEvent[], name: RecordedEvent[0]) => events.filter(([n]) => n === name)

describe('no renewal', () => {
  test('without an expiresAt', async () => {
    issue(systemTime, null)
    const { boot: bootstrap, events } = boot(options())
    const client = env.track(await bootstrap.connect())
    await sleep(1500) // past the earliest any renewal could start (a second after receipt)
    expect(named(events, 'renewing')).toEqual([])
    expect(named(events, 'error')).toEqual([])
    expect(env.server.requests).toHaveLength(1)
    expect(env.broker.connects.map(signer)).toEqual([1])
    expect(client.connected).toBe(true)
  })

  test('a fake clock whose sleeps pass at once does not renew: the renewal waits real time', async () => {
    const clock = new FakeClock() // its time stands still, its sleeps pass at once
    issue(clock) // a day after the fake time
    const { boot: bootstrap, events } = boot(options(), { clock })
    const client = env.track(await bootstrap.connect())
    await sleep(1500)
    expect(named(events, 'renewing')).toEqual([])
    expect(named(events, 'error')).toEqual([])
    expect(env.server.requests).toHaveLength(1)
    expect(env.broker.connects.map(signer)).toEqual([1])
    expect(client.connected).toBe(true)
  })
})

describe('a cached secret past its expiresAt', () => {
  test('the next boot is a cache miss (expired) and claims afresh', async () => {
    const cache = new MemoryCredentialStore()
    issue(systemTime) // a day's secret
    const first = env.track(await boot(options({ cache })).boot.connect())
    await first.endAsync(true)
    // A day and a half later, by the device's clock; a new claim's secret lives a day from then.
    const later = ahead(1.5 * DAY)
    issue(later)
    const { boot: bootstrap, events } = boot(options({ cache }), { clock: later })
    const client = env.track(await bootstrap.connect())
    expect(payloads(events, 'cache')[0]).toMatchObject({ action: 'miss', reason: 'expired' })
    expect(payloads(events, 'provisioned')).toMatchObject([{ source: 'server' }])
    expect(env.server.requests).toHaveLength(2)
    expect(env.broker.connects.map(signer)).toEqual([1, 2])
    expect(client.connected).toBe(true)
    const key = credentialKey(env.server.url, options().data)
    await expect.poll(async () => (await cache.get(key))?.config.device.deviceSecret).toBe(issued[1]?.secret)
  })
})

describe('an answer whose expiresAt is already past by the device clock', () => {
  test('connect() rejects with ERR_PROVISION_INVALID_RESPONSE ("99999"), not retried', async () => {
    issue(systemTime, -1000) // expired a second before the answer
    const cache = new MemoryCredentialStore()
    const { boot: bootstrap, events } = boot(options({ cache }))
    const error = await bootstrap.connect().catch((failure: unknown) => failure)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_INVALID_RESPONSE', resultCode: '99999' })
    expect((error as Error).message).toMatch(/expiresAt already past/)
    expect(env.server.requests).toHaveLength(1)
    expect(payloads(events, 'retry')).toEqual([])
    expect(env.broker.connects).toEqual([])
    expect(cache.size).toBe(0)
  })

  test('judged by the device clock: a day left by real time, but the device is two days ahead', async () => {
    issue(systemTime) // a day from the real time
    const { boot: bootstrap, events } = boot(options(), { clock: ahead(2 * DAY) })
    await expect(bootstrap.connect()).rejects.toMatchObject({ resultCode: '99999' })
    expect(env.server.requests).toHaveLength(1)
    expect(payloads(events, 'retry')).toEqual([])
    expect(env.broker.connects).toEqual([])
  })
})
