/**
 * Time and randomness, behind one small interface so tests replace them (the only fake the test suite uses) and
 * retry delays stay deterministic under test.
 */
import { AbortError } from './errors.js'

export interface Clock {
  /** Milliseconds since the epoch (the aliyun signature's timestamp, Retry-After dates). */
  now(): number
  /** Resolve after `ms`; reject with an `AbortError` (code `ERR_ABORTED`) as soon as `signal` fires. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>
  /** A number in [0, 1), for jitter. */
  random(): number
}

export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  // The global setTimeout (not timers/promises), so test runners' fake timers drive it too.
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason))
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer)
        reject(new AbortError(signal?.reason))
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }, ms)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  },
  random: () => Math.random(),
})

/** A clock registered by a caller may implement only part of the interface; the rest comes from the system. */
export function completeClock(clock: Partial<Clock>): Clock {
  if (clock === systemClock) return systemClock // complete already: no object per bootstrap
  return {
    now: typeof clock.now === 'function' ? () => (clock.now as () => number).call(clock) : systemClock.now,
    sleep:
      typeof clock.sleep === 'function'
        ? (ms, signal) => (clock.sleep as Clock['sleep']).call(clock, ms, signal)
        : systemClock.sleep,
    random: typeof clock.random === 'function' ? () => (clock.random as () => number).call(clock) : systemClock.random,
  }
}
