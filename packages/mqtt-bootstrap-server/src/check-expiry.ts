/**
 * The checker's judgement of `device.expiresAt` (issue 18: a secret with a lifetime), part of its `device` check: the
 * schema has checked the form (RFC 3339 with an offset); here, that the date exists and is still ahead by the
 * checker's clock, as a device that renews before it needs.
 */
import { expiryTime } from 'mqtt-bootstrap/contract'
import type { CheckStatus } from './check-claims.js'

/**
 * A device whose fields passed the schema, judged by its `expiresAt` when it has one (issue 18): a date that exists,
 * in the future by this clock. A secret answered already expired would be renewed at once, and again, forever.
 */
export function judgeExpiry(device: { expiresAt?: string }): [CheckStatus, string] {
  const { expiresAt } = device
  if (expiresAt === undefined) return ['pass', 'device ok']
  const time = expiryTime(expiresAt)
  if (time === undefined) return ['fail', `device.expiresAt "${expiresAt}" is not a date that exists`]
  const left = time - Date.now()
  if (left <= 0) {
    return ['fail', `device.expiresAt ${expiresAt} is in the past by this clock: the secret has expired on arrival`]
  }
  return ['pass', `device ok; expiresAt ${expiresAt}, in ${describeDuration(left)}`]
}

/** `30 days`, `5 h`, `42 s`: how long until an expiry, for a detail. */
function describeDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000)
  if (seconds >= 2 * 86_400) return `${Math.floor(seconds / 86_400)} days`
  if (seconds >= 2 * 3600) return `${Math.floor(seconds / 3600)} h`
  return seconds >= 120 ? `${Math.floor(seconds / 60)} min` : `${seconds} s`
}
