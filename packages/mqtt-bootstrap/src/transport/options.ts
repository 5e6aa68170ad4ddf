/**
 * The provisioning request's options, resolved next to their defaults: how it travels (`tls`, `timeoutMs`,
 * `maxResponseBytes`, `allowInsecureHttp`) and what it is made of (the URL, the headers, the JSON body). The bootstrap,
 * `PointAccess`, Alibaba's registration and the server's checker all check with these. A proxy is not an option: the
 * transport reads HTTPS_PROXY / NO_PROXY from the environment (undici-transport.ts).
 */
import {
  checkBoolean,
  checkInteger,
  checkKnown,
  fail,
  isPlainObject,
  MAX_DELAY_MS,
  typeName,
} from '../option-checks.js'
import type { TlsOptions } from './undici-transport.js'

/** How the provisioning request travels. `PointAccess` and the bootstrap take the same ones. */
export interface TransportOptions {
  /** CA / client certificate for the provisioning server. Verification is always on. */
  tls?: TlsOptions
  /** Per-request timeout in ms, headers and body included. @default 10000 */
  timeoutMs?: number
  /** Largest answer accepted, in bytes; a larger one gives `"99999"`. @default 65536 */
  maxResponseBytes?: number
  /** Allow `http://` provisioning URLs. For tests on loopback only: credentials would travel in clear. @default false */
  allowInsecureHttp?: boolean
}

export interface ResolvedTransportOptions {
  readonly tls: Readonly<TlsOptions>
  readonly timeoutMs: number
  readonly maxResponseBytes: number
  readonly allowInsecureHttp: boolean
}

export const TRANSPORT_DEFAULTS = Object.freeze({
  timeoutMs: 10_000,
  maxResponseBytes: 64 * 1024,
  allowInsecureHttp: false,
} as const)

export const TRANSPORT_OPTIONS: ReadonlySet<string> = new Set([
  'tls',
  'timeoutMs',
  'maxResponseBytes',
  'allowInsecureHttp',
])
const TLS_OPTIONS: ReadonlySet<string> = new Set(['ca', 'cert', 'key', 'passphrase', 'servername'])

/** What this module has resolved: passed down again (to PointAccess, to a registration), it is not checked twice. */
const resolved = new WeakSet<object>()

/**
 * The transport options, checked (names prefixed with `prefix` in errors), the missing ones from `defaults`. Options
 * this function returned come back as they are.
 */
export function resolveTransportOptions(
  options: TransportOptions = {},
  prefix = '',
  defaults: Omit<ResolvedTransportOptions, 'tls'> = TRANSPORT_DEFAULTS,
): ResolvedTransportOptions {
  if (resolved.has(options)) return options as ResolvedTransportOptions
  if (!isPlainObject(options)) fail(prefix === '' ? 'options' : prefix.slice(0, -1), 'an object', typeName(options))
  checkKnown(options, TRANSPORT_OPTIONS, prefix)
  const { tls, timeoutMs, maxResponseBytes, allowInsecureHttp: insecure } = options
  const none = tls === undefined && timeoutMs === undefined && maxResponseBytes === undefined && insecure === undefined
  if (none && defaults === TRANSPORT_DEFAULTS) return RESOLVED_DEFAULTS // most bootstraps share one frozen object
  const allowInsecureHttp = checkBoolean(insecure ?? defaults.allowInsecureHttp, `${prefix}allowInsecureHttp`)
  const result = Object.freeze({
    tls: checkTls(tls, `${prefix}tls`),
    timeoutMs: checkInteger(timeoutMs ?? defaults.timeoutMs, `${prefix}timeoutMs`, 1, MAX_DELAY_MS),
    maxResponseBytes: checkInteger(
      maxResponseBytes ?? defaults.maxResponseBytes,
      `${prefix}maxResponseBytes`,
      1,
      2 ** 30,
    ),
    allowInsecureHttp,
  })
  resolved.add(result)
  return result
}

const NO_TLS: Readonly<TlsOptions> = Object.freeze({})

const RESOLVED_DEFAULTS: ResolvedTransportOptions = Object.freeze({ ...TRANSPORT_DEFAULTS, tls: NO_TLS })
resolved.add(RESOLVED_DEFAULTS)

function checkTls(value: unknown, option: string): Readonly<TlsOptions> {
  if (value === undefined) return NO_TLS
  if (!isPlainObject(value)) fail(option, 'an object with ca, cert, key', typeName(value))
  checkKnown(value, TLS_OPTIONS, `${option}.`)
  for (const field of ['ca', 'cert', 'key'] as const) {
    const pem = value[field]
    const items = Array.isArray(pem) ? pem : [pem]
    if (pem !== undefined && !items.every((item) => typeof item === 'string' || Buffer.isBuffer(item))) {
      fail(`${option}.${field}`, 'a PEM string, a Buffer, or an array of them')
    }
  }
  for (const field of ['passphrase', 'servername'] as const) {
    if (value[field] !== undefined && typeof value[field] !== 'string') fail(`${option}.${field}`, 'a string')
  }
  return Object.freeze({ ...value }) as TlsOptions
}

/** An https URL (http only when allowed). */
export function checkUrl(value: unknown, allowInsecureHttp: boolean, option: string): URL {
  if (typeof value !== 'string') fail(option, 'a URL string', typeName(value))
  let url: URL
  try {
    url = new URL(value)
  } catch {
    fail(option, 'a valid absolute URL')
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && allowInsecureHttp)) return url
  const hint = url.protocol === 'http:' ? ' (http:// needs `allowInsecureHttp: true`, for tests only)' : ''
  fail(option, `an https:// URL${hint}`, `a ${url.protocol.slice(0, -1)}: URL`)
}

/**
 * checkUrl(...).href, memoised per process (a pure function of its arguments, as `keyOf` is): `new URL()` is one of
 * the larger costs of a cached boot, and a process that makes bootstraps again parses the same URL each time.
 */
export function checkedHref(value: unknown, allowInsecureHttp: boolean, option: string): string {
  const known = typeof value === 'string' ? checkedUrls.get(value) : undefined
  if (known !== undefined && (known.secure || allowInsecureHttp)) return known.href
  const url = checkUrl(value, allowInsecureHttp, option)
  if (checkedUrls.size >= 64) checkedUrls.clear()
  checkedUrls.set(value as string, { href: url.href, secure: url.protocol === 'https:' })
  return url.href
}
const checkedUrls = new Map<string, { href: string; secure: boolean }>()

/** The request body: `data` as JSON. */
export function serializeData(value: unknown, option: string): string {
  let body: string | undefined
  try {
    body = JSON.stringify(value)
  } catch {
    fail(option, 'JSON-serialisable (no cycles, no BigInt)')
  }
  if (body === undefined) fail(option, 'a JSON value', typeName(value))
  return body
}

// RFC 9110 token; and the headers that describe the message itself, which the transport owns.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const RESERVED_HEADERS: ReadonlySet<string> = new Set([
  'content-length',
  'transfer-encoding',
  'host',
  'connection',
  'keep-alive',
  'upgrade',
  'expect',
  'te',
  'trailer',
])

/** Extra request headers, with lower-case names. `content-type` is dropped: the contract fixes it. */
export function checkHeaders(value: unknown, option: string): Record<string, string> {
  if (value === undefined) return {}
  if (!isPlainObject(value)) fail(option, 'an object of header names to strings', typeName(value))
  const headers: Record<string, string> = {}
  for (const [name, headerValue] of Object.entries(value)) {
    const lower = name.toLowerCase()
    if (!HEADER_NAME.test(name)) fail(`${option}`, 'valid header names', 'an invalid name')
    if (RESERVED_HEADERS.has(lower)) fail(`${option}.${name}`, 'absent: the transport sets it')
    // RFC 9110 field-value: visible ASCII, space, tab, and obs-text bytes; nothing else can be sent as is.
    if (typeof headerValue !== 'string' || /[^\t\x20-\x7e\x80-\xff]/.test(headerValue)) {
      fail(`${option}.${name}`, 'a string of visible Latin-1 characters (no CR, LF, NUL or other controls)')
    }
    if (lower !== 'content-type') headers[lower] = headerValue
  }
  return headers
}
