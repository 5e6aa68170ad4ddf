/**
 * Errors with stable string codes. Match on `error.code`, never on the message: messages may be reworded, codes are
 * part of the API (the convention of undici and Node itself). No message, field or `cause` carries a secret.
 *
 * `instanceof` works across copies of this library (the ESM and CJS builds side by side, two versions in one tree):
 * each class checks a brand (brand.ts), not its prototype, as undici does.
 */
import { brand } from './brand.js'

/** Every code an error of this library can carry. */
export type ErrorCode =
  | InvalidOptionError['code']
  | BootTimeoutError['code']
  | ProvisioningErrorCode
  | RegistrationErrorCode
  | BrokerErrorCode
  | CredentialStoreErrorCode
  | MessageStoreError['code']
  | AuthErrorCode
  | TransportErrorCode
  | DependencyError['code']
  | AbortError['code']

export type ProvisioningErrorCode =
  | 'ERR_PROVISION_NETWORK'
  | 'ERR_PROVISION_TIMEOUT'
  | 'ERR_PROVISION_TLS'
  | 'ERR_PROVISION_HTTP_STATUS'
  | 'ERR_PROVISION_SERVER_BUSY'
  | 'ERR_PROVISION_INVALID_RESPONSE'
  | 'ERR_PROVISION_RESPONSE_TOO_LARGE'
  | 'ERR_PROVISION_REFUSED'
  | 'ERR_PROVISION_NO_DEVICE_SECRET'

export type RegistrationErrorCode =
  | 'ERR_REGISTER_NETWORK'
  | 'ERR_REGISTER_TIMEOUT'
  | 'ERR_REGISTER_TLS'
  | 'ERR_REGISTER_HTTP_STATUS'
  | 'ERR_REGISTER_BUSY'
  | 'ERR_REGISTER_REFUSED'
  | 'ERR_REGISTER_INVALID_RESPONSE'
  | 'ERR_REGISTER_NO_REGION'

export type BrokerErrorCode = 'ERR_BROKER_CONNECT' | 'ERR_BROKER_AUTH_REJECTED'

export type CredentialStoreErrorCode =
  | 'ERR_STORE_CORRUPT'
  | 'ERR_STORE_VERSION'
  | 'ERR_STORE_KEY'
  | 'ERR_STORE_IO'
  /** Non-fatal: the cache's directory can be read by other users (reported once per bootstrap, never changed). */
  | 'ERR_STORE_PERMISSIONS'

/** The auth strategy cannot sign for these credentials (e.g. aliyun: `|` or `&` in productKey or deviceName). */
export type AuthErrorCode = 'ERR_AUTH_INVALID_IDENTITY'

/**
 * How an HTTP exchange failed, as the transport seam says it (transport/transport-error.ts: network, timeout, TLS
 * certificate, answer too large); provisioning and registration map each to a code of their own.
 */
export type TransportErrorCode =
  | 'ERR_TRANSPORT_NETWORK'
  | 'ERR_TRANSPORT_TIMEOUT'
  | 'ERR_TRANSPORT_TLS'
  | 'ERR_TRANSPORT_TOO_LARGE'

/** What every runtime error of this library may say beside its code and message. */
export interface ErrorDetails {
  /** Whether retrying may help. @default false */
  transient?: boolean
  /** The server's Retry-After, in milliseconds from when the answer came. */
  retryAfterMs?: number | undefined
  cause?: unknown
}

/**
 * Base class of the library's runtime errors (option errors are `TypeError`s, see {@link InvalidOptionError}). It
 * carries what a retry loop reads: `transient`, `retryAfterMs`, and sets: `attempts`.
 */
export class MqttBootstrapError extends Error {
  readonly code: ErrorCode
  /** Whether retrying may help (network trouble, 5xx/408/429, a busy server, a broker that went away). */
  readonly transient: boolean
  /** The server's Retry-After, in milliseconds from when the answer came; it wins over the computed backoff. */
  declare readonly retryAfterMs?: number
  /** How many attempts were made before giving up (set by the retry loop the error ended). */
  declare attempts?: number

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.code = code
    this.name = new.target.name
    this.transient = details.transient ?? false
    if (details.retryAfterMs !== undefined) (this as { retryAfterMs?: number }).retryAfterMs = details.retryAfterMs
  }
}
brand(MqttBootstrapError, 'MqttBootstrapError')

/** A bad option or argument, thrown before any I/O. A `TypeError`, as p-retry and Node do for bad arguments. */
export class InvalidOptionError extends TypeError {
  readonly code = 'ERR_INVALID_OPTION' as const
  /** The option's path, e.g. `retry.retries` or `url`; the first of `options` when several are at fault. */
  readonly option: string
  /** Every option at fault, when one check refuses several at once (e.g. `mqtt.clientId` and `mqtt.clean`). */
  readonly options: readonly string[]

  constructor(option: string, message: string, options: readonly string[] = [option]) {
    super(message)
    this.name = 'InvalidOptionError'
    this.option = option
    this.options = Object.freeze([...options])
  }
}
brand(InvalidOptionError, 'InvalidOptionError')

export interface ProvisioningErrorDetails extends ErrorDetails {
  /** The result code `PointAccess.request()` returned for this failure: `"77777"`, `"99999"` or the server's own. */
  resultCode: string
  /** Whether retrying may help (network trouble, 5xx/408/429, the server's `"77777"`). */
  transient: boolean
  /** The HTTP status, when an answer came. */
  status?: number | undefined
  /** The provisioning URL, redacted (no credentials, query or fragment). */
  url?: string | undefined
}

/** The provisioning request failed, or its answer was not a usable configuration. */
export class ProvisioningError extends MqttBootstrapError {
  declare readonly code: ProvisioningErrorCode
  readonly resultCode: string
  readonly status?: number
  /** The provisioning URL the error is about, redacted (no credentials, query or fragment); its message names it. */
  readonly url?: string

  constructor(code: ProvisioningErrorCode, message: string, details: ProvisioningErrorDetails) {
    super(code, message, details)
    this.resultCode = details.resultCode
    if (details.status !== undefined) this.status = details.status
    if (details.url !== undefined) this.url = details.url
  }
}
brand(ProvisioningError, 'ProvisioningError')

export interface RegistrationErrorDetails extends ErrorDetails {
  /** Whether retrying may help (network trouble, 5xx/408/429, the service busy). */
  transient: boolean
  /** The HTTP status, when an answer came. */
  status?: number | undefined
  /** The registration service's own result code (Alibaba: `code` in the answer), when it gave one. */
  serverCode?: number | string | undefined
  /** The registration service's message for that code, shortened and with any secret removed. */
  serverMessage?: string | undefined
  /** The registration endpoint, redacted (no credentials, query or fragment). */
  url?: string | undefined
}

/**
 * Dynamic registration ("one secret per product") failed: the productSecret could not be exchanged for a
 * deviceSecret. Transient failures are retried like provisioning ones; a refusal keeps the service's code and message.
 */
export class RegistrationError extends MqttBootstrapError {
  declare readonly code: RegistrationErrorCode
  readonly status?: number
  readonly serverCode?: number | string
  readonly serverMessage?: string
  /** The registration endpoint the error is about, redacted; its message names it. */
  readonly url?: string

  constructor(code: RegistrationErrorCode, message: string, details: RegistrationErrorDetails) {
    super(code, message, details)
    if (details.status !== undefined) this.status = details.status
    if (details.serverCode !== undefined) this.serverCode = details.serverCode
    if (details.serverMessage !== undefined) this.serverMessage = details.serverMessage
    if (details.url !== undefined) this.url = details.url
  }
}
brand(RegistrationError, 'RegistrationError')

/** The MQTT connection could not be opened, or the broker refused the credentials. */
export class BrokerError extends MqttBootstrapError {
  declare readonly code: BrokerErrorCode
  /** The CONNACK return code (MQTT 3.1.1) or reason code (MQTT 5), when the broker answered. */
  readonly returnCode?: number
  /** The broker URL the error is about, redacted (no credentials, query or fragment); its message names it. */
  readonly url?: string

  constructor(
    code: BrokerErrorCode,
    message: string,
    details: ErrorDetails & { transient: boolean; returnCode?: number | undefined; url?: string | undefined },
  ) {
    super(code, message, details)
    if (details.returnCode !== undefined) this.returnCode = details.returnCode
    if (details.url !== undefined) this.url = details.url
  }
}
brand(BrokerError, 'BrokerError')

/**
 * FileMessageStore could not keep a packet: `ERR_MESSAGE_STORE_IO` its directory cannot be written or read (disk full,
 * permissions: the publish fails), `ERR_MESSAGE_STORE_CORRUPT` a packet file not whole was set aside when it opened.
 */
export class MessageStoreError extends MqttBootstrapError {
  declare readonly code: 'ERR_MESSAGE_STORE_IO' | 'ERR_MESSAGE_STORE_CORRUPT'
  /** The file or directory at fault. */
  readonly path: string

  constructor(code: MessageStoreError['code'], message: string, path: string, cause?: unknown) {
    super(code, message, { cause })
    this.path = path
  }
}
brand(MessageStoreError, 'MessageStoreError')

/** The credential cache could not be read or written. Reads that fail this way count as a cache miss. */
export class CredentialStoreError extends MqttBootstrapError {
  declare readonly code: CredentialStoreErrorCode

  constructor(code: CredentialStoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, { cause: options?.cause })
  }
}
brand(CredentialStoreError, 'CredentialStoreError')

/**
 * The auth strategy refused to sign the device's credentials: they would make an ambiguous or invalid CONNECT (aliyun:
 * a `|` or `&` in productKey or deviceName). Never transient: thrown before any connect, not retried.
 */
export class AuthError extends MqttBootstrapError {
  declare readonly code: AuthErrorCode
  declare readonly transient: false

  constructor(code: AuthErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, { cause: options?.cause })
  }
}
brand(AuthError, 'AuthError')

/** An optional feature needs a package not installed (an optional peer: `certificate`, `@peculiar/asn1-csr`). */
export class DependencyError extends MqttBootstrapError {
  declare readonly code: 'ERR_DEPENDENCY_MISSING'
  declare readonly transient: false
  /** The npm package to install. */
  readonly packageName: string

  constructor(packageName: string, feature: string, options?: { cause?: unknown }) {
    super('ERR_DEPENDENCY_MISSING', `${feature} needs the package ${packageName}: npm install ${packageName}`, {
      cause: options?.cause,
    })
    this.packageName = packageName
  }
}
brand(DependencyError, 'DependencyError')

/** The caller's AbortSignal fired. `name` is `'AbortError'`, as for fetch and timers. */
export class AbortError extends MqttBootstrapError {
  declare readonly code: 'ERR_ABORTED'

  constructor(reason?: unknown) {
    super('ERR_ABORTED', 'The operation was aborted', { cause: reason })
    this.name = 'AbortError'
  }
}
brand(AbortError, 'AbortError')

/** The whole call (provisioning and connect, with their retries) outlasted `deadlineMs`. */
export class BootTimeoutError extends MqttBootstrapError {
  declare readonly code: 'ERR_BOOT_TIMEOUT'

  /** @param cause the last failure that was being retried, if any */
  constructor(deadlineMs: number, cause?: unknown) {
    super('ERR_BOOT_TIMEOUT', `boot did not complete within ${deadlineMs} ms`, { cause })
  }
}
brand(BootTimeoutError, 'BootTimeoutError')

/** Reject with an {@link AbortError} when `signal` has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(signal.reason)
}

/** Whether a retry loop may try again after `error`: one of the library's errors that says so. */
export function isTransient(error: unknown): boolean {
  return error instanceof MqttBootstrapError && error.transient
}

/**
 * The one way to read an error's code: the string `code` of `error` or of the first error in its `cause` chain that
 * has one (the library's own codes, then Node's: `ECONNREFUSED`, `CERT_HAS_EXPIRED`); `undefined` when none has. Events
 * and logs that must show something write `errorCode(error) ?? error.name`.
 */
export function errorCode(error: unknown): string | undefined {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') return code
  }
  return undefined
}
