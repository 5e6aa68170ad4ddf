/**
 * Keeping secrets out of `util.inspect` (and so out of console.log, REPLs and most loggers).
 *
 * Library classes keep secrets in `#private` fields, which `util.inspect` never shows. Plain objects that must carry a
 * secret by contract (`deviceConfig.device`, the options handed to mqtt.js) get a non-enumerable `util.inspect.custom`
 * that prints `[redacted]` instead: non-enumerable, so `JSON.stringify`, spreads and deep equality ignore it.
 */
export const REDACTED = '[redacted]'

/** `util.inspect.custom`, which Node registers globally under this name (no `node:util` import needed for it). */
export const INSPECT_CUSTOM = Symbol.for('nodejs.util.inspect.custom')

/**
 * Make `util.inspect(target)` print `[redacted]` for the given keys whenever they hold a value. Returns `target`.
 *
 * `travels: true` makes the hook enumerable, so that copies made by spreading carry it too. That is for objects
 * handed to code that copies them: mqtt.js passes `client.options` to `tls.connect()`, which keeps a spread copy on
 * the socket, password included.
 */
export function redactOnInspect<T extends object>(target: T, keys: readonly string[], travels = false): T {
  Object.defineProperty(target, INSPECT_CUSTOM, {
    configurable: true,
    enumerable: travels,
    writable: true,
    value: hookFor(keys),
  })
  return target
}

const hooks = new WeakMap<readonly string[], (this: Record<string | symbol, unknown>) => object>()

/** One hook function per key list (a cached boot attaches hooks to a few objects: no new closure each time). */
function hookFor(keys: readonly string[]) {
  let hook = hooks.get(keys)
  if (hook === undefined) {
    hook = function (this: Record<string | symbol, unknown>) {
      const copy: Record<string | symbol, unknown> = { ...this }
      delete copy[INSPECT_CUSTOM] // the copy is what gets printed: it must not call this hook again
      for (const key of keys) {
        if (copy[key] !== undefined && copy[key] !== null && copy[key] !== '') copy[key] = REDACTED
      }
      return copy
    }
    hooks.set(keys, hook)
  }
  return hook
}

/**
 * A CONNECT password as mqtt.js is given it: the same bytes, in a Buffer that prints `[redacted]`. mqtt.js's own debug
 * log (`DEBUG=mqttjs*`) prints every CONNECT packet it writes with `util.inspect`, password included; a string would
 * show there, this shows `[redacted]`. mqtt-packet writes the bytes as they are.
 */
export function sealedPassword(password: string): Buffer {
  const bytes = Buffer.from(password, 'utf8')
  Object.defineProperty(bytes, INSPECT_CUSTOM, { value: sealed })
  return bytes
}

const sealed = () => REDACTED

/** The TLS and MQTT option fields that hold a secret. */
export const SECRET_OPTION_KEYS = ['password', 'key', 'passphrase', 'pfx'] as const

/** A URL fit for events and logs: no credentials, query or fragment (they may carry tokens). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  } catch {
    return '[invalid url]'
  }
}
