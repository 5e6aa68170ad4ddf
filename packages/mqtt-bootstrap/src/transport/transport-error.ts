/**
 * The HTTP seam's own failures. A transport says how moving the bytes failed (network, timeout, TLS certificate,
 * answer too large) and whether trying again may help; it knows nothing of provisioning's result codes or of
 * registration. PointAccess (point-access.ts) and the registration strategy (registration/aliyun.ts) map each code to
 * their own error, with their own words, from the fields here: never by reading the message.
 */
import { brand } from '../brand.js'
import { type ErrorDetails, errorCode, MqttBootstrapError, type TransportErrorCode } from '../errors.js'
import { isCertificateError } from '../tls-failures.js'

export interface TransportErrorDetails extends ErrorDetails {
  /** @default true for ERR_TRANSPORT_NETWORK and ERR_TRANSPORT_TIMEOUT, false for the others */
  transient?: boolean
  /** ERR_TRANSPORT_NETWORK, ERR_TRANSPORT_TLS: what failed below, e.g. `ECONNREFUSED`, `CERT_HAS_EXPIRED`. */
  reason?: string | undefined
  /** ERR_TRANSPORT_TIMEOUT: the limit that was outlasted, in ms. */
  timeoutMs?: number | undefined
  /** ERR_TRANSPORT_TOO_LARGE: the limit that was exceeded, in bytes. */
  limit?: number | undefined
  /** ERR_TRANSPORT_TOO_LARGE: the status of the answer that was too large. */
  status?: number | undefined
}

const TRANSIENT_BY_DEFAULT: ReadonlySet<TransportErrorCode> = new Set([
  'ERR_TRANSPORT_NETWORK',
  'ERR_TRANSPORT_TIMEOUT',
])

/**
 * An HTTP exchange that failed. A custom transport throws one of these (or an `AbortError` when the caller's signal
 * fired); anything else it throws counts as a transient ERR_TRANSPORT_NETWORK ({@link asTransportError}).
 */
export class TransportError extends MqttBootstrapError {
  declare readonly code: TransportErrorCode
  readonly reason: string
  readonly timeoutMs?: number
  readonly limit?: number
  readonly status?: number

  constructor(code: TransportErrorCode, message: string, details: TransportErrorDetails = {}) {
    // A certificate at fault is never worth retrying, whatever a custom transport says.
    const transient = code === 'ERR_TRANSPORT_TLS' ? false : (details.transient ?? TRANSIENT_BY_DEFAULT.has(code))
    super(code, message, { ...details, transient })
    // Never absent where the mapped messages quote it ("provisioning request failed (<reason>)").
    this.reason = details.reason ?? errorCode(details.cause) ?? 'unknown error'
    if (details.timeoutMs !== undefined) this.timeoutMs = details.timeoutMs
    if (details.limit !== undefined) this.limit = details.limit
    if (details.status !== undefined) this.status = details.status
  }
}
brand(TransportError, 'TransportError')

/**
 * A failure below HTTP (connection refused or reset, DNS, the TLS handshake): ERR_TRANSPORT_TLS when the certificate
 * is at fault (never retried, never worked around), else a transient ERR_TRANSPORT_NETWORK.
 */
export function networkError(cause: unknown): TransportError {
  const code = errorCode(cause)
  if (isCertificateError(cause)) {
    return new TransportError('ERR_TRANSPORT_TLS', `TLS certificate verification failed (${code})`, {
      reason: code,
      cause,
    })
  }
  const reason = code ?? (cause instanceof Error ? cause.name : 'unknown error')
  return new TransportError('ERR_TRANSPORT_NETWORK', `HTTP request failed (${reason})`, { reason, cause })
}

export function timeoutError(timeoutMs: number, cause?: unknown): TransportError {
  return new TransportError('ERR_TRANSPORT_TIMEOUT', `HTTP request timed out after ${timeoutMs} ms`, {
    timeoutMs,
    cause,
  })
}

export function tooLargeError(limit: number, status: number): TransportError {
  return new TransportError('ERR_TRANSPORT_TOO_LARGE', `HTTP answer exceeds ${limit} bytes`, { limit, status })
}

/**
 * What a transport's rejection means: a TransportError as it is, anything else (a custom transport's plain error) a
 * transient network failure (issue 13: the seam's contract). Aborts are told apart by the callers, before this.
 */
export function asTransportError(error: unknown): TransportError {
  if (error instanceof TransportError) return error
  const reason = errorCode(error) ?? (error instanceof Error ? error.name : 'unknown error')
  return new TransportError('ERR_TRANSPORT_NETWORK', `HTTP request failed (${reason})`, { reason, cause: error })
}
