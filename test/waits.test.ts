// A wait longer than a second is logged at info with its length and reason; a shorter one at debug (issue 12: a
// device silent behind a long Retry-After looked hung). Boot waits on the fake clock; mqtt.js's reconnect timers and
// the file lock are real, and short.
import { mkdir, mkdtemp, rm, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { FileCredentialStore, type Logger, MemoryCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import { duration, logWait } from '../packages/mqtt-bootstrap/src/waits.js'
import { boot, nextEvent, useTestEnv } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { until } from './helpers/until.js'

const env = useTestEnv()

interface Line {
  level: keyof Logger
  fields: Record<string, unknown>
  message: string | undefined
}

/** A logger that keeps every line (and hands it to the suite's secret check too). */
function recorder(): { logger: Logger; lines: Line[]; waits: (level?: keyof Logger) => Line[] } {
  const lines: Line[] = []
  const exposed = suite.exposure.logger()
  const line = (level: keyof Logger) => (fields: object, message?: string) => {
    lines.push({ level, fields: fields as Record<string, unknown>, message })
    exposed[level](fields, message)
  }
  const logger = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') }
  const waits = (level?: keyof Logger) =>
    lines.filter((l) => 'waitMs' in l.fields && (level === undefined || l.level === level))
  return { logger, lines, waits }
}

describe('boot waits (fake clock)', () => {
  test('Retry-After longer than a second: info, with its length and reason', async () => {
    env.server.handle((_req, res) => {
      env.answerValid() // the next request succeeds
      res.writeHead(503, { 'retry-after': '5' }).end()
    })
    const clock = new FakeClock()
    const { logger, waits } = recorder()
    const options = env.options({ logger, retry: { retries: 3 } })
    env.track(await boot(options, { clock }).boot.connect())
    expect(clock.sleeps).toEqual([5000])
    expect(waits()).toEqual([
      {
        level: 'info',
        fields: {
          phase: 'provision',
          attempt: 1, // the attempt that failed, as in the `retry` event
          code: 'ERR_PROVISION_HTTP_STATUS',
          resultCode: '77777', // the retry event's own code, so the line and the event agree
          waitMs: 5000,
          reason: 'retry-after',
        },
        message: 'provision attempt 1 failed (ERR_PROVISION_HTTP_STATUS): waiting 5.0 s before attempt 2 (Retry-After)',
      },
    ])
  })

  test('a retry is an info line whatever its wait, with the wait and why', async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    const clock = new FakeClock()
    const { logger, waits } = recorder()
    // No jitter: the waits are 1000, 1500, 2250 ms.
    const retry = { retries: 3, minTimeout: 1000, factor: 1.5, randomize: false }
    const error = await boot(env.options({ logger, retry }), { clock })
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', attempts: 4 })
    expect(clock.sleeps).toEqual([1000, 1500, 2250])
    const failed = 'provision attempt %d failed (ERR_PROVISION_HTTP_STATUS): waiting'
    expect(waits().map((l) => [l.level, l.fields.attempt, l.fields.waitMs, l.fields.reason, l.message])).toEqual([
      ['info', 1, 1000, 'backoff', `${failed.replace('%d', '1')} 1.0 s before attempt 2 (backoff)`],
      ['info', 2, 1500, 'backoff', `${failed.replace('%d', '2')} 1.5 s before attempt 3 (backoff)`],
      ['info', 3, 2250, 'backoff', `${failed.replace('%d', '3')} 2.3 s before attempt 4 (backoff)`],
    ])
  })

  test('start-up jitter: info when it is longer than a second, debug otherwise', async () => {
    const long = recorder()
    const clock = new FakeClock()
    clock.randomValue = 0.25
    const cache = new MemoryCredentialStore()
    env.track(await boot(env.options({ logger: long.logger, cache, startupJitterMs: 8000 }), { clock }).boot.connect())
    expect(long.waits()).toEqual([
      {
        level: 'info',
        fields: { attempt: 1, waitMs: 2000, reason: 'startup-jitter' },
        message: 'waiting 2.0 s before attempt 1 (start-up jitter)',
      },
    ])
    const short = recorder()
    const options = env.options({ logger: short.logger, startupJitterMs: 4000 }) // 0.25 × 4000 = 1000 ms
    env.track(await boot(options, { clock }).boot.connect())
    expect(short.waits().map((l) => [l.level, l.fields.waitMs])).toEqual([['debug', 1000]])
  })
})

describe('reconnect waits (mqtt.js timers, real)', () => {
  test('a reconnect delay above a second is logged at info when the connection is lost', async () => {
    const { logger, waits } = recorder()
    const reconnect = { minDelay: 1200, maxDelay: 1200 }
    const { boot: bootstrap } = boot(env.options({ logger, reconnect }))
    const client = env.track(await bootstrap.connect())
    await sleep(5)
    env.broker.drop()
    await until(() => waits().length > 0, 2000, 'the wait line')
    expect(waits()[0]).toEqual({
      level: 'info',
      fields: { phase: 'reconnect', attempt: 1, code: 'ERR_BROKER_CONNECT', waitMs: 1200, reason: 'reconnect' },
      message: 'waiting 1.2 s before reconnect attempt 1 (reconnect backoff)',
    })
    await client.endAsync(true) // no need to wait it out
  })

  test('a short one at debug', async () => {
    const { logger, waits } = recorder()
    const { boot: bootstrap } = boot(env.options({ logger, reconnect: { minDelay: 20, maxDelay: 20 } }))
    env.track(await bootstrap.connect())
    await sleep(5)
    env.broker.drop()
    await nextEvent(bootstrap, 'connected', () => true, 3000)
    expect(waits().map((l) => [l.level, l.fields.waitMs, l.fields.reason])).toEqual([['debug', 20, 'reconnect']])
  })
})

describe("waiting for the file store's lock (real files)", () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-waits-'))
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  /** Hold `<path>.lock` as a live process would (touched every 100 ms) for `ms`, then release it. */
  async function holdLock(path: string, ms: number): Promise<{ released: Promise<void> }> {
    const lock = `${path}.lock`
    await mkdir(lock)
    const touch = setInterval(() => {
      const now = new Date()
      utimes(lock, now, now).catch(() => undefined)
    }, 100)
    // In an object: an async function returning the promise itself would wait for it.
    const released = sleep(ms).then(async () => {
      clearInterval(touch)
      await rm(lock, { recursive: true, force: true })
    })
    return { released }
  }

  test('a wait above a second is logged at info while it lasts and when it ends', async () => {
    const path = join(dir, 'long.json')
    const { logger, waits } = recorder()
    const store = new FileCredentialStore(path, { logger, lockStaleMs: 3000 })
    const { released } = await holdLock(path, 1300)
    const started = performance.now()
    await store.delete('absent') // a write: it takes the lock
    const waited = performance.now() - started
    await released
    expect(waited).toBeGreaterThan(1200)
    expect(waited).toBeLessThan(3500)
    const [during, after] = waits('info')
    expect(during?.fields).toMatchObject({ reason: 'lock', maxWaitMs: 3500 })
    expect(during?.fields.waitMs).toBeGreaterThan(1000)
    expect(during?.message).toBe(`waiting for the lock ${path}.lock (held by another process), at most 3.5 s`)
    expect(after?.fields.reason).toBe('lock')
    expect(after?.fields.waitMs).toBeGreaterThan(1200)
    expect(after?.message).toMatch(/^waited 1\.\d s for the lock .*long\.json\.lock \(held by another process\)$/)
    expect(waits()).toHaveLength(2)
  })

  test("a store made without a logger logs its waits through the bootstrap's logger", async () => {
    const path = join(dir, 'through-boot.json')
    const { logger, waits } = recorder()
    const cache = new FileCredentialStore(path, { lockStaleMs: 3000 })
    const { released } = await holdLock(path, 1300)
    env.track(await boot(env.options({ logger, cache })).boot.connect()) // its cache write waits for the lock
    await released
    expect(waits('info').map((l) => [l.fields.reason, l.message?.split(' ')[0]])).toEqual([
      ['lock', 'waiting'],
      ['lock', 'waited'],
    ])
    // A store with a logger of its own keeps it.
    const own = recorder()
    const kept = new FileCredentialStore(join(dir, 'own.json'), { logger: own.logger })
    kept.useLogger(logger)
    const held = await holdLock(kept.path, 1300)
    await kept.delete('absent')
    await held.released
    expect(own.waits('info')).toHaveLength(2)
    expect(waits('info')).toHaveLength(2) // nothing more in the bootstrap's
  })

  test('a short wait at debug only', async () => {
    const path = join(dir, 'short.json')
    const { logger, waits } = recorder()
    const store = new FileCredentialStore(path, { logger, lockStaleMs: 3000 })
    const { released } = await holdLock(path, 150)
    await store.delete('absent')
    await released
    expect(waits('info')).toEqual([])
    expect(waits('debug')).toHaveLength(1)
    expect(waits('debug')[0]?.fields.reason).toBe('lock')
  })

  test('a logger that is not one is refused', () => {
    expect(() => new FileCredentialStore(join(dir, 'x.json'), { logger: console.log as never })).toThrow(TypeError)
  })
})

describe('the wait line itself', () => {
  test('lengths read as ms below a second, tenths of seconds above', () => {
    expect([0, 999, 1000, 4200, 61_000, 300_000].map(duration)).toEqual([
      '0 ms',
      '999 ms',
      '1.0 s',
      '4.2 s',
      '61.0 s',
      '300 s',
    ])
    const { logger, lines } = recorder()
    logWait(logger, 4200, 'retry-after', 'attempt 3')
    logWait(logger, 1000, 'backoff', 'attempt 2')
    expect(lines).toEqual([
      {
        level: 'info',
        fields: { waitMs: 4200, reason: 'retry-after' },
        message: 'waiting 4.2 s before attempt 3 (Retry-After)',
      },
      {
        level: 'debug',
        fields: { waitMs: 1000, reason: 'backoff' },
        message: 'waiting 1.0 s before attempt 2 (backoff)',
      },
    ])
  })
})
