/**
 * What the other clouds' signers and strategies share: the checks of a signer's fields (a bad one is an
 * InvalidOptionError naming it, never quoting a key or secret), the HMAC, a strategy's lifetime option, and the
 * refusal of a triplet a strategy cannot sign for (an AuthError `ERR_AUTH_INVALID_IDENTITY`, before any CONNECT).
 */
import type { DeviceCredentials } from '../contract.js'
import { AuthError, InvalidOptionError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { checkInteger, checkKnown, fail, isPlainObject, typeName } from '../option-checks.js'
import type { MqttCredentials } from './strategy.js'

/** What a signing function returns: always a password. */
export type Signed = MqttCredentials & { password: string }

/** A base64 key as the vendors hand them out (Tencent's device PSK, OneNET's and Azure's keys); refused if not. */
export function base64Key(value: unknown, name: string): Buffer {
  const key = typeof value === 'string' ? Buffer.from(value, 'base64') : Buffer.alloc(0)
  if (key.length === 0 || key.toString('base64').replace(/=+$/, '') !== (value as string).replace(/=+$/, '')) {
    throw new InvalidOptionError(name, `Expected \`${name}\` to be a base64 key`)
  }
  return key
}

export function text(value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '') {
    throw new InvalidOptionError(name, `Expected \`${name}\` to be a non-empty string`)
  }
  return value
}

export function seconds(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(name, `Expected \`${name}\` to be a whole number of seconds since the epoch`)
  }
  return value
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], name: string): T {
  if (!allowed.includes(value as T)) {
    throw new InvalidOptionError(name, `Expected \`${name}\` to be one of ${allowed.join(', ')}`)
  }
  return value as T
}

export const hmac = (algorithm: string, key: Buffer | string, message: string): Buffer =>
  nodeCrypto().createHmac(algorithm, key).update(message).digest()

/** Constant-time equality of two strings (a signature the broker computed and the one it was sent). */
export function sameText(given: string | Buffer | undefined, wanted: string): boolean {
  if (given === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(wanted)
  return a.length === b.length && nodeCrypto().timingSafeEqual(a, b)
}

/** The longest token lifetime a strategy signs for: a day (every reconnect signs afresh, so none needs longer). */
export const MAX_LIFETIME_SECONDS = 24 * 60 * 60
/** The token lifetime of the strategies that have one, by default: an hour, as Azure's own device SDKs sign. */
export const DEFAULT_LIFETIME_SECONDS = 60 * 60

/**
 * A factory's options object, its keys known: `{}` when absent. An option set to `null` is refused rather than taken
 * for its default (only a missing or `undefined` one is).
 */
export function factoryOptions(value: unknown, known: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {}
  if (!isPlainObject(value)) fail('options', 'an object', typeName(value))
  checkKnown(value, new Set(known), '')
  for (const [name, option] of Object.entries(value)) {
    if (option === null) {
      throw new InvalidOptionError(name, `Expected \`${name}\` to be left out for its default, not null`)
    }
  }
  return value
}

/** What a broker-side verifier is told about time: its clock and the validity it accepts. */
export interface FreshnessOptions {
  /** The broker's clock, in ms since the epoch. @default Date.now */
  now?: () => number
  /** Clock difference tolerated at both ends of the validity, in ms. @default 900000 (15 minutes) */
  maxSkewMs?: number
  /** The longest validity accepted, in seconds from now (a longer one is a token kept for replays). @default 86400 */
  maxLifetimeSeconds?: number
}

/** How far a device's clock may be from the broker's, either way, by default: 15 minutes (as verifyAliyunCredentials). */
export const MAX_SKEW_MS = 15 * 60 * 1000

/**
 * A verifier's freshness options, checked (an InvalidOptionError, thrown: a broker's configuration error), turned into
 * the test of an expiry in seconds since the epoch: not past beyond the skew, not further ahead than the lifetime.
 */
export function freshness(options: FreshnessOptions): (expiry: number) => boolean {
  const { now = Date.now, maxSkewMs = MAX_SKEW_MS, maxLifetimeSeconds = MAX_LIFETIME_SECONDS } = options
  if (typeof now !== 'function') fail('now', 'a function returning ms since the epoch', typeName(now))
  if (typeof maxSkewMs !== 'number' || !(maxSkewMs >= 0)) {
    throw new InvalidOptionError('maxSkewMs', 'Expected `maxSkewMs` to be a non-negative number or Infinity')
  }
  if (typeof maxLifetimeSeconds !== 'number' || !(maxLifetimeSeconds > 0)) {
    throw new InvalidOptionError('maxLifetimeSeconds', 'Expected `maxLifetimeSeconds` to be a positive number')
  }
  return (expiry) => {
    const clock = now()
    // A clock that is not a finite number accepts nothing (every comparison with NaN is false).
    return expiry * 1000 + maxSkewMs >= clock && expiry * 1000 <= clock + maxLifetimeSeconds * 1000 + maxSkewMs
  }
}

/** A broker-side computation on a stored key: a key that is not one (not base64, say) verifies nothing. */
export function orUndefined<T>(compute: () => T): T | undefined {
  try {
    return compute()
  } catch (error) {
    if (error instanceof InvalidOptionError) return undefined
    throw error
  }
}

export function lifetimeOption(value: unknown): number {
  return checkInteger(value ?? DEFAULT_LIFETIME_SECONDS, 'lifetimeSeconds', 1, MAX_LIFETIME_SECONDS)
}

/** Whole seconds since the epoch at `now` (ms), plus `lifetime`. */
export const expiryAt = (now: number, lifetime: number): number => Math.floor(now / 1000) + lifetime

/**
 * Refuse a triplet whose productKey or deviceName holds one of `separators` (they would make the signed fields
 * ambiguous: two devices could sign the same ones). Not transient: the connect loop gives up at once.
 */
export function refuseSeparators(
  strategy: string,
  device: DeviceCredentials,
  separators: RegExp,
  shown: string,
  fields: readonly ('productKey' | 'deviceName')[] = ['productKey', 'deviceName'],
): void {
  for (const field of fields) {
    if (separators.test(device[field])) {
      throw new AuthError(
        'ERR_AUTH_INVALID_IDENTITY',
        `The ${strategy} strategy cannot sign for a ${field} containing ${shown}`,
      )
    }
  }
}

/**
 * Run a signer on a triplet's fields: a field it refuses (the server's deviceSecret not being a base64 key, say)
 * becomes an AuthError naming the triplet's field (`names` maps the signer's field to it), never quoting it.
 */
export function signFor(strategy: string, names: Record<string, keyof DeviceCredentials>, sign: () => Signed): Signed {
  try {
    return sign()
  } catch (error) {
    const field = error instanceof InvalidOptionError ? names[error.option] : undefined
    if (field === undefined) throw error
    throw new AuthError(
      'ERR_AUTH_INVALID_IDENTITY',
      `The ${strategy} strategy cannot sign for this ${field}: ${error instanceof Error ? error.message.replace(/`\w+`/, `\`${field}\``) : ''}`,
    )
  }
}
