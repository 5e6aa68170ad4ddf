/**
 * Logging, in the ecosystem's two conventions:
 *
 * - an injectable logger shaped like pino's methods (`logger.info(fields, message)`), so a pino logger (or anything
 *   with the same four methods) can be passed as is;
 * - `debug` namespaces, as mqtt.js has them: `DEBUG=mqtt-bootstrap:*` (or `mqtt-bootstrap:provision`, …) prints the
 *   library's trace on stderr. mqtt.js loads the `debug` package anyway, so it costs nothing more.
 *
 * The library logs fields that hold no secret; on top of that every line is scrubbed, to a bounded depth, of fields
 * named like a secret, whichever sink it goes to.
 */
import { lazy } from './lazy.js'
import { REDACTED } from './redact.js'

export interface Logger {
  debug(fields: object, message?: string): void
  info(fields: object, message?: string): void
  warn(fields: object, message?: string): void
  error(fields: object, message?: string): void
}

/** Whether `value` has the four methods of a Logger (pino's among them). */
export function isLogger(value: unknown): value is Logger {
  const methods = ['debug', 'info', 'warn', 'error'] as const
  return typeof value === 'object' && value !== null && methods.every((m) => typeof (value as Logger)[m] === 'function')
}

const ignore = (): void => {}

export const silentLogger: Logger = Object.freeze({ debug: ignore, info: ignore, warn: ignore, error: ignore })

/** Where a line comes from; its `debug` namespace is `mqtt-bootstrap:<area>`. */
export type LogArea = 'boot' | 'provision' | 'register' | 'connect' | 'session' | 'store' | 'transport'

const DEBUG_NAMESPACE = 'mqtt-bootstrap'

/** Field names (lower-cased) whose values never reach a sink, whatever a caller passes. */
const SECRET_FIELDS: ReadonlySet<string> = new Set([
  'devicesecret',
  'productsecret',
  'password',
  'passphrase',
  'key',
  'pfx',
  'secret',
  'sign',
  'token',
  'authorization',
])

type Level = keyof Logger
type DebugFn = ((format: string, ...args: unknown[]) => void) & { enabled: boolean }

const debugModule = lazy<(namespace: string) => DebugFn>('debug')
const debuggers = new Map<LogArea, DebugFn>()

/** The `debug` function for `area`, made on first use. */
function debugFor(area: LogArea): DebugFn {
  let fn = debuggers.get(area)
  if (fn === undefined) {
    fn = debugModule()(`${DEBUG_NAMESPACE}:${area}`)
    debuggers.set(area, fn)
  }
  return fn
}

/** The area loggers made for each logger: a bootstrap with the default (or a shared) logger makes none anew. */
const made = new WeakMap<Logger, Map<LogArea, Logger>>()

/**
 * A logger for one area of the library: each line goes to `logger` (unless it is the silent default) and to the
 * area's `debug` namespace (when enabled), scrubbed of secret-named fields. Costs a map lookup when nobody listens.
 */
export function logFor(logger: Logger, area: LogArea): Logger {
  let areas = made.get(logger)
  if (areas === undefined) {
    areas = new Map()
    made.set(logger, areas)
  }
  const existing = areas.get(area)
  if (existing !== undefined) return existing
  const line =
    (level: Level) =>
    (fields: object, message?: string): void => {
      const debug = debugFor(area)
      const toDebug = debug.enabled
      const toLogger = logger !== silentLogger
      if (!toDebug && !toLogger) return
      const safe = scrub(fields, 0, new WeakSet()) as object
      if (toLogger) logger[level](safe, message)
      if (toDebug) debug('%s%s %o', level === 'warn' || level === 'error' ? `${level}: ` : '', message ?? '', safe)
    }
  const created: Logger = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') }
  areas.set(area, created)
  return created
}

/** A trace for parts of the library that have no injected logger (transport, stores): `debug` only. */
export function traceFor(area: LogArea): Logger {
  return logFor(silentLogger, area)
}

const MAX_DEPTH = 4

/**
 * A copy of `value` in which fields named like a secret (at any depth up to MAX_DEPTH, case-insensitively) print
 * `[redacted]`. Plain objects and arrays are copied; other objects (errors, library objects with their own redaction)
 * pass as they are; deeper levels and cycles are cut.
 */
function scrub(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value !== 'object' || value === null) return value
  const plain =
    Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null
  if (!plain) return value
  if (seen.has(value) || depth >= MAX_DEPTH) return '[…]'
  seen.add(value)
  if (Array.isArray(value)) {
    const items = value.map((item) => scrub(item, depth + 1, seen))
    seen.delete(value)
    return items
  }
  const copy: Record<string, unknown> = {}
  for (const [name, field] of Object.entries(value)) {
    const secret = SECRET_FIELDS.has(name.toLowerCase()) && field !== undefined && field !== null && field !== ''
    copy[name] = secret ? REDACTED : scrub(field, depth + 1, seen)
  }
  seen.delete(value) // only cycles are cut; an object met twice side by side is shown twice
  return copy
}
