import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { describe, expect, test } from 'vitest'
import { BrokerError, ProvisioningError } from '../packages/mqtt-bootstrap/src/index.js'
import { parseRetryAfter, RETRY_DEFAULTS, retryDelay } from '../packages/mqtt-bootstrap/src/retry.js'
import { startBroker } from './helpers/broker.js'
import { abortDuringBackoff, boot, eventTrail, payloads, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { configAnswer, DEVICE, json } from './helpers/https-server.js'

const env = useTestEnv()

/** Answer with `failures` in order, then the valid configuration. */
function failThen(...failures: Array<(res: import('node:http').ServerResponse) => void>) {
  let n = 0
  env.server.handle((_req, res) => {
    const failure = failures[n++]
    if (failure) failure(res)
    else json(res, 200, configAnswer({ host: env.broker.host }))
  })
}

describe('backoff policy', () => {
  test('exponential ceilings, capped; full jitter scales by random()', () => {
    const policy = { ...RETRY_DEFAULTS, minTimeout: 100, factor: 2, maxTimeout: 1000, randomize: false }
    expect([1, 2, 3, 4, 5, 6].map((n) => retryDelay(policy, n, () => 0.5))).toEqual([100, 200, 400, 800, 1000, 1000])
    const jittered = { ...policy, randomize: true }
    expect([1, 2, 3].map((n) => retryDelay(jittered, n, () => 0.5))).toEqual([50, 100, 200])
    expect(retryDelay(jittered, 3, () => 0)).toBe(0)
  })

  test('Retry-After wins over the backoff, up to maxRetryAfter', () => {
    const policy = { ...RETRY_DEFAULTS, maxRetryAfter: 10_000 }
    expect(retryDelay(policy, 1, () => 0.5, 7000)).toBe(7000)
    expect(retryDelay(policy, 1, () => 0.5, 60_000)).toBe(10_000)
    expect(retryDelay(policy, 1, () => 0.5, 0)).toBe(0)
  })

  test('Retry-After parses delta-seconds and HTTP-dates, and ignores garbage', () => {
    const now = Date.parse('Wed, 21 Oct 2026 07:28:00 GMT')
    expect(parseRetryAfter('120', now)).toBe(120_000)
    expect(parseRetryAfter(' 0 ', now)).toBe(0)
    expect(parseRetryAfter('Wed, 21 Oct 2026 07:28:30 GMT', now)).toBe(30_000)
    expect(parseRetryAfter('Wed, 21 Oct 2026 07:00:00 GMT', now)).toBe(0)
    for (const junk of [undefined, '', '-5', '1.5', 'soon', 'Thu, 99 Foo 2026']) {
      expect(parseRetryAfter(junk, now)).toBeUndefined()
    }
  })
})

describe('provisioning retries', () => {
  test('"77777" answers and 5xx are retried with jittered backoff until success', async () => {
    failThen(
      (res) => json(res, 200, { code: '77777' }),
      (res) => res.writeHead(500).end('<html>boom</html>'),
    )
    const clock = new FakeClock()
    const { boot: bootstrap, events } = boot(env.options(), { clock })
    env.track(await bootstrap.connect())
    expect(env.server.requests).toHaveLength(3)
    // minTimeout 1000, factor 2, random() 0.5: ceilings 1000, 2000 -> waits 500, 1000.
    expect(clock.sleeps).toEqual([500, 1000])
    const retries = payloads(events, 'retry')
    expect(retries).toMatchObject([
      { phase: 'provision', attempt: 1, delayMs: 500, code: '77777' },
      { phase: 'provision', attempt: 2, delayMs: 1000, code: '77777' },
    ])
    expect(retries[1]?.error).toBeInstanceOf(ProvisioningError)
    expect((retries[1]?.error as ProvisioningError | undefined)?.code).toBe('ERR_PROVISION_HTTP_STATUS')
  })

  test('network failures, timeouts and 408 are retried', async () => {
    failThen(
      (res) => res.destroy(),
      () => {},
      (res) => res.writeHead(408).end(),
    )
    const clock = new FakeClock()
    const { boot: bootstrap, events } = boot(env.options({ timeoutMs: 300 }), { clock })
    env.track(await bootstrap.connect())
    expect(env.server.requests).toHaveLength(4)
    const codes = payloads(events, 'retry').map((e) => (e.error as ProvisioningError).code)
    expect(codes).toEqual(['ERR_PROVISION_NETWORK', 'ERR_PROVISION_TIMEOUT', 'ERR_PROVISION_HTTP_STATUS'])
  })

  test('503 Retry-After (seconds) sets the wait', async () => {
    failThen((res) => res.writeHead(503, { 'retry-after': '7' }).end())
    const clock = new FakeClock()
    env.track(await boot(env.options(), { clock }).boot.connect())
    expect(clock.sleeps).toEqual([7000])
  })

  test('429 Retry-After (HTTP-date) sets the wait, capped by maxRetryAfter', async () => {
    const clock = new FakeClock()
    failThen(
      (res) => res.writeHead(429, { 'retry-after': new Date(clock.time + 30_000).toUTCString() }).end(),
      (res) => res.writeHead(429, { 'retry-after': new Date(clock.time + 3_600_000).toUTCString() }).end(),
    )
    env.track(await boot(env.options({ retry: { retries: 3, maxRetryAfter: 60_000 } }), { clock }).boot.connect())
    expect(clock.sleeps).toEqual([30_000, 60_000])
  })

  test('attempts are bounded: retries + 1 requests, then the last error with attempts', async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    const clock = new FakeClock()
    const error = await boot(env.options({ retry: { retries: 2 } }), { clock })
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProvisioningError)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', resultCode: '77777', attempts: 3, status: 503 })
    expect(env.server.requests).toHaveLength(3)
    expect(clock.sleeps).toHaveLength(2)
  })

  test('retry: false makes a single attempt', async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    await expect(boot(env.options({ retry: false })).boot.connect()).rejects.toMatchObject({ attempts: 1 })
    expect(env.server.requests).toHaveLength(1)
  })

  const permanent: Array<[string, (res: import('node:http').ServerResponse) => void, object]> = [
    [
      '"99999" (not JSON)',
      (res) => res.writeHead(200).end('nope'),
      { code: 'ERR_PROVISION_INVALID_RESPONSE', resultCode: '99999' },
    ],
    [
      'a server refusal',
      (res) => json(res, 200, { code: '10001' }),
      { code: 'ERR_PROVISION_REFUSED', resultCode: '10001' },
    ],
    [
      'an invalid result',
      (res) => json(res, 200, configAnswer({ host: 'h', qos: 7 })),
      { code: 'ERR_PROVISION_INVALID_RESPONSE' },
    ],
    ['HTTP 401', (res) => res.writeHead(401).end(), { code: 'ERR_PROVISION_HTTP_STATUS', resultCode: '99999' }],
  ]
  test.each(permanent)('%s is not retried', async (_name, answer, expected) => {
    env.server.handle((_req, res) => answer(res))
    const clock = new FakeClock()
    const { boot: bootstrap, events } = boot(env.options(), { clock })
    await expect(bootstrap.connect()).rejects.toMatchObject({ ...expected, attempts: 1 })
    expect(env.server.requests).toHaveLength(1)
    expect(clock.sleeps).toEqual([])
    expect(eventTrail(events)).toEqual(['cache:miss', 'provisioning', 'error'])
  })

  test('a TLS certificate error is not retried and never retried insecurely', async () => {
    const clock = new FakeClock()
    const { boot: bootstrap } = boot(env.options({ tls: {} }), { clock })
    await expect(bootstrap.connect()).rejects.toMatchObject({ code: 'ERR_PROVISION_TLS', attempts: 1 })
    expect(env.server.requests).toHaveLength(0)
    expect(clock.sleeps).toEqual([])
  })
})

describe('abort', () => {
  test('an AbortSignal cancels during a backoff sleep', async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    const { error, events } = await abortDuringBackoff(env.options())
    expect(error).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
    expect(env.server.requests).toHaveLength(1)
    expect(events.at(-1)?.[0]).toBe('error')
  })

  test('a per-call signal cancels too', async () => {
    env.server.handle(() => {})
    const controller = new AbortController()
    const pending = boot(env.options()).boot.connect({ signal: controller.signal })
    setTimeout(() => controller.abort(), 50)
    await expect(pending).rejects.toMatchObject({ code: 'ERR_ABORTED' })
  })

  test('an already aborted signal makes no request', async () => {
    const { boot: bootstrap } = boot(env.options({ signal: AbortSignal.abort() }))
    await expect(bootstrap.connect()).rejects.toMatchObject({ code: 'ERR_ABORTED' })
    expect(env.server.requests).toHaveLength(0)
  })
})

describe('broker connect retries', () => {
  test('a broker down at boot is retried; the device connects once it is up', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const { port } = probe.address() as AddressInfo
    probe.close()
    await once(probe, 'close')
    env.answerValid({ host: `127.0.0.1:${port}` })
    let late: Awaited<ReturnType<typeof startBroker>> | undefined
    const clock = new FakeClock()
    clock.onSleep = async () => {
      if (clock.sleeps.length === 2) {
        late = await startBroker({
          secrets: { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret },
          port,
        })
      }
    }
    try {
      const { boot: bootstrap, events } = boot(env.options(), { clock })
      const client = env.track(await bootstrap.connect())
      expect(client.connected).toBe(true)
      expect(late?.accepted).toBe(1)
      expect(payloads(events, 'retry').map((e) => [e.phase, e.code])).toEqual([
        ['connect', 'ERR_BROKER_CONNECT'],
        ['connect', 'ERR_BROKER_CONNECT'],
      ])
      expect(env.server.requests).toHaveLength(1)
    } finally {
      await env.cleanup()
      await late?.close()
    }
  })

  test('a broker that stays down fails with ERR_BROKER_CONNECT after the retries', async () => {
    env.answerValid({ host: '127.0.0.1:1' })
    const clock = new FakeClock()
    const error = await boot(env.options({ retry: { retries: 2 } }), { clock })
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(BrokerError)
    expect(error).toMatchObject({ code: 'ERR_BROKER_CONNECT', transient: true, attempts: 3 })
  })
})
