/**
 * Renewals (issue 18, DESIGN.md "Certificates": "A request whose TLS client certificate chains to the issuing CA with
 * the same subject is a renewal"), as EST's re-enroll (RFC 7030 4.2.2): a device whose certificate nears its notAfter
 * claims again with a CSR for a new key, its current certificate as the TLS client certificate. That certificate is
 * the proof of the claim: the handler asks no signature of it, and answers the configuration only when its deviceName
 * is the certificate's CN (handler-step.ts).
 *
 * A certificate proves a device here when it is a leaf signed by the issuing CA itself (checkIssued and its signature
 * verified with the CA's key), valid at the issuer's clock, not a CA, with exactly one CN. `socket.authorized` is not
 * required: the TLS handshake has proved that the peer holds the certificate's key (its CertificateVerify) whatever
 * the server's `rejectUnauthorized`, and a leaf our own CA signed needs no path built to be judged: the issuer's own
 * certificate is the only anchor, the dates are read by the issuer's clock (the one its certificates are issued by),
 * and nothing the server's `ca` option trusts besides (a factory CA) can renew.
 */
import { X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { asn1 } from './asn1.js'

/** What a renewal's certificate proves: the device it was issued to. */
export interface Renewal {
  /** The certificate's CN: the deviceName the registry answered when it was issued. */
  deviceName: string
}

/**
 * The judge of renewals for certificates issued by `issuer` (the issuing CA's certificate): the device a request's
 * TLS client certificate proves, or `undefined` (no certificate, another CA's, out of its validity by `clock`, a CA,
 * not exactly one CN, a plain HTTP request, a socket that is gone). Never throws.
 */
export function renewalJudge(
  issuer: X509Certificate,
  clock: { now(): number },
): (request: IncomingMessage) => Renewal | undefined {
  return (request) => {
    try {
      const leaf = clientCertificate(request)
      if (leaf === undefined || leaf.ca || !validAt(leaf, clock.now())) return undefined
      if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey)) return undefined
      const names = commonNames(leaf)
      const [deviceName] = names
      return names.length === 1 && deviceName !== undefined && deviceName !== '' ? { deviceName } : undefined
    } catch {
      return undefined // the certificate is the client's: one our parsers cannot read proves nothing
    }
  }
}

/**
 * The client certificate `request` came with, or `undefined`. Not `getPeerX509Certificate()`: on Node 20 it makes
 * `getPeerCertificate(true)` lose the issuers the client sent, which X.509 claims (claims/x509.ts) still need when
 * this request turns out not to be a renewal.
 */
function clientCertificate(request: IncomingMessage): X509Certificate | undefined {
  const socket = request.socket as Partial<TLSSocket> | null | undefined
  if (typeof socket?.getPeerCertificate !== 'function') return undefined // plain HTTP
  // `null` once the socket is gone, `{}` without a certificate.
  const raw: unknown = socket.getPeerCertificate()?.raw
  return Buffer.isBuffer(raw) ? new X509Certificate(raw) : undefined
}

function validAt(certificate: X509Certificate, now: number): boolean {
  const from = Date.parse(certificate.validFrom)
  const to = Date.parse(certificate.validTo)
  return Number.isFinite(from) && Number.isFinite(to) && from <= now && now <= to
}

/** The subject's CN values exactly as encoded (asn1-x509), not as a printed name that escapes them. */
function commonNames(certificate: X509Certificate): string[] {
  const { schema, x509 } = asn1()
  const parsed = schema.AsnConvert.parse(certificate.raw, x509.Certificate)
  return parsed.tbsCertificate.subject.flatMap((rdn) =>
    rdn.filter((attribute) => attribute.type === '2.5.4.3').map((attribute) => attribute.value.toString()),
  )
}

/** The device each request's renewal certificate proved, as the handler recognised it: for the registries. */
const renewals = new WeakMap<IncomingMessage, string>()

/** The handler's note that `request` is a renewal by `deviceName`'s certificate. */
export function recordRenewal(request: IncomingMessage, deviceName: string): void {
  renewals.set(request, deviceName)
}

/**
 * The deviceName whose certificate (issued by the handler's `issue`) made `request` a renewal, or `undefined` when it
 * is not one. A renewal's claim is not verified (`verifiedKeyId` is `undefined`): the certificate is its proof, and
 * the handler answers only a configuration of that deviceName. A `resolve` that refuses claims nobody verified must
 * let these through, and must not hand out anything new for them (a pool triplet): the device has its configuration.
 */
export function renewedDeviceName(request: IncomingMessage | undefined): string | undefined {
  return request === undefined ? undefined : renewals.get(request)
}
