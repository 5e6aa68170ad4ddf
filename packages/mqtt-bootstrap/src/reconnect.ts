/**
 * The reconnect policy of a session (session.ts), after the first CONNACK: its options, its defaults, and the jittered
 * wait before each attempt. A plain mqtt.js client waits a fixed period, in lockstep with the whole fleet (mqtt.js
 * issue 561).
 */
import {
  checkCeiling,
  checkFactor,
  checkInteger,
  checkKnown,
  fail,
  isPlainObject,
  MAX_DELAY_MS,
  typeName,
} from './option-checks.js'

/** Waits between reconnect attempts: full jitter between `minDelay` and a ceiling that grows by `factor`. */
export interface ReconnectOptions {
  /** Shortest wait before a reconnect, in ms. @default 1000 (or `mqtt.reconnectPeriod`) */
  minDelay?: number
  /** Longest wait, in ms. @default 60000 */
  maxDelay?: number
  /** Growth of the ceiling per failed attempt. @default 2 */
  factor?: number
  /** A connection that lasts this long (ms) counts as stable: the backoff starts over. @default 30000 */
  stableAfter?: number
}

export type ReconnectPolicy = Readonly<Required<ReconnectOptions>>

export const RECONNECT_DEFAULTS: ReconnectPolicy = Object.freeze({
  minDelay: 1000,
  maxDelay: 60_000,
  factor: 2,
  stableAfter: 30_000,
})

const RECONNECT_OPTIONS: ReadonlySet<string> = new Set(Object.keys(RECONNECT_DEFAULTS))

/** The wait before reconnect attempt `n` (1-based): uniform between minDelay and min(maxDelay, minDelay × factor^n). */
export function reconnectDelay(policy: ReconnectPolicy, n: number, random: () => number): number {
  const ceiling = Math.min(policy.maxDelay, policy.minDelay * policy.factor ** n)
  return Math.max(1, Math.floor(policy.minDelay + random() * Math.max(0, ceiling - policy.minDelay)))
}

/**
 * The `reconnect` option as a policy, or `false` for no reconnects. `mqtt.reconnectPeriod` keeps its meaning for apps
 * that set it: 0 turns reconnects off, another value is minDelay. Throws `InvalidOptionError`.
 */
export function resolveReconnectOptions(
  value: ReconnectOptions | false | undefined,
  reconnectPeriod: unknown,
): ReconnectPolicy | false {
  if (value === false) return false
  if (reconnectPeriod !== undefined) checkInteger(reconnectPeriod, 'mqtt.reconnectPeriod', 0, MAX_DELAY_MS)
  if (value === undefined && reconnectPeriod === 0) return false
  if (value !== undefined && !isPlainObject(value)) {
    fail('reconnect', 'an object of reconnect options or false', typeName(value))
  }
  const r: ReconnectOptions = value ?? {}
  checkKnown(r, RECONNECT_OPTIONS, 'reconnect.')
  const fallbackMin =
    typeof reconnectPeriod === 'number' && reconnectPeriod > 0 ? reconnectPeriod : RECONNECT_DEFAULTS.minDelay
  const minDelay = checkInteger(r.minDelay ?? fallbackMin, 'reconnect.minDelay', 1, MAX_DELAY_MS)
  const maxDelay = checkCeiling(r.maxDelay, minDelay, RECONNECT_DEFAULTS.maxDelay, 'reconnect.maxDelay')
  const factor = checkFactor(r.factor ?? RECONNECT_DEFAULTS.factor, 'reconnect.factor')
  const stableAfter = checkInteger(
    r.stableAfter ?? RECONNECT_DEFAULTS.stableAfter,
    'reconnect.stableAfter',
    0,
    MAX_DELAY_MS,
  )
  // The defaults themselves when nothing differs: most bootstraps share one frozen policy.
  if (value === undefined && minDelay === RECONNECT_DEFAULTS.minDelay) return RECONNECT_DEFAULTS
  return Object.freeze({ minDelay, maxDelay, factor, stableAfter })
}
