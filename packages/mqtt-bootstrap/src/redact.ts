/**
 * Keeping secrets out of `util.inspect` (and so out of console.log, REPLs and most loggers).
 *
 * Library classes keep secrets in `#private` fields, which `util.inspect` never shows. Plain objects that must carry a
 * secret by contract (`deviceConfig.device`, the options handed to mqtt.js) get a non-enumerable `util.inspect.custom`
 * that prints `[redacted]` instead: non-enumerable, so `JSON.stringify`, spreads and deep equality ignore it.
 *
 * JSON is another matter: the credentials themselves (`DeviceConfig`) show their secrets in JSON by contract (a custom
 * store persists them so), while options objects (`client.options`, `connectOptions()`'s result) get a `toJSON` that
 * redacts, and the CONNECT password a Buffer whose JSON is `"[redacted]"` wherever it is copied to.
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

/**
 * One hook function per key list (a cached boot attaches hooks to a few objects: no new closure each time). Exported
 * for an object literal that carries it as an own enumerable `[INSPECT_CUSTOM]` key: redactOnInspect(…, true) in one
 * step, without a defineProperty.
 */
export function hookFor(keys: readonly string[]) {
  let hook = hooks.get(keys)
  if (hook === undefined) {
    hook = function (this: Record<string | symbol, unknown>) {
      const copy = redactedCopy(this, keys)
      // One level down too: over wss:// mqtt.js copies the TLS options (passphrase, key, pfx) into `wsOptions`.
      for (const [name, value] of Object.entries(copy)) {
        if (isPlainObject(value)) copy[name] = redactedCopy(value, keys)
      }
      return copy
    }
    hooks.set(keys, hook)
  }
  return hook
}

function redactedCopy(source: object, keys: readonly string[]): Record<string | symbol, unknown> {
  const copy: Record<string | symbol, unknown> = { ...source }
  delete copy[INSPECT_CUSTOM] // the copy is what gets printed: it must not call this hook again
  for (const key of keys) {
    if (copy[key] !== undefined && copy[key] !== null && copy[key] !== '') copy[key] = REDACTED
  }
  return copy
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false
  const prototype = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

/**
 * A CONNECT password as mqtt.js is given it: the same bytes, in a Buffer that prints `[redacted]`. mqtt.js's own debug
 * log (`DEBUG=mqttjs*`) prints every CONNECT packet it writes with `util.inspect`, password included; a string would
 * show there, this shows `[redacted]`. mqtt-packet writes the bytes as they are.
 */
export function sealedPassword(password: string | Buffer): Buffer {
  // One shared prototype, not two properties defined on each Buffer: those gave every password a hidden class of its
  // own (a map and a descriptor array per client). Still a Buffer to `Buffer.isBuffer`, which mqtt-packet asks.
  return Object.setPrototypeOf(Buffer.from(password), SEALED_BUFFER) as Buffer
}

/** CONNECT fields as mqtt.js is given them: see {@link sealedCredentials}. */
export interface SealedCredentials {
  clientId: string
  /**
   * A string, or a sealed Buffer when it carries the device secret (`util.inspect` and JSON show `[redacted]`, its
   * bytes are the token), typed as the string mqtt.js's options declare: mqtt-packet writes either as it is.
   */
  username: string
  password: Buffer | undefined
}

/**
 * The signed CONNECT fields with the password sealed, and the username too when it carries the device secret
 * (ThingsBoard's access token is the username). A sealed username is a Buffer, which mqtt-packet writes as it is; it
 * is typed as the string mqtt.js's options declare.
 */
export function sealedCredentials(
  credentials: { clientId: string; username: string; password?: string | undefined },
  secret: string,
): SealedCredentials {
  const { clientId, username, password } = credentials
  return {
    clientId,
    username: secret !== '' && username.includes(secret) ? (sealedPassword(username) as unknown as string) : username,
    password: password === undefined ? undefined : sealedPassword(password),
  }
}

const sealed = () => REDACTED

/** Buffer's own toJSON gives `{type:'Buffer',data:[…]}`, the secret's bytes: pino and JSON.stringify call this one. */
const SEALED_BUFFER: object = Object.create(Buffer.prototype, {
  [INSPECT_CUSTOM]: { value: sealed },
  toJSON: { value: sealed },
})

/**
 * Make `JSON.stringify(target)` (and pino, which honours `toJSON` below the top level) show `[redacted]` for the given
 * keys. Non-enumerable, so that mqtt.js and tls.connect(), which spread options, see the same fields as before; a copy
 * made that way loses it, and holds the sealed password, whose own JSON is redacted. Returns `target`.
 */
export function redactOnJson<T extends object>(target: T, keys: readonly string[]): T {
  Object.defineProperty(target, 'toJSON', {
    configurable: true,
    enumerable: false,
    writable: true,
    value: hookFor(keys),
  })
  return target
}

/** The TLS and MQTT option fields that hold a secret. */
export const SECRET_OPTION_KEYS = ['password', 'key', 'passphrase', 'pfx'] as const

/**
 * `options` with the private keys it holds sealed like the password (a copy: the caller's objects are left alone), so
 * that a logger that walks the options' own fields (pino does at the top level) meets `[redacted]`: `key` and `pfx` as
 * a string or Buffer, as an array of them, or as Node's `{ pem }` / `{ buf }` objects, at the top level and in
 * `wsOptions`. tls.connect() reads the same bytes. `passphrase` must stay a string for tls: only the options' toJSON
 * hides it.
 */
export function withSealedKeys<T extends { key?: unknown; pfx?: unknown; wsOptions?: unknown }>(options: T): T {
  const sealed = sealKeys(options)
  if (!isPlainObject(options.wsOptions)) return sealed
  const wsOptions = sealKeys(options.wsOptions)
  return wsOptions === options.wsOptions ? sealed : { ...sealed, wsOptions }
}

function sealKeys<T extends { key?: unknown; pfx?: unknown }>(options: T): T {
  const key = sealKey(options.key, 'pem')
  const pfx = sealKey(options.pfx, 'buf')
  if (key === options.key && pfx === options.pfx) return options
  const copy = { ...options }
  if (key !== undefined) copy.key = key
  if (pfx !== undefined) copy.pfx = pfx
  return copy
}

/** A key (PEM or PFX) sealed: a string or Buffer, each one of an array, or the `field` of Node's object form. */
function sealKey(value: unknown, field: 'pem' | 'buf'): unknown {
  if (typeof value === 'string' || Buffer.isBuffer(value)) return sealedPassword(value)
  if (!Array.isArray(value)) return value
  return value.map((item: unknown) => {
    if (isPlainObject(item) && (typeof item[field] === 'string' || Buffer.isBuffer(item[field]))) {
      return { ...item, [field]: sealedPassword(item[field] as string | Buffer) }
    }
    return sealKey(item, field)
  })
}

/** A URL fit for events and logs: no credentials, query or fragment (they may carry tokens). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    // No authority (`mqtt:user:pw@host`, `x:token`): what follows the scheme is all path, and may be a credential.
    if (parsed.host === '') return '[invalid url]'
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  } catch {
    return '[invalid url]'
  }
}

/** Messages from servers are capped to this before they are searched for echoes (the work stays bounded). */
const MAX_ECHO_INPUT = 1024
/** The shortest run of a secret's characters that counts as an echo (a shorter secret counts whole). */
export const ECHO_RUN = 8

/**
 * `text` (its first MAX_ECHO_INPUT characters) with every run of ECHO_RUN or more consecutive characters of any of
 * `secrets` (or a whole secret shorter than that) replaced by `[redacted]`: an echo cut, shifted or run into other text,
 * several echoes, overlapping ones. Each position is checked against the secret's ECHO_RUN-grams, so the work is
 * linear in text and secret lengths.
 */
export function redactEchoes(text: string, secrets: Iterable<string | null | undefined>): string {
  const shown = text.slice(0, MAX_ECHO_INPUT)
  const hidden = new Uint8Array(shown.length)
  let any = false
  for (const secret of secrets) {
    if (typeof secret !== 'string' || secret === '') continue
    const run = Math.min(ECHO_RUN, secret.length)
    const grams = new Set<string>()
    for (let i = 0; i + run <= secret.length; i++) grams.add(secret.slice(i, i + run))
    for (let i = 0; i + run <= shown.length; i++) {
      if (grams.has(shown.slice(i, i + run))) {
        hidden.fill(1, i, i + run)
        any = true
      }
    }
  }
  if (!any) return shown
  let out = ''
  for (let i = 0; i < shown.length; i++) {
    if (hidden[i] === 0) out += shown[i]
    else if (i === 0 || hidden[i - 1] === 0) out += REDACTED
  }
  return out
}
