/**
 * One options type, one frozen defaults object, one resolveOptions(): every option is checked here, before any I/O,
 * and a bad one is a TypeError naming it (`InvalidOptionError`, code `ERR_INVALID_OPTION`). Messages describe the
 * value's type, never its content: headers and TLS keys are secrets.
 */
import { ALIYUN_SIGN_METHODS } from './auth/aliyun.js'
import type { AuthFunction, AuthStrategy } from './auth/strategy.js'
import { BROKER_PROTOCOLS, type BrokerOptions } from './broker-url.js'
import type { Container } from './container.js'
import { InvalidOptionError } from './errors.js'
import type { Logger } from './logger.js'
import { type MqttOptions, PROVISIONED_MQTT_KEYS, refuseOwnedMqttKeys } from './mqtt-options.js'
import type { AliyunRegistrationOptions } from './registration/aliyun.js'
import type { RegistrationStrategy } from './registration/strategy.js'
import { NO_RETRY, RETRY_DEFAULTS, type RetryOptions, type RetryPolicy } from './retry.js'
import { RECONNECT_DEFAULTS, type ReconnectOptions, type ReconnectPolicy } from './session.js'
import { type CredentialStore, keyOf } from './store/credential-store.js'
import type { TlsOptions } from './transport/undici-transport.js'

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

export type AuthOption = 'aliyun' | 'plain' | AuthStrategy | AuthFunction

export interface BootstrapOptions extends TransportOptions {
  /** The provisioning server's URL (`https://`). */
  url: string
  /** What identifies the device (IMEI, serial, …): sent as the JSON body, and part of the cache key. */
  data: unknown
  /** Extra request headers (e.g. an API token). `Content-Type` is always `application/json`. */
  headers?: Record<string, string>
  /** Retry policy for transient failures, or `false` for a single attempt. @default RETRY_DEFAULTS */
  retry?: RetryOptions | false
  /** Where provisioned credentials are kept. @default a new MemoryCredentialStore per bootstrap */
  cache?: CredentialStore
  /** How the triplet becomes MQTT CONNECT fields. @default 'aliyun' */
  auth?: AuthOption
  /** Scheme and port for a bare `connect.host`. @default { protocol: 'mqtts' } */
  broker?: BrokerOptions
  /** mqtt.js client options for the broker, passed through, less what provisioning owns (see ProvisionedMqttKey). */
  mqtt?: MqttOptions
  /** Cancels provisioning, backoff sleeps and the connect. */
  signal?: AbortSignal
  /** A tsyringe container whose registrations override the defaults; the bootstrap works in a child of it. */
  container?: Container
  /** A pino-compatible logger. @default silent */
  logger?: Logger
  /** Reconnect backoff after the first connection, or `false` for no reconnects. @default RECONNECT_DEFAULTS */
  reconnect?: ReconnectOptions | false
  /**
   * Wait a random time in [0, startupJitterMs) before the first provisioning request, so that a fleet powered on at
   * once does not reach the server at once. Cache hits do not wait. @default 0
   */
  startupJitterMs?: number
  /** One deadline for a whole call (provisioning and connect, retries included), in ms. @default none */
  deadlineMs?: number
  /**
   * Dynamic registration, for answers with a productSecret and no deviceSecret: Alibaba Cloud's HTTPS flow with these
   * options, a strategy of your own, or `false` to refuse such answers. @default Alibaba's, endpoint from connect.host
   */
  registration?: AliyunRegistrationOptions | RegistrationStrategy | false
}

export interface ResolvedTransportOptions {
  readonly tls: TlsOptions
  readonly timeoutMs: number
  readonly maxResponseBytes: number
  readonly allowInsecureHttp: boolean
}

export interface ResolvedOptions extends ResolvedTransportOptions {
  readonly url: string
  readonly data: unknown
  /** credentialKey(url, data) */
  readonly cacheKey: string
  readonly headers: Readonly<Record<string, string>>
  readonly retry: RetryPolicy
  readonly cache: CredentialStore | undefined
  /** `undefined` when not given: the container's AuthStrategy, else DEFAULTS.auth. */
  readonly auth: AuthOption | undefined
  readonly broker: Readonly<BrokerOptions>
  readonly mqtt: Readonly<MqttOptions>
  readonly signal: AbortSignal | undefined
  readonly logger: Logger | undefined
  readonly reconnect: ReconnectPolicy | false
  readonly startupJitterMs: number
  readonly deadlineMs: number | undefined
  /** Alibaba's options, a strategy, `false`; `undefined` when not given (the container's, else Alibaba's). */
  readonly registration: Readonly<AliyunRegistrationOptions> | RegistrationStrategy | false | undefined
}

export const DEFAULTS = Object.freeze({
  timeoutMs: 10_000,
  maxResponseBytes: 64 * 1024,
  allowInsecureHttp: false,
  retry: RETRY_DEFAULTS,
  auth: 'aliyun' as AuthOption,
  broker: Object.freeze({ protocol: 'mqtts' }),
  /** mqtt.js's own default, for the options connectOptions() returns. */
  reconnectPeriod: 1000,
  reconnect: RECONNECT_DEFAULTS,
} as const)

const KNOWN_OPTIONS = new Set([
  'url',
  'data',
  'headers',
  'tls',
  'timeoutMs',
  'maxResponseBytes',
  'allowInsecureHttp',
  'retry',
  'cache',
  'auth',
  'broker',
  'mqtt',
  'signal',
  'container',
  'logger',
  'reconnect',
  'startupJitterMs',
  'deadlineMs',
  'registration',
])
const TRANSPORT_OPTIONS = new Set(['tls', 'timeoutMs', 'maxResponseBytes', 'allowInsecureHttp'])

/** Check every option and fill in the defaults. Throws `InvalidOptionError` (a TypeError) naming the bad option. */
export function resolveOptions(options: BootstrapOptions): ResolvedOptions {
  if (!isPlainObject(options)) fail('options', 'an object', typeName(options))
  checkKnown(options, KNOWN_OPTIONS, '')
  const transport = resolveTransportOptions(pick(options, TRANSPORT_OPTIONS))
  const url = checkUrl(options.url, transport.allowInsecureHttp, 'url').href
  // The cache key is the first use of `data`, and proves it is JSON (one serialisation, not two, on the boot path).
  let cacheKey: string
  try {
    cacheKey = keyOf(url, options.data)
  } catch {
    fail('data', 'JSON-serialisable (no cycles, no BigInt)')
  }
  if (options.data === undefined || typeof options.data === 'function' || typeof options.data === 'symbol') {
    fail('data', 'a JSON value', typeName(options.data))
  }
  const signal = options.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) fail('signal', 'an AbortSignal', typeName(signal))
  const container = options.container as { createChildContainer?: unknown } | undefined
  if (container !== undefined && typeof container?.createChildContainer !== 'function') {
    fail('container', 'a tsyringe DependencyContainer', typeName(container))
  }
  return Object.freeze({
    ...transport,
    url,
    data: options.data,
    cacheKey,
    headers: Object.freeze(checkHeaders(options.headers, 'headers')),
    retry: resolveRetry(options.retry),
    cache: checkCache(options.cache),
    auth: checkAuth(options.auth),
    broker: Object.freeze(checkBroker(options.broker)),
    mqtt: Object.freeze(checkMqtt(options.mqtt)),
    signal,
    logger: checkLogger(options.logger),
    reconnect: resolveReconnect(options.reconnect, options.mqtt?.reconnectPeriod),
    startupJitterMs: checkInteger(options.startupJitterMs ?? 0, 'startupJitterMs', 0, 2 ** 31 - 1),
    deadlineMs:
      options.deadlineMs === undefined ? undefined : checkInteger(options.deadlineMs, 'deadlineMs', 1, 2 ** 31 - 1),
    registration: checkRegistration(options.registration, transport),
  })
}

const REGISTRATION_OPTIONS = new Set(['url', 'region', 'signMethod', 'tls', 'timeoutMs', 'maxResponseBytes'])

function checkRegistration(value: unknown, transport: ResolvedTransportOptions): ResolvedOptions['registration'] {
  if (value === undefined || value === false) return value
  const strategy = value as Partial<RegistrationStrategy> | null
  if (typeof strategy?.register === 'function') {
    if (typeof strategy.name !== 'string') fail('registration.name', 'a string', typeName(strategy.name))
    return value as RegistrationStrategy
  }
  if (!isPlainObject(value)) {
    fail('registration', 'Alibaba registration options, a strategy with register(), or false', typeName(value))
  }
  // The top-level allowInsecureHttp governs the bootstrap's registration too.
  checkKnown(value, REGISTRATION_OPTIONS, 'registration.')
  return resolveRegistrationOptions({ ...value, allowInsecureHttp: transport.allowInsecureHttp }, transport)
}

/**
 * Alibaba registration options, checked (option names prefixed `registration.`): the transport options, defaulting
 * to `defaults`, and where to register. `AliyunRegistration` checks its options with it too.
 */
export function resolveRegistrationOptions(
  value: AliyunRegistrationOptions,
  defaults: Omit<ResolvedTransportOptions, 'tls'> = DEFAULTS,
): Readonly<AliyunRegistrationOptions> {
  if (!isPlainObject(value)) fail('registration', 'an object of registration options', typeName(value))
  checkKnown(value, new Set([...REGISTRATION_OPTIONS, 'allowInsecureHttp']), 'registration.')
  const transport = resolveTransportOptions(pick(value, TRANSPORT_OPTIONS), 'registration.', defaults)
  const url =
    value.url === undefined ? undefined : checkUrl(value.url, transport.allowInsecureHttp, 'registration.url').href
  if (value.region !== undefined && (typeof value.region !== 'string' || !REGION.test(value.region))) {
    fail('registration.region', 'an Alibaba Cloud region such as cn-shanghai', typeName(value.region))
  }
  if (value.signMethod !== undefined && !(ALIYUN_SIGN_METHODS as readonly unknown[]).includes(value.signMethod)) {
    fail('registration.signMethod', `one of ${ALIYUN_SIGN_METHODS.join(', ')}`, typeName(value.signMethod))
  }
  return Object.freeze({ ...value, ...transport, ...(url === undefined ? {} : { url }) })
}

/** An Alibaba Cloud region id: lower-case letters, a dash, then letters, digits and dashes (cn-shanghai, us-west-1). */
const REGION = /^[a-z]{2,}-[a-z0-9-]{1,40}$/

/** The transport options, checked (names prefixed with `prefix` in errors), the missing ones from `defaults`. */
export function resolveTransportOptions(
  options: TransportOptions = {},
  prefix = '',
  defaults: Omit<ResolvedTransportOptions, 'tls'> = DEFAULTS,
): ResolvedTransportOptions {
  if (!isPlainObject(options)) fail(prefix === '' ? 'options' : prefix.slice(0, -1), 'an object', typeName(options))
  checkKnown(options, TRANSPORT_OPTIONS, prefix)
  const allowInsecureHttp = options.allowInsecureHttp ?? defaults.allowInsecureHttp
  if (typeof allowInsecureHttp !== 'boolean') {
    fail(`${prefix}allowInsecureHttp`, 'a boolean', typeName(allowInsecureHttp))
  }
  return Object.freeze({
    tls: Object.freeze(checkTls(options.tls, `${prefix}tls`)),
    timeoutMs: checkInteger(options.timeoutMs ?? defaults.timeoutMs, `${prefix}timeoutMs`, 1, 2 ** 31 - 1),
    maxResponseBytes: checkInteger(
      options.maxResponseBytes ?? defaults.maxResponseBytes,
      `${prefix}maxResponseBytes`,
      1,
      2 ** 30,
    ),
    allowInsecureHttp,
  })
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
const RESERVED_HEADERS = new Set([
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

function resolveRetry(value: unknown): RetryPolicy {
  if (value === false) return NO_RETRY
  if (value === undefined) return RETRY_DEFAULTS
  if (!isPlainObject(value)) fail('retry', 'an object of retry options or false', typeName(value))
  checkKnown(value, new Set([...Object.keys(RETRY_DEFAULTS), 'onRetry']), 'retry.')
  const r = value as RetryOptions
  const minTimeout = checkInteger(r.minTimeout ?? RETRY_DEFAULTS.minTimeout, 'retry.minTimeout', 0, 2 ** 31 - 1)
  const maxTimeout = checkCeiling(r.maxTimeout, minTimeout, RETRY_DEFAULTS.maxTimeout, 'retry.maxTimeout')
  const factor = checkFactor(r.factor ?? RETRY_DEFAULTS.factor, 'retry.factor')
  const randomize = r.randomize ?? RETRY_DEFAULTS.randomize
  if (typeof randomize !== 'boolean') fail('retry.randomize', 'a boolean', typeName(randomize))
  if (r.onRetry !== undefined && typeof r.onRetry !== 'function')
    fail('retry.onRetry', 'a function', typeName(r.onRetry))
  return Object.freeze({
    retries: checkInteger(r.retries ?? RETRY_DEFAULTS.retries, 'retry.retries', 0, 1000),
    factor,
    minTimeout,
    maxTimeout,
    randomize,
    maxRetryAfter: checkInteger(r.maxRetryAfter ?? RETRY_DEFAULTS.maxRetryAfter, 'retry.maxRetryAfter', 0, 2 ** 31 - 1),
    ...(r.onRetry === undefined ? {} : { onRetry: r.onRetry }),
  })
}

/** A backoff's ceiling in ms: at least its floor; by default the larger of the floor and `fallback`. */
function checkCeiling(value: unknown, floor: number, fallback: number, option: string): number {
  return checkInteger(value ?? Math.max(floor, fallback), option, floor, 2 ** 31 - 1)
}

/** A backoff's growth per attempt: a finite number >= 1. */
function checkFactor(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1) fail(option, 'a number >= 1', typeName(value))
  return value
}

/** `mqtt.reconnectPeriod` keeps its meaning for apps that set it: 0 turns reconnects off, another value is minDelay. */
function resolveReconnect(value: unknown, reconnectPeriod: unknown): ReconnectPolicy | false {
  if (value === false) return false
  if (reconnectPeriod !== undefined) checkInteger(reconnectPeriod, 'mqtt.reconnectPeriod', 0, 2 ** 31 - 1)
  if (value === undefined && reconnectPeriod === 0) return false
  if (value !== undefined && !isPlainObject(value))
    fail('reconnect', 'an object of reconnect options or false', typeName(value))
  const r = (value ?? {}) as ReconnectOptions
  checkKnown(r, new Set(Object.keys(RECONNECT_DEFAULTS)), 'reconnect.')
  const fallbackMin =
    typeof reconnectPeriod === 'number' && reconnectPeriod > 0 ? reconnectPeriod : RECONNECT_DEFAULTS.minDelay
  const minDelay = checkInteger(r.minDelay ?? fallbackMin, 'reconnect.minDelay', 1, 2 ** 31 - 1)
  const maxDelay = checkCeiling(r.maxDelay, minDelay, RECONNECT_DEFAULTS.maxDelay, 'reconnect.maxDelay')
  const factor = checkFactor(r.factor ?? RECONNECT_DEFAULTS.factor, 'reconnect.factor')
  const stableAfter = checkInteger(
    r.stableAfter ?? RECONNECT_DEFAULTS.stableAfter,
    'reconnect.stableAfter',
    0,
    2 ** 31 - 1,
  )
  return Object.freeze({ minDelay, maxDelay, factor, stableAfter })
}

function checkTls(value: unknown, option = 'tls'): TlsOptions {
  if (value === undefined) return {}
  if (!isPlainObject(value)) fail(option, 'an object with ca, cert, key', typeName(value))
  checkKnown(value, new Set(['ca', 'cert', 'key', 'passphrase', 'servername']), `${option}.`)
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
  return { ...value } as TlsOptions
}

function checkCache(value: unknown): CredentialStore | undefined {
  if (value === undefined) return undefined
  const store = value as Partial<CredentialStore> | null
  if (
    store === null ||
    typeof store !== 'object' ||
    typeof store.get !== 'function' ||
    typeof store.set !== 'function' ||
    typeof store.delete !== 'function'
  ) {
    fail('cache', 'a CredentialStore (get, set, delete)', typeName(value))
  }
  return value as CredentialStore
}

function checkAuth(value: unknown): AuthOption | undefined {
  if (value === undefined) return undefined
  if (value === 'aliyun' || value === 'plain' || typeof value === 'function') return value as AuthOption
  if (typeof value === 'object' && value !== null && typeof (value as AuthStrategy).sign === 'function') {
    return value as AuthStrategy
  }
  fail('auth', "'aliyun', 'plain', a strategy { sign() } or a function", typeName(value))
}

function checkBroker(value: unknown): BrokerOptions {
  if (value === undefined) return DEFAULTS.broker
  if (!isPlainObject(value)) fail('broker', 'an object { protocol, port }', typeName(value))
  checkKnown(value, new Set(['protocol', 'port']), 'broker.')
  const { protocol, port } = value as BrokerOptions
  if (protocol !== undefined && !BROKER_PROTOCOLS.includes(protocol)) {
    fail('broker.protocol', `one of ${BROKER_PROTOCOLS.join(', ')}`, typeName(protocol))
  }
  if (port !== undefined) checkInteger(port, 'broker.port', 1, 65535)
  return { ...DEFAULTS.broker, ...(value as BrokerOptions) }
}

function checkLogger(value: unknown): Logger | undefined {
  if (value === undefined) return undefined
  const logger = value as Partial<Logger> | null
  const methods = ['debug', 'info', 'warn', 'error'] as const
  if (logger === null || typeof logger !== 'object' || !methods.every((m) => typeof logger[m] === 'function')) {
    fail('logger', 'a logger with debug, info, warn and error methods (pino-compatible)', typeName(value))
  }
  return value as Logger
}

function checkMqtt(value: unknown): MqttOptions {
  if (value === undefined) return {}
  if (!isPlainObject(value)) fail('mqtt', 'an object of mqtt.js client options', typeName(value))
  // The copy is what is checked and used: a getter cannot show one value to the check and another to mqtt.js.
  const copy: Record<string, unknown> = { ...value }
  refuseOwnedMqttKeys(copy)
  // Only `undefined` ones are left, which mqtt.js would still spread over what the broker URL says (host: undefined).
  for (const key of PROVISIONED_MQTT_KEYS) delete copy[key]
  return copy as MqttOptions
}

function checkInteger(value: unknown, option: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(option, `an integer from ${min} to ${max}`, typeName(value))
  }
  return value
}

function checkKnown(value: object, known: Set<string>, prefix: string): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) throw new InvalidOptionError(`${prefix}${key}`, `Unknown option \`${prefix}${key}\``)
  }
}

function pick(value: object, keys: Set<string>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(value).filter(([key]) => keys.has(key)))
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Throw an InvalidOptionError; `got` describes what was passed without quoting it (it may be a secret). */
function fail(option: string, expected: string, got?: string): never {
  throw new InvalidOptionError(
    option,
    `Expected \`${option}\` to be ${expected}${got === undefined ? '' : `, got ${got}`}`,
  )
}

function typeName(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value)
  }
  if (Array.isArray(value)) return 'an array'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}
