/**
 * The HTTP seam: one POST, its answer as text. `PointAccess` and the registration strategy interpret the answer; a
 * transport only moves bytes, and reports how moving them failed with a `TransportError` (transport-error.ts), or an
 * `AbortError` when the caller's signal fired. Anything else it throws counts as a transient network failure.
 */

export interface HttpRequest {
  url: URL
  /** Lower-case names, `content-type` included (provisioning's is always `application/json`). */
  headers: Record<string, string>
  body: string
  /** Whole exchange, headers and body included; a longer one fails with `ERR_TRANSPORT_TIMEOUT`. */
  timeoutMs: number
  /** Larger answers fail with a `TransportError` `ERR_TRANSPORT_TOO_LARGE`. */
  maxResponseBytes: number
  signal?: AbortSignal | undefined
  /**
   * A TLS client certificate for this request only, in place of the transport's own (`tls.cert`/`tls.key`): the
   * device's current certificate when it renews it (EST's re-enroll, issue 18). A transport that cannot present one
   * sends the request without it; the server then judges it as a claim like any other.
   */
  clientCertificate?: ClientCertificate | undefined
}

/** A client certificate chain (PEM, leaf first) and its private key (PEM; secret: a sealed Buffer). */
export interface ClientCertificate {
  cert: string
  key: Buffer
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

/** The HTTP statuses worth trying again (a server error, a timeout, too many requests): provisioning's and registration's. */
export function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429
}
