/**
 * The library's waits as log lines (issue 12: a device that sat silent for 40 s behind a Retry-After looked hung). A
 * wait longer than LONG_WAIT_MS is logged at info with its length and reason, e.g. `{ waitMs: 4200, reason:
 * 'retry-after' }` and 'waiting 4.2 s before attempt 3 (Retry-After)'; a shorter one at debug.
 */
import { errorCode } from './errors.js'
import type { Logger } from './logger.js'
import type { RetryInfo } from './retry.js'

/** Why the library waits: start-up jitter, a retry's backoff or the server's Retry-After, a reconnect, a file lock. */
export type WaitReason = 'startup-jitter' | 'backoff' | 'retry-after' | 'reconnect' | 'lock'

/** Waits longer than this (ms) are logged at info; shorter ones at debug. */
export const LONG_WAIT_MS = 1000

const SHOWN: Readonly<Record<WaitReason, string>> = {
  'startup-jitter': 'start-up jitter',
  backoff: 'backoff',
  'retry-after': 'Retry-After',
  reconnect: 'reconnect backoff',
  lock: 'held by another process',
}

/**
 * Log a wait of `waitMs` before `before` (e.g. `attempt 3`), with `fields` (no secrets: they are logged as they are,
 * scrubbed by the area logger).
 */
export function logWait(logger: Logger, waitMs: number, reason: WaitReason, before: string, fields: object = {}): void {
  const level = waitMs > LONG_WAIT_MS ? 'info' : 'debug'
  logger[level]({ ...fields, waitMs, reason }, `waiting ${duration(waitMs)} before ${before} (${SHOWN[reason]})`)
}

/**
 * A retry: always at info (a failed attempt is worth a line whatever the wait), with its wait. `attempt` is the number
 * of the attempt that failed, as in the `retry` event; `code` its error code; `fields` what the event says besides
 * (the provision phase's `resultCode`).
 */
export function logRetry(
  logger: Logger,
  phase: string,
  { attempt, delayMs, reason, error }: RetryInfo,
  extra: object = {},
): void {
  const fields = { phase, attempt, code: errorCode(error) ?? error.name, ...extra, waitMs: delayMs, reason }
  const wait = `waiting ${duration(delayMs)} before attempt ${attempt + 1} (${SHOWN[reason]})`
  logger.info(fields, `${phase} attempt ${attempt} failed (${fields.code}): ${wait}`)
}

/** A wait that has happened (a lock, whose length is only known once it is over): `waited 2.3 s for …`. */
export function logWaited(logger: Logger, waitMs: number, reason: WaitReason, what: string, fields: object = {}): void {
  const level = waitMs > LONG_WAIT_MS ? 'info' : 'debug'
  logger[level]({ ...fields, waitMs, reason }, `waited ${duration(waitMs)} for ${what} (${SHOWN[reason]})`)
}

/** `850 ms`, `4.2 s`, `95 s`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  return ms < 100_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`
}
