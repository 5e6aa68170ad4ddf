/**
 * Logging, in the ecosystem's two conventions:
 *
 * - an injectable logger shaped like pino's methods (`logger.info(fields, message)`), so a pino logger (or anything
 *   with the same four methods) can be passed as is;
 * - `debug` namespaces, as mqtt.js has them: `DEBUG=mqtt-bootstrap:*` (or `mqtt-bootstrap:provision`, …) prints the
 *   library's trace on stderr.
 *
 * The library logs fields that hold no secret; on top of that every line is scrubbed of fields named like a secret,
 * whichever sink it goes to. The `debug` package is required only when someone can be listening: `DEBUG` is set, or
 * the app has loaded `debug` itself (to call `debug.enable()`). Otherwise a device never loads it.
 */
import { isLoaded, lazy } from './lazy.js'
import { REDACTED } from './redact.js'

export interface Logger {
  debug(fields: object, message?: string): void
  info(fields: object, message?: string): void
  warn(fields: object, message?: string): void
  error(fields: object, message?: string): void
}

const ignore = (): void => {}

export const silentLogger: Logger = Object.freeze({ debug: ignore, info: ignore, warn: ignore, error: ignore })

/** Where a line comes from; its `debug` namespace is `mqtt-bootstrap:<area>`. */
export type LogArea = 'boot' | 'provision' | 'register' | 'connect' | 'session' | 'store' | 'transport'

export const DEBUG_NAMESPACE = 'mqtt-bootstrap'

/** Field names whose values never reach a sink, whatever a caller passes. */
const SECRET_FIELDS: ReadonlySet<string> = new Set([
  'deviceSecret',
  'productSecret',
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

/** The `debug` function for `area`, or undefined when nothing can be listening (the module is then not loaded). */
function debugFor(area: LogArea): DebugFn | undefined {
  const existing = debuggers.get(area)
  if (existing !== undefined) return existing
  if (!process.env.DEBUG && !isLoaded('debug')) return undefined
  const created = debugModule()(`${DEBUG_NAMESPACE}:${area}`)
  debuggers.set(area, created)
  return created
}

/**
 * A logger for one area of the library: each line goes to `logger` (unless it is the silent default) and to the
 * area's `debug` namespace (when enabled), scrubbed of secret-named fields. Costs a map lookup when nobody listens.
 */
export function logFor(logger: Logger, area: LogArea): Logger {
  const line =
    (level: Level) =>
    (fields: object, message?: string): void => {
      const debug = debugFor(area)
      const toDebug = debug?.enabled === true
      const toLogger = logger !== silentLogger
      if (!toDebug && !toLogger) return
      const safe = scrub(fields)
      if (toLogger) logger[level](safe, message)
      if (toDebug) debug?.('%s%s %o', level === 'warn' || level === 'error' ? `${level}: ` : '', message ?? '', safe)
    }
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') }
}

/** A trace for parts of the library that have no injected logger (transport, stores): `debug` only. */
export function traceFor(area: LogArea): Logger {
  return logFor(silentLogger, area)
}

function scrub(fields: object): Record<string, unknown> {
  const copy: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(fields)) {
    copy[name] = SECRET_FIELDS.has(name) && value !== undefined && value !== null && value !== '' ? REDACTED : value
  }
  return copy
}
