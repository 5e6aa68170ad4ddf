/**
 * How a TLS failure is told apart, once for every path that meets one (provisioning, registration, the broker): a
 * certificate this side does not trust, or the peer's alert refusing this side's client certificate. Neither is worth
 * a retry, and neither may ever fall back to an unverified connection.
 */
import { errorCode } from './errors.js'

// OpenSSL's verification failures (X509_V_ERR_*, as Node names them) and Node's host name check.
const CERTIFICATE_ERRORS = new Set(
  `CERT_CHAIN_TOO_LONG CERT_HAS_EXPIRED CERT_NOT_YET_VALID CERT_REJECTED CERT_REVOKED CERT_SIGNATURE_FAILURE
  CERT_UNTRUSTED DEPTH_ZERO_SELF_SIGNED_CERT ERR_TLS_CERT_ALTNAME_INVALID HOSTNAME_MISMATCH INVALID_CA INVALID_PURPOSE
  PATH_LENGTH_EXCEEDED SELF_SIGNED_CERT_IN_CHAIN UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY UNABLE_TO_DECRYPT_CERT_SIGNATURE
  UNABLE_TO_GET_ISSUER_CERT UNABLE_TO_GET_ISSUER_CERT_LOCALLY UNABLE_TO_VERIFY_LEAF_SIGNATURE`.split(/\s+/),
)

/**
 * A certificate the client does not trust, or a client certificate the server refused (a TLS alert). Retrying cannot
 * help, and must never fall back to an unverified connection.
 */
export function isCertificateError(error: unknown): boolean {
  const code = errorCode(error)
  if (code === undefined) return false
  return CERTIFICATE_ERRORS.has(code) || /^ERR_SSL_.*(CERTIFICATE|BAD_CERT|UNKNOWN_CA)/.test(code)
}

/**
 * TLS alerts a broker sends about the client's certificate (OpenSSL's codes as Node names them): none was sent, it is
 * of a CA the broker does not trust, expired, revoked, or refused. The broker refused the credentials, as a CONNACK 5
 * does: a device with the `certificate` option claims a new certificate (once, for a cached one).
 */
const CLIENT_CERTIFICATE_ALERT =
  /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(?:BAD_CERTIFICATE|UNSUPPORTED_CERTIFICATE|CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|UNKNOWN_CA|ACCESS_DENIED|CERTIFICATE_REQUIRED)$/

/** Whether `error` is the broker's TLS alert refusing the client certificate. */
export function isClientCertificateRefusal(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' && CLIENT_CERTIFICATE_ALERT.test(code)
}
