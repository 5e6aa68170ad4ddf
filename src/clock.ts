/**
 * Time and randomness, behind one small interface so tests replace them (the only fake the test suite uses) and
 * retry delays stay deterministic under test.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { AbortError, throwIfAborted } from './errors.js'

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
  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal)
    try {
      await delay(ms, undefined, signal === undefined ? undefined : { signal })
    } catch (error) {
      throw signal?.aborted ? new AbortError(signal.reason) : error
    }
  },
  random: () => Math.random(),
})
