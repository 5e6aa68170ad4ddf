/**
 * The HTTP seam: one POST, its answer as text. `PointAccess` interprets the answer; a transport only moves bytes and
 * reports how moving them failed, with the errors built here (a transport may also throw anything else, which counts
 * as a network failure, or an `AbortError` when the caller's signal fired).
 */
import { errorCode, isCertificateError, ProvisioningError } from '../errors.js'

export interface HttpRequest {
  url: URL
  /** Lower-case names; `content-type` is always `application/json`. */
  headers: Record<string, string>
  body: string
  /** Whole exchange, headers and body included. */
  timeoutMs: number
  /** Larger answers fail with `ERR_PROVISION_RESPONSE_TOO_LARGE`. */
  maxResponseBytes: number
  signal?: AbortSignal | undefined
}

export interface HttpResponse {
  status: number
  /** Lower-case names. */
  headers: Record<string, string | undefined>
  body: string
}

export interface HttpTransport {
  post(request: HttpRequest): Promise<HttpResponse>
}

/** Connection refused/reset, DNS, TLS handshake trouble: transient, unless it is a certificate error. */
export function networkError(cause: unknown): ProvisioningError {
  const code = errorCode(cause)
  if (isCertificateError(cause)) {
    return new ProvisioningError('ERR_PROVISION_TLS', `TLS certificate verification failed (${code})`, {
      resultCode: '77777',
      transient: false,
      cause,
    })
  }
  const reason = code ?? (cause instanceof Error ? cause.name : 'unknown error')
  return new ProvisioningError('ERR_PROVISION_NETWORK', `provisioning request failed (${reason})`, {
    resultCode: '77777',
    transient: true,
    cause,
  })
}

export function timeoutError(timeoutMs: number, cause?: unknown): ProvisioningError {
  return new ProvisioningError('ERR_PROVISION_TIMEOUT', `provisioning request timed out after ${timeoutMs} ms`, {
    resultCode: '77777',
    transient: true,
    cause,
  })
}

export function tooLargeError(limit: number, status: number): ProvisioningError {
  return new ProvisioningError('ERR_PROVISION_RESPONSE_TOO_LARGE', `provisioning answer exceeds ${limit} bytes`, {
    resultCode: '99999',
    transient: false,
    status,
  })
}
