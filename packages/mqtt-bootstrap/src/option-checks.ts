/**
 * The checks every concern's option resolver is made of. A bad option is an `InvalidOptionError` (a TypeError, code
 * `ERR_INVALID_OPTION`) naming it; messages describe the value's type, never its content (headers and keys are
 * secrets). A leaf module: the resolvers import it, and it imports none of them.
 */
import { InvalidOptionError } from './errors.js'

/** The largest delay a Node timer takes, in ms. */
export const MAX_DELAY_MS = 2 ** 31 - 1

/** Throw an InvalidOptionError; `got` describes what was passed without quoting it (it may be a secret). */
export function fail(option: string, expected: string, got?: string): never {
  throw new InvalidOptionError(
    option,
    `Expected \`${option}\` to be ${expected}${got === undefined ? '' : `, got ${got}`}`,
  )
}

/** What a value is, for a message: numbers, booleans, null and undefined as they are, anything else by its type. */
export function typeName(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value)
  }
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** A misspelt option would otherwise be ignored in silence (`retires: 3`). */
export function checkKnown(value: object, known: ReadonlySet<string>, prefix: string): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw new InvalidOptionError(`${prefix}${key}`, `Unknown option \`${prefix}${key}\``)
  }
}

export function checkInteger(value: unknown, option: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(option, `an integer from ${min} to ${max}`, typeName(value))
  }
  return value
}

export function checkBoolean(value: unknown, option: string): boolean {
  if (typeof value !== 'boolean') fail(option, 'a boolean', typeName(value))
  return value
}

/** A backoff's ceiling in ms: at least its floor; by default the larger of the floor and `fallback`. */
export function checkCeiling(value: unknown, floor: number, fallback: number, option: string): number {
  return checkInteger(value ?? Math.max(floor, fallback), option, floor, MAX_DELAY_MS)
}

/** A backoff's growth per attempt: a finite number >= 1. */
export function checkFactor(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1) fail(option, 'a number >= 1', typeName(value))
  return value
}

/** The own fields of `value` named in `keys`. */
export function pick(value: object, keys: ReadonlySet<string>): Record<string, unknown> {
  const picked: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) if (keys.has(key)) picked[key] = field
  return picked
}
