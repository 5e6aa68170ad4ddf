import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, test } from 'vitest'
import { BootTimeoutError, MemoryCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import { boot, payloads, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { until } from './helpers/until.js'

const env = useTestEnv()

describe('start-up jitter', () => {
  test('a random wait in [0, startupJitterMs) before the first provisioning request only', async () => {
    const clock = new FakeClock()
    clock.randomValue = 0.25
    const cache = new MemoryCredentialStore()
    const { boot: bootstrap } = boot(env.options({ cache, startupJitterMs: 8000 }), { clock })
    env.track(await bootstrap.connect())
    expect(clock.sleeps).toEqual([2000])
    env.track(await bootstrap.connect()) // cache hit: no wait
    await bootstrap.invalidate()
    env.track(await bootstrap.connect()) // provisions again, without a second start-up wait
    expect(clock.sleeps).toEqual([2000])
    expect(env.server.requests).toHaveLength(2)
  })

  test('a cached boot does not wait at all', async () => {
    const clock = new FakeClock()
    const cache = new MemoryCredentialStore()
    env.track(await boot(env.options({ cache }), { clock }).boot.connect())
    env.track(await boot(env.options({ cache, startupJitterMs: 8000 }), { clock }).boot.connect())
    expect(clock.sleeps).toEqual([])
  })

  test('the wait is cancelled by the signal', async () => {
    const clock = new FakeClock()
    clock.hold = true
    const controller = new AbortController()
    const { boot: bootstrap } = boot(env.options({ startupJitterMs: 8000, signal: controller.signal }), { clock })
    const pending = bootstrap.connect()
    await clock.sleeping()
    controller.abort()
    await expect(pending).rejects.toMatchObject({ code: 'ERR_ABORTED' })
    expect(env.server.requests).toHaveLength(0)
  })
})

describe('one deadline for the whole boot', () => {
  test("two concurrent calls keep their own causes: a call that starts later does not wipe an earlier one's", async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    // One failed attempt, then a long backoff: no retry fails while the deadlines run out.
    const retry = { retries: 5, minTimeout: 5000, maxTimeout: 5000, randomize: false }
    const { boot: bootstrap } = boot(env.options({ deadlineMs: 400, retry }))
    const first = bootstrap.provision().catch((e: unknown) => e)
    await until(() => env.server.requests.length === 1, 2000, 'the first request')
    await sleep(100) // its failure is retried (the backoff has begun)
    const second = bootstrap.connectOptions().catch((e: unknown) => e) // joins the same failing flight
    const [a, b] = await Promise.all([first, second])
    expect(a).toMatchObject({ code: 'ERR_BOOT_TIMEOUT', cause: { code: 'ERR_PROVISION_HTTP_STATUS' } })
    expect(b).toMatchObject({ code: 'ERR_BOOT_TIMEOUT', cause: { code: 'ERR_PROVISION_HTTP_STATUS' } })
    expect(env.server.requests).toHaveLength(1)
  })

  test('a provisioning server that keeps failing: ERR_BOOT_TIMEOUT with the last failure as cause', async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    const { boot: bootstrap, events } = boot(
      env.options({ deadlineMs: 400, retry: { retries: 100, minTimeout: 50, maxTimeout: 50, randomize: false } }),
    )
    const started = performance.now()
    const error = await bootstrap.connect().catch((e: unknown) => e)
    expect(performance.now() - started).toBeLessThan(2000)
    expect(error).toBeInstanceOf(BootTimeoutError)
    expect(error).toMatchObject({ code: 'ERR_BOOT_TIMEOUT', cause: { code: 'ERR_PROVISION_HTTP_STATUS' } })
    expect(env.server.requests.length).toBeGreaterThan(1)
    expect(payloads(events, 'error').at(-1)?.error).toBe(error)
  })

  test('a server that never answers, with a long per-request timeout', async () => {
    env.server.handle(() => {})
    const { boot: bootstrap } = boot(env.options({ deadlineMs: 300, timeoutMs: 60_000 }))
    await expect(bootstrap.provision()).rejects.toMatchObject({ code: 'ERR_BOOT_TIMEOUT' })
  })

  test('a broker that never answers CONNACK', async () => {
    const silent = net.createServer((socket) => socket.on('data', () => {})).listen(0, '127.0.0.1')
    await once(silent, 'listening')
    try {
      env.answerValid({ host: `127.0.0.1:${(silent.address() as AddressInfo).port}` })
      const { boot: bootstrap } = boot(env.options({ deadlineMs: 300 }))
      await expect(bootstrap.connect()).rejects.toMatchObject({ code: 'ERR_BOOT_TIMEOUT' })
    } finally {
      silent.close()
    }
  })

  test('the deadline does not outlive the call', async () => {
    const { boot: bootstrap } = boot(env.options({ deadlineMs: 200 }))
    const client = env.track(await bootstrap.connect())
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(client.connected).toBe(true)
  })
})
