/**
 * The retry loop around async-retry: every wait is the Clock's (async-retry's own timers are real: a fake clock cannot
 * skip them, a signal cannot stop them), and the attempt count is ours at any size (async-retry's default is 10).
 */
import type { MqttClient } from 'mqtt'
import { describe, expect, test } from 'vitest'
import { ProvisioningError } from '../packages/mqtt-bootstrap/src/index.js'
import { RETRY_DEFAULTS, type RetryInfo, type RetryPolicy, withRetry } from '../packages/mqtt-bootstrap/src/retry.js'
import { boot, payloads, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { configAnswer, json } from './helpers/https-server.js'

/** A "77777" answer: transient, so retried. */
function busy(n: number): ProvisioningError {
  return new ProvisioningError('ERR_PROVISION_HTTP_STATUS', `attempt ${n}: busy`, {
    resultCode: '77777',
    transient: true,
    status: 503,
  })
}

/** The backoff of the defaults, without jitter, so that the fake clock's sleeps are known. */
function policy(retries: number): RetryPolicy {
  return { ...RETRY_DEFAULTS, randomize: false, retries }
}

/** The waits `retries` retries ask the clock for: 1 s doubling up to the 60 s cap. */
function backoff(retries: number): number[] {
  return Array.from({ length: retries }, (_, i) => Math.min(60_000, 1000 * 2 ** i))
}

/**
 * What `promise` settles with (a rejection as its error), or 'too slow' after `ms` of real time. The loops below need
 * a few ms; one real async-retry wait lasts 1 s or more, so the margins are loose yet decisive.
 */
async function within<T>(ms: number, promise: Promise<T>): Promise<T | unknown> {
  let timer: NodeJS.Timeout | undefined
  const slow = new Promise<'too slow'>((resolve) => {
    timer = setTimeout(() => resolve('too slow'), ms)
  })
  try {
    return await Promise.race([promise.catch((error: unknown) => error), slow])
  } finally {
    clearTimeout(timer)
  }
}

/** An attempt that fails until `succeedAt` (never by default), counting its calls; `stop()` ends a loop left behind. */
function failing(succeedAt = Number.POSITIVE_INFINITY) {
  let stopped = false
  const calls: number[] = []
  return {
    calls,
    stop: () => {
      stopped = true
    },
    attempt: async (n: number) => {
      calls.push(n)
      if (stopped || n >= succeedAt) return `done at ${n}`
      throw busy(n)
    },
  }
}

describe('async-retry waits no real time', () => {
  test("20 retries on the fake clock: 20 sleeps of the backoff, all the Clock's, in well under a second", async () => {
    const clock = new FakeClock()
    const loop = failing()
    const retries: RetryInfo[] = []
    const outcome = await within(
      1000,
      withRetry(loop.attempt, { policy: policy(20), clock, onRetry: (info) => retries.push(info) }),
    )
    loop.stop()
    expect(outcome).toMatchObject({ message: 'attempt 21: busy', attempts: 21 })
    expect(loop.calls).toEqual(Array.from({ length: 21 }, (_, i) => i + 1))
    expect(clock.sleeps).toEqual(backoff(20))
    expect(retries.map((r) => [r.attempt, r.delayMs])).toEqual(backoff(20).map((ms, i) => [i + 1, ms]))
  })

  test('an abort between two attempts ends the loop at once, with no further attempt', async () => {
    const clock = new FakeClock()
    const loop = failing()
    const controller = new AbortController()
    const started = performance.now()
    // Aborted as attempt 2 fails: the next wait would be async-retry's first one (after attempt 1 it runs at once).
    const outcome = await within(
      1000,
      withRetry(loop.attempt, {
        policy: policy(5),
        clock,
        signal: controller.signal,
        onRetry: ({ attempt }) => {
          if (attempt === 2) controller.abort()
        },
      }),
    )
    loop.stop()
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
    expect(performance.now() - started).toBeLessThan(500)
    expect(loop.calls).toEqual([1, 2])
    expect(clock.sleeps).toEqual([1000, 2000])
  })
})

describe("the attempt count is the policy's, however large", () => {
  // 12 is the first count async-retry's default (10 retries of its own, after our first attempt) would cut short.
  test.each([1, 12, 50])(
    'retries: %i makes exactly retries + 1 attempts, then rejects with the last error',
    async (n) => {
      const clock = new FakeClock()
      const loop = failing()
      const outcome = await within(1000, withRetry(loop.attempt, { policy: policy(n), clock, onRetry: () => {} }))
      loop.stop()
      expect(outcome).toBeInstanceOf(ProvisioningError)
      expect(outcome).toMatchObject({ message: `attempt ${n + 1}: busy`, attempts: n + 1 })
      expect(loop.calls).toHaveLength(n + 1)
      expect(clock.sleeps).toHaveLength(n)
    },
  )

  test('a success at attempt 40 of 51 ends the loop there', async () => {
    const clock = new FakeClock()
    const loop = failing(40)
    const outcome = await within(1000, withRetry(loop.attempt, { policy: policy(50), clock, onRetry: () => {} }))
    expect(outcome).toBe('done at 40')
    expect(loop.calls).toHaveLength(40)
    expect(clock.sleeps).toEqual(backoff(39))
  })
})

describe("errors that are not the library's", () => {
  test('end the loop as they are, without an attempts field, even when frozen', async () => {
    for (const foreign of [new TypeError('a connector bug'), Object.freeze(new RangeError('frozen'))]) {
      const clock = new FakeClock()
      let calls = 0
      const attempt = async () => {
        calls++
        throw foreign
      }
      await expect(withRetry(attempt, { policy: policy(5), clock, onRetry: () => {} })).rejects.toBe(foreign)
      expect(foreign).not.toHaveProperty('attempts')
      expect(calls).toBe(1)
      expect(clock.sleeps).toEqual([])
    }
  })
})

describe('through a real provisioning server', () => {
  const env = useTestEnv()

  test('busy 25 times: retries: 30 make 26 requests on the fake clock, in bounded real time', async () => {
    let answered = 0
    env.server.handle((_req, res) => {
      if (++answered <= 25) res.writeHead(503).end()
      else json(res, 200, configAnswer({ host: env.broker.host }))
    })
    const clock = new FakeClock()
    const { boot: bootstrap, events } = boot(env.options({ retry: { retries: 30 } }), { clock })
    const client = await within(5000, bootstrap.connect())
    expect(client).toHaveProperty('connected', true)
    env.track(client as MqttClient)
    expect(env.server.requests).toHaveLength(26)
    expect(clock.sleeps).toHaveLength(25)
    expect(payloads(events, 'retry').map((e) => e.attempt)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1))
  })
})
