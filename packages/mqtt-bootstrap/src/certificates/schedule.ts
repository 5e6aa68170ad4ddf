/**
 * The renewal schedule (issue 18, DESIGN.md "Certificates"): until when a configuration's credentials work, and when
 * the session renews them. A certificate works until its notAfter; a deviceSecret with a lifetime until the answer's
 * `expiresAt`. Renewal starts `renewBeforeMs` before that, by default a third of the lifetime the device saw: from
 * when it received the credentials (or the certificate's notBefore, if later) to their expiry. Counting from receipt,
 * not from notBefore, keeps an issuer's backdating (the reference server starts a certificate 5 minutes early for
 * clocks that are behind) from eating into the lifetime, and is what "a third of the time left when it was received"
 * means for a secret.
 *
 * A lifetime is kept beside its configuration (a DeviceConfig is public and frozen), noted when the configuration
 * arrives from the server or is read from the cache, where the chain has just been checked anyway: nothing is parsed
 * twice.
 */
import { type DeviceConfig, expiryTime } from '../contract.js'

/** What expires: the device's certificate (the `certificate` option), or a deviceSecret with an `expiresAt`. */
export type RenewedCredential = 'certificate' | 'secret'

/** A configuration's lifetime as the device saw it (ms since the epoch). */
export interface Lifetime {
  readonly credential: RenewedCredential
  /** When the device received the credentials (or the certificate's notBefore, if later). */
  readonly receivedAt: number
  /** When they stop working: the certificate's notAfter, or `expiresAt` (the earlier of the two when both are set). */
  readonly expiresAt: number
}

/**
 * However large `renewBeforeMs` is, a renewal starts no sooner than a tenth of the lifetime after the credentials
 * arrived, and never within a second of it: a value larger than the lifetime cannot renew in a loop.
 */
const MIN_RENEWAL_DELAY_MS = 1000

/** The largest `renewBeforeMs`: ten years, longer than any certificate a device is issued. */
export const MAX_RENEW_BEFORE_MS = 10 * 365 * 24 * 3600_000

const lifetimes = new WeakMap<DeviceConfig, Lifetime>()

/**
 * Note that `config` was received at `receivedAt`, with its certificate's validity when it has one (as the chain
 * check found it). A configuration that does not expire (no certificate, no `expiresAt`) has no lifetime.
 */
export function noteLifetime(
  config: DeviceConfig,
  receivedAt: number,
  validity?: { notBefore: number; notAfter: number },
): void {
  const { expiresAt: text, certificate } = config.device
  const secretExpiry = text === undefined ? undefined : expiryTime(text)
  const expiresAt = Math.min(validity?.notAfter ?? Number.POSITIVE_INFINITY, secretExpiry ?? Number.POSITIVE_INFINITY)
  if (!Number.isFinite(expiresAt)) return
  const from = Math.max(receivedAt, validity?.notBefore ?? Number.NEGATIVE_INFINITY)
  lifetimes.set(config, {
    credential: certificate === undefined ? 'secret' : 'certificate',
    receivedAt: Math.min(from, expiresAt),
    expiresAt,
  })
}

/** The lifetime noted for `config`; `undefined` when its credentials do not expire. */
export function lifetimeOf(config: DeviceConfig): Lifetime | undefined {
  return lifetimes.get(config)
}

/**
 * When to renew credentials of `lifetime`: `renewBeforeMs` before they expire (a third of the lifetime when
 * `undefined`), but no sooner than {@link MIN_RENEWAL_DELAY_MS} or a tenth of the lifetime after their receipt.
 */
export function renewalTime(lifetime: Lifetime, renewBeforeMs: number | undefined): number {
  const span = lifetime.expiresAt - lifetime.receivedAt
  const before = renewBeforeMs ?? span / 3
  const earliest = lifetime.receivedAt + Math.max(MIN_RENEWAL_DELAY_MS, span / 10)
  // Past the expiry, if the lifetime is that short: a server answering lifetimes of milliseconds gets one renewal a
  // second at most (each a fresh claim, once expired), not a loop.
  return Math.round(Math.max(lifetime.expiresAt - before, earliest))
}

/**
 * When to try again after a renewal failed at `now`: halfway to the expiry, at least a second from now. A renewal
 * that keeps failing is tried a bounded number of times (each wait halves) before the credentials expire.
 */
export function retryTime(lifetime: Lifetime, now: number): number {
  return Math.round(now + Math.max(MIN_RENEWAL_DELAY_MS, (lifetime.expiresAt - now) / 2))
}
