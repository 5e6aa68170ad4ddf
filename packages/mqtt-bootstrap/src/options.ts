/**
 * One options type, one frozen defaults object, one resolveOptions(): every option is checked here, before any I/O,
 * and a bad one is a TypeError naming it (`InvalidOptionError`, code `ERR_INVALID_OPTION`). Each concern resolves its
 * own options next to its defaults (transport/options.ts, retry.ts, reconnect.ts, auth/resolve.ts,
 * registration/resolve.ts); what they return is checked, and nothing below checks it again. Messages describe the
 * value's type, never its content: headers and TLS keys are secrets.
 */
import { type AttestationOptions, type ResolvedAttestation, resolveAttestation } from './attestation/options.js'
import { AUTH_DEFAULT, type AuthOption, resolveAuthOption, X509 } from './auth/resolve.js'
import type { AuthStrategy } from './auth/strategy.js'
import { BROKER_PROTOCOLS, type BrokerOptions, type BrokerProtocol } from './broker-url.js'
import {
  type CertificateOptions,
  checkOwnClientCertificate,
  type ResolvedCertificate,
  resolveCertificate,
} from './certificates/options.js'
import { MAX_RENEW_BEFORE_MS } from './certificates/schedule.js'
import type { Container } from './container.js'
import type { Logger } from './logger.js'
import { type MqttOptions, PROVISIONED_MQTT_KEYS, refuseOwnedMqttKeys } from './mqtt-options.js'
import { checkInteger, checkKnown, fail, isPlainObject, MAX_DELAY_MS, pick, typeName } from './option-checks.js'
import {
  RECONNECT_DEFAULTS,
  type ReconnectOptions,
  type ReconnectPolicy,
  resolveReconnectOptions,
} from './reconnect.js'
import { type RegistrationOption, resolveRegistrationOption } from './registration/resolve.js'
import type { RegistrationStrategy } from './registration/strategy.js'
import { RETRY_DEFAULTS, type RetryOptions, type RetryPolicy, resolveRetryOptions } from './retry.js'
import { type CredentialStore, keyOf } from './store/credential-store.js'
import { checkMessageStore, type FileMessageStore } from './store/message-store.js'
import {
  checkedHref,
  checkHeaders,
  type ResolvedTransportOptions,
  resolveTransportOptions,
  TRANSPORT_DEFAULTS,
  TRANSPORT_OPTIONS,
  type TransportOptions,
} from './transport/options.js'

export type { AuthOption } from './auth/resolve.js'
export type { CertificateOptions, KeyType } from './certificates/options.js'
export type { TransportOptions } from './transport/options.js'

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
  registration?: RegistrationOption
  /** Sign every provisioning request (RFC 9421, hmac-sha256) with the device's key. @default unsigned */
  attestation?: AttestationOptions
  /**
   * Make a key pair on the first boot, send a CSR with `data` (as its `csr` field), and connect with the certificate
   * the server issues for it (mutual TLS; `auth` then defaults to `'x509'`). The private key never leaves the device;
   * it is kept in `cache` beside the certificate. Needs the optional peer `@peculiar/asn1-csr`. @default false
   */
  certificate?: boolean | CertificateOptions
  /**
   * How long before credentials expire the session renews them: a certificate before its notAfter, a deviceSecret
   * before the answer's `expiresAt` (issue 18). The renewed credentials replace the old ones at a reconnect the
   * session makes itself; the old ones stay cached until the broker has accepted the new. @default a third of the
   * lifetime (from when the device received them to their expiry)
   */
  renewBeforeMs?: number
  /**
   * Keep mqtt.js's in-flight and offline QoS 1/2 messages on disk (issue 20): a crash, a power cut or a re-provisioning
   * loses none of them, whatever `cleanSession` says. @default mqtt.js's in-memory stores
   */
  messageStore?: FileMessageStore
}

export interface ResolvedOptions extends ResolvedTransportOptions {
  readonly url: string
  readonly data: unknown
  /** credentialKey(url, data) */
  readonly cacheKey: string
  /** tls, timeoutMs, maxResponseBytes and allowInsecureHttp as one object: passed on, it is not checked again. */
  readonly transportOptions: ResolvedTransportOptions
  readonly headers: Readonly<Record<string, string>>
  readonly retry: RetryPolicy
  readonly cache: CredentialStore | undefined
  /** The `auth` option as a strategy; `undefined` when not given: the container's AuthStrategy, else DEFAULTS.auth. */
  readonly auth: AuthStrategy | undefined
  readonly broker: Readonly<BrokerOptions>
  readonly mqtt: Readonly<MqttOptions>
  readonly signal: AbortSignal | undefined
  readonly logger: Logger | undefined
  readonly reconnect: ReconnectPolicy | false
  readonly startupJitterMs: number
  readonly deadlineMs: number | undefined
  /**
   * The `registration` option as a strategy (`false`: `noRegistration`); `undefined` when not given: the container's
   * Registration, else Alibaba's.
   */
  readonly registration: RegistrationStrategy | undefined
  /** The `attestation` option, checked; its key shows nowhere (not in inspect, JSON or errors). */
  readonly attestation: ResolvedAttestation | undefined
  /** The `certificate` option; `undefined` when the device does not ask for a certificate. */
  readonly certificate: ResolvedCertificate | undefined
  /** The `renewBeforeMs` option; `undefined`: a third of each credential's lifetime. */
  readonly renewBeforeMs: number | undefined
  readonly messageStore: FileMessageStore | undefined
}

export const DEFAULTS = Object.freeze({
  ...TRANSPORT_DEFAULTS,
  retry: RETRY_DEFAULTS,
  auth: AUTH_DEFAULT as AuthOption,
  broker: Object.freeze({ protocol: 'mqtts' }),
  /** mqtt.js's own default, for the options connectOptions() returns. */
  reconnectPeriod: 1000,
  reconnect: RECONNECT_DEFAULTS,
} as const)

const KNOWN_OPTIONS: ReadonlySet<string> = new Set([
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
  'attestation',
  'certificate',
  'renewBeforeMs',
  'messageStore',
])

/** Check every option and fill in the defaults. Throws `InvalidOptionError` (a TypeError) naming the bad option. */
export function resolveOptions(options: BootstrapOptions): ResolvedOptions {
  if (!isPlainObject(options)) fail('options', 'an object', typeName(options))
  checkKnown(options, KNOWN_OPTIONS, '')
  const transport = resolveTransportOptions(hasTransportOptions(options) ? pick(options, TRANSPORT_OPTIONS) : NONE)
  const url = checkedHref(options.url, transport.allowInsecureHttp, 'url')
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
  const certificate = resolveCertificate(options.certificate, options.data, options.mqtt)
  const auth = resolveAuthOption(options.auth) ?? (certificate === undefined ? undefined : X509)
  if (auth === X509 && certificate === undefined) checkOwnClientCertificate(options.mqtt)
  const container = options.container as { createChildContainer?: unknown } | undefined
  if (container !== undefined && typeof container?.createChildContainer !== 'function') {
    fail('container', 'a tsyringe DependencyContainer', typeName(container))
  }
  return Object.freeze({
    tls: transport.tls,
    timeoutMs: transport.timeoutMs,
    maxResponseBytes: transport.maxResponseBytes,
    allowInsecureHttp: transport.allowInsecureHttp,
    url,
    data: options.data,
    cacheKey,
    transportOptions: transport,
    headers: options.headers === undefined ? NONE : Object.freeze(checkHeaders(options.headers, 'headers')),
    retry: resolveRetryOptions(options.retry),
    cache: checkCache(options.cache),
    auth,
    broker: Object.freeze(checkBroker(options.broker)),
    mqtt: options.mqtt === undefined ? NONE : Object.freeze(checkMqtt(options.mqtt)),
    signal,
    logger: checkLogger(options.logger),
    reconnect: resolveReconnectOptions(options.reconnect, options.mqtt?.reconnectPeriod),
    startupJitterMs: checkInteger(options.startupJitterMs ?? 0, 'startupJitterMs', 0, MAX_DELAY_MS),
    deadlineMs:
      options.deadlineMs === undefined ? undefined : checkInteger(options.deadlineMs, 'deadlineMs', 1, MAX_DELAY_MS),
    registration: resolveRegistrationOption(options.registration, transport),
    attestation: resolveAttestation(options.attestation),
    certificate,
    renewBeforeMs:
      options.renewBeforeMs === undefined
        ? undefined
        : checkInteger(options.renewBeforeMs, 'renewBeforeMs', 0, MAX_RENEW_BEFORE_MS),
    messageStore: checkMessageStore(options.messageStore, options.mqtt),
  })
}

/** The headers, mqtt options or transport options of a bootstrap that gives none: one frozen object for all. */
const NONE: Readonly<Record<string, never>> = Object.freeze({})

function hasTransportOptions(options: BootstrapOptions): boolean {
  const { tls, timeoutMs, maxResponseBytes, allowInsecureHttp } = options
  return (
    tls !== undefined || timeoutMs !== undefined || maxResponseBytes !== undefined || allowInsecureHttp !== undefined
  )
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

const BROKER_OPTIONS: ReadonlySet<string> = new Set(['protocol', 'port'])

function checkBroker(value: unknown): BrokerOptions {
  if (value === undefined) return DEFAULTS.broker
  if (!isPlainObject(value)) fail('broker', 'an object { protocol, port }', typeName(value))
  checkKnown(value, BROKER_OPTIONS, 'broker.')
  const { protocol, port } = value as BrokerOptions
  if (protocol !== undefined && !BROKER_PROTOCOLS.includes(protocol)) {
    fail('broker.protocol', `one of ${BROKER_PROTOCOLS.join(', ')}`, typeName(protocol))
  }
  if (port !== undefined) checkInteger(port, 'broker.port', 1, 65535)
  // The usual `{ protocol }` alone: one frozen object per protocol (the resolved options live as long as the client).
  if (port === undefined && Object.keys(value).length === 1) return BROKER_BY_PROTOCOL[protocol ?? 'mqtts']
  return { ...DEFAULTS.broker, ...(value as BrokerOptions) }
}

const BROKER_BY_PROTOCOL = Object.fromEntries(
  BROKER_PROTOCOLS.map((protocol) => [protocol, Object.freeze({ protocol })]),
) as Record<BrokerProtocol, Readonly<BrokerOptions>>

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
