import { afterEach, expect, test, vi } from 'vitest'
import { systemClock } from '../packages/mqtt-bootstrap/src/index.js'

afterEach(() => {
  vi.useRealTimers()
})

test('sleep resolves after the delay, driven by fake timers too', async () => {
  vi.useFakeTimers()
  let done = false
  const sleeping = systemClock.sleep(5000).then(() => {
    done = true
  })
  await vi.advanceTimersByTimeAsync(4999)
  expect(done).toBe(false)
  await vi.advanceTimersByTimeAsync(1)
  await sleeping
  expect(done).toBe(true)
})

test('sleep rejects with AbortError when the signal fires, and at once when it already has', async () => {
  const controller = new AbortController()
  const sleeping = systemClock.sleep(60_000, controller.signal)
  controller.abort()
  await expect(sleeping).rejects.toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
  await expect(systemClock.sleep(10, AbortSignal.abort())).rejects.toMatchObject({ code: 'ERR_ABORTED' })
})

test('random is in [0, 1) and now is the wall clock', () => {
  const r = systemClock.random()
  expect(r).toBeGreaterThanOrEqual(0)
  expect(r).toBeLessThan(1)
  expect(Math.abs(systemClock.now() - Date.now())).toBeLessThan(1000)
})
