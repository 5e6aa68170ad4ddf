/**
 * The retry policy: exponential backoff with full jitter, Retry-After taking precedence up to a cap.
 *
 * The loop itself is async-retry's (attempt counting, `bail()` for permanent errors). Its own waits are set to zero and
 * each attempt first sleeps the delay computed here, because async-retry can neither jitter fully (its `randomize`
 * multiplies by 1..2), nor honour a server's Retry-After, nor be cancelled or faked: our sleep comes from the injected
 * Clock and stops at the AbortSignal.
 */
import type { Clock } from './clock.js'
import { isTransient, MqttBootstrapError, throwIfAborted } from './errors.js'
import { asyncRetry } from './lazy.js'
import {
  checkBoolean,
  checkCeiling,
  checkFactor,
  checkInteger,
  checkKnown,
  fail,
  isPlainObject,
  MAX_DELAY_MS,
  typeName,
} from './option-checks.js'

/** How failed attempts are retried. The names follow async-retry's options. */
export interface RetryOptions {
  /** Retries after the first attempt (so at most `retries + 1` attempts). @default 5 */
  retries?: number
  /** Growth of the backoff ceiling per attempt. @default 2 */
  factor?: number
  /** Backoff ceiling of the first retry, in ms. @default 1000 */
  minTimeout?: number
  /** Largest backoff ceiling, in ms. @default 60000 */
  maxTimeout?: number
  /** Full jitter: wait a uniformly random time between 0 and the ceiling. `false` waits the ceiling. @default true */
  randomize?: boolean
  /** Cap on a server's Retry-After, in ms; a longer one is shortened to this. @default 300000 */
  maxRetryAfter?: number
  /** Called before each retry with the error and the number of the attempt that failed (as async-retry does). */
  onRetry?: (error: Error, attempt: number) => void
}

export type RetryPolicy = Readonly<Required<Omit<RetryOptions, 'onRetry'>>> & Pick<RetryOptions, 'onRetry'>

export const RETRY_DEFAULTS: RetryPolicy = Object.freeze({
  retries: 5,
  factor: 2,
  minTimeout: 1000,
  maxTimeout: 60_000,
  randomize: true,
  maxRetryAfter: 300_000,
})

/** No retries at all (`retry: false`). */
export const NO_RETRY: RetryPolicy = Object.freeze({ ...RETRY_DEFAULTS, retries: 0 })

const RETRY_OPTIONS: ReadonlySet<string> = new Set([...Object.keys(RETRY_DEFAULTS), 'onRetry'])

/** The `retry` option as a policy: `false` is a single attempt, absent the defaults. Throws `InvalidOptionError`. */
export function resolveRetryOptions(value: RetryOptions | false | undefined): RetryPolicy {
  if (value === false) return NO_RETRY
  if (value === undefined) return RETRY_DEFAULTS
  if (!isPlainObject(value)) fail('retry', 'an object of retry options or false', typeName(value))
  checkKnown(value, RETRY_OPTIONS, 'retry.')
  const r: RetryOptions = value
  const minTimeout = checkInteger(r.minTimeout ?? RETRY_DEFAULTS.minTimeout, 'retry.minTimeout', 0, MAX_DELAY_MS)
  const maxTimeout = checkCeiling(r.maxTimeout, minTimeout, RETRY_DEFAULTS.maxTimeout, 'retry.maxTimeout')
  const factor = checkFactor(r.factor ?? RETRY_DEFAULTS.factor, 'retry.factor')
  const randomize = checkBoolean(r.randomize ?? RETRY_DEFAULTS.randomize, 'retry.randomize')
  if (r.onRetry !== undefined && typeof r.onRetry !== 'function') {
    fail('retry.onRetry', 'a function', typeName(r.onRetry))
  }
  return Object.freeze({
    retries: checkInteger(r.retries ?? RETRY_DEFAULTS.retries, 'retry.retries', 0, 1000),
    factor,
    minTimeout,
    maxTimeout,
    randomize,
    maxRetryAfter: checkInteger(
      r.maxRetryAfter ?? RETRY_DEFAULTS.maxRetryAfter,
      'retry.maxRetryAfter',
      0,
      MAX_DELAY_MS,
    ),
    ...(r.onRetry === undefined ? {} : { onRetry: r.onRetry }),
  })
}

/** The wait after failed attempt number `attempt` (1-based). A Retry-After, when given, wins over the backoff. */
export function retryDelay(policy: RetryPolicy, attempt: number, random: () => number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxRetryAfter)
  const ceiling = Math.min(policy.maxTimeout, policy.minTimeout * policy.factor ** (attempt - 1))
  return policy.randomize ? Math.floor(random() * ceiling) : ceiling
}

/**
 * How the three HTTP-date formats start (`Sun, 06 Nov`, `Sunday, 06-Nov-94`, `Sun Nov  6`). Date.parse takes far more
 * (`1.5`, `-5` and `12 Oct 2026` are dates to V8): nothing else reaches it.
 */
const HTTP_DATE = /^[A-Za-z]{3,9},? /

/** Retry-After as milliseconds from `now`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  const text = value?.trim()
  if (!text) return undefined
  if (/^\d+$/.test(text)) return Math.min(Number(text), 2 ** 31 / 1000) * 1000
  if (!HTTP_DATE.test(text)) return undefined
  // Every HTTP-date is in GMT (RFC 9110 §5.6.7), but asctime's says no zone, which Date.parse reads as local time: a
  // zone appended decides (V8 takes the last one, so `… GMT GMT` is still GMT).
  const date = Date.parse(`${text} GMT`)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

export interface RetryInfo {
  /** The number of the attempt that failed (1-based). */
  attempt: number
  delayMs: number
  /** Whose wait `delayMs` is: the server's Retry-After (capped), or the computed backoff. */
  reason: 'retry-after' | 'backoff'
  error: Error
}

export interface RetryLoop {
  policy: RetryPolicy
  clock: Clock
  signal?: AbortSignal | undefined
  /** Called once per retry, before its sleep. */
  onRetry(info: RetryInfo): void
}

/**
 * Run `attempt` until it succeeds, a permanent error occurs, or the retries are spent. The error that ends the loop
 * is rejected as it is, with `attempts` set when it has such a field.
 */
export async function withRetry<T>(attempt: (n: number) => Promise<T>, loop: RetryLoop): Promise<T> {
  const { policy, clock, signal } = loop
  let wait = 0
  /** Settle a failed attempt `n`: true when it is retried (after `wait`), false when it ends the loop. */
  const failed = (error: Error, n: number): boolean => {
    // Every error of the library carries these (errors.ts); others pass as they are (they may be frozen).
    const own = error instanceof MqttBootstrapError ? error : undefined
    if (own !== undefined && Object.isExtensible(own)) own.attempts = n // a sealed or frozen one keeps its own
    if (!isTransient(error) || n > policy.retries) return false
    const retryAfterMs = own?.retryAfterMs
    wait = retryDelay(policy, n, () => clock.random(), retryAfterMs)
    loop.onRetry({ attempt: n, delayMs: wait, reason: retryAfterMs === undefined ? 'backoff' : 'retry-after', error })
    policy.onRetry?.(error, n)
    return true
  }

  // The first attempt runs as it is: most boots succeed at once, and need no retry machinery.
  try {
    throwIfAborted(signal)
    return await attempt(1)
  } catch (caught) {
    const error = caught instanceof Error ? caught : new Error(String(caught))
    if (!failed(error, 1)) throw error
  }
  // Attempts 2 .. retries + 1: async-retry's loop (it counts its own attempts from 1).
  return asyncRetry()<T>(
    async (bail, retry) => {
      const n = retry + 1
      try {
        await clock.sleep(wait, signal)
        throwIfAborted(signal)
        return await attempt(n)
      } catch (caught) {
        const error = caught instanceof Error ? caught : new Error(String(caught))
        if (failed(error, n)) throw error
        // bail() and return: throwing after bail() would retry anyway (async-retry issue #69).
        bail(error)
        return undefined as T
      }
    },
    // async-retry must not wait itself: its timers are real (a fake Clock cannot skip them, the signal cannot stop
    // them). maxTimeout 0 caps every wait at 0, whatever its factor and randomize; minTimeout 0 because retry throws
    // when it exceeds maxTimeout. Its count (1 or more: attempt 1 was retried) must not run out first (its default of
    // 10 would): failed() ends the loop after attempt retries + 1, with the last error (async-retry would reject
    // with the most frequent one).
    { retries: policy.retries - 1, minTimeout: 0, maxTimeout: 0 },
  )
}
