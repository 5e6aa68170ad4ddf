/**
 * Certificate issuing for the provisioning handler's `issue` option (issue 17, DESIGN.md "Certificates"): a device
 * sends a CSR for a key it made itself, and is answered a client certificate for that key, signed by the issuing CA.
 * The certificate says only what the server decides: the subject is the registry's deviceName (CN), never the CSR's,
 * and it is never a CA whatever the CSR asks for (its requested extensions are not read). Built as an X.509 v3
 * TBSCertificate with @peculiar/asn1-x509 and signed by node:crypto; node's X509Certificate checks the result against
 * the CA before it leaves. A request that comes with a certificate this issuer made, as its TLS client certificate,
 * is that device's renewal (issue 18, renewal.ts).
 */
import { createHash, type KeyObject, randomBytes, sign, X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { asn1, encode, rawName } from './asn1.js'
import { type IssuingCa, type IssuingCaOptions, loadIssuingCa } from './ca.js'
import { type CertificateRequest, type CertificateRequestCheck, checkCertificateRequest } from './csr.js'
import { type Renewal, renewalJudge } from './renewal.js'

/** The device a certificate is issued to, as the registry answered it. */
export interface CertificateTarget {
  productKey: string
  /** The certificate's subject CN. */
  deviceName: string
}

/**
 * What the handler's `issue` option takes: `issueCertificates(…)`, or an issuer of your own (a remote CA, an HSM).
 * `check` judges a request's `csr` before the registry is asked (a refusal there is `"10008"` and consumes nothing);
 * `issue` is asked once the registry answered the device, and a failure of it is the server's (`"77777"`, onError).
 */
export interface CertificateIssuer {
  /** The request to issue for, or the problem with the CSR (never quoting it). */
  check(csr: unknown): CertificateRequestCheck | Promise<CertificateRequestCheck>
  /** The PEM chain for the request's key: the leaf first, then the issuing CA and the rest of its chain. */
  issue(request: CertificateRequest, device: CertificateTarget): string | Promise<string>
  /**
   * The device a request's TLS client certificate proves, when it is a certificate of this issuer's (a renewal: EST's
   * re-enroll), else `undefined`; never throws for what a client sent (a throw is the server's `"77777"`). The handler
   * then asks no signature (the certificate is the proof) and answers only a configuration of that deviceName.
   * Optional: an issuer without it has no renewals, and a device's renewal is judged as any claim.
   */
  renewal?(request: IncomingMessage): Renewal | undefined
}

/** The options of {@link issueCertificates}. */
export interface IssueCertificatesOptions {
  /** The issuing CA: its certificate (or chain, the issuing CA first) and its private key. */
  ca: IssuingCaOptions
  /**
   * How long a certificate is valid, in seconds from its issue; never past the CA's own notAfter. `serve
   * --certificate-validity` defaults to 30 days. Required.
   */
  validitySeconds: number
  /** Where the issue time comes from. @default Date */
  clock?: { now(): number }
}

/** A certificate that could not be issued for a request that was fine (the CA expired since, a broken result). */
export class CertificateIssuingError extends Error {
  override name = 'CertificateIssuingError'
  readonly code = 'CERTIFICATE_ISSUING_FAILED'
}

/**
 * Devices' clocks (and the server's) are off by a little: a certificate valid from this long before its issue is
 * valid on a device whose clock is behind.
 */
const CLOCK_SKEW_MS = 5 * 60_000

/**
 * An issuer signing with `ca` (checked now: a TypeError for a certificate that is not a CA, a key that is not its
 * own, an expired CA, a bad `validitySeconds`). ECDSA with SHA-256 for an EC CA, sha256WithRSAEncryption for RSA.
 * Its `renewal` recognises the certificates it signed (a leaf of the issuing CA, valid by `clock`: renewal.ts).
 */
export function issueCertificates(options: IssueCertificatesOptions): CertificateIssuer {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('Expected issueCertificates() options { ca, validitySeconds }')
  }
  const { validitySeconds, clock = Date } = options
  if (!Number.isSafeInteger(validitySeconds) || validitySeconds <= 0) {
    throw new TypeError('Expected `validitySeconds` to be a positive whole number of seconds')
  }
  if (typeof clock?.now !== 'function') throw new TypeError('Expected `clock` to have a now() method')
  const ca = loadIssuingCa(options.ca, clock.now())
  const tail = ca.chain.map((certificate) => certificate.toString()).join('')
  return Object.freeze({
    check: checkCertificateRequest,
    renewal: renewalJudge(ca.chain[0] as X509Certificate, clock),
    issue(request: CertificateRequest, device: CertificateTarget): string {
      const leaf = signLeaf(ca, request.publicKey, request.keyType, device.deviceName, clock.now(), validitySeconds)
      return leaf.toString() + tail
    },
  })
}

function signLeaf(
  ca: IssuingCa,
  publicKey: KeyObject,
  keyType: CertificateRequest['keyType'],
  deviceName: string,
  now: number,
  validitySeconds: number,
): X509Certificate {
  if (typeof deviceName !== 'string' || deviceName === '') {
    throw new CertificateIssuingError('no deviceName to name the certificate after')
  }
  if (now >= ca.notAfter) {
    throw new CertificateIssuingError(`the issuing CA expired on ${new Date(ca.notAfter).toISOString()}`)
  }
  const { schema, x509 } = asn1()
  const spkiDer = publicKey.export({ type: 'spki', format: 'der' })
  const spki = schema.AsnConvert.parse(spkiDer, x509.SubjectPublicKeyInfo)
  // RFC 5280 4.2.1.2, method 1: the SHA-1 of the subjectPublicKey bits (what OpenSSL writes too).
  const keyId = createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest()
  const usage = x509.KeyUsageFlags.digitalSignature | (keyType === 'rsa' ? x509.KeyUsageFlags.keyEncipherment : 0)
  const extension = (extnID: string, critical: boolean, value: unknown) =>
    new x509.Extension({ extnID, critical, extnValue: new schema.OctetString(encode(value)) })
  const extensions = [
    extension(x509.id_ce_basicConstraints, true, new x509.BasicConstraints({ cA: false })),
    extension(x509.id_ce_keyUsage, true, new x509.KeyUsage(usage)),
    extension(x509.id_ce_extKeyUsage, false, new x509.ExtendedKeyUsage([x509.id_kp_clientAuth])),
    extension(x509.id_ce_subjectKeyIdentifier, false, new x509.SubjectKeyIdentifier(keyId)),
  ]
  if (ca.keyIdentifier !== undefined) {
    const keyIdentifier = new x509.KeyIdentifier(ca.keyIdentifier)
    extensions.push(
      extension(x509.id_ce_authorityKeyIdentifier, false, new x509.AuthorityKeyIdentifier({ keyIdentifier })),
    )
  }
  const algorithm = new x509.AlgorithmIdentifier({ algorithm: ca.algorithm.oid })
  if (ca.algorithm.parameters !== undefined) algorithm.parameters = ca.algorithm.parameters
  const commonName = new x509.AttributeTypeAndValue({
    type: '2.5.4.3', // id-at-commonName
    value: new x509.AttributeValue({ utf8String: deviceName }),
  })
  const tbs = new x509.TBSCertificate({
    version: x509.Version.v3,
    serialNumber: serialNumber(),
    signature: algorithm,
    issuer: rawName(ca.subject),
    validity: new x509.Validity({
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(Math.min(now + validitySeconds * 1000, ca.notAfter)),
    }),
    subject: new x509.Name([new x509.RelativeDistinguishedName([commonName])]),
    subjectPublicKeyInfo: spki,
    extensions: new x509.Extensions(extensions),
  })
  const signed = encode(tbs)
  const key = ca.algorithm.ec ? { key: ca.privateKey, dsaEncoding: 'der' as const } : ca.privateKey
  const signature = sign('sha256', signed, key)
  const certificate = new x509.Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm })
  certificate.signatureValue = Uint8Array.from(signature).buffer
  const leaf = new X509Certificate(encode(certificate))
  checkLeaf(leaf, ca, spkiDer)
  return leaf
}

/** What was signed, read back by node's X.509 parser (OpenSSL): issued by the CA, for the key, not a CA. */
function checkLeaf(leaf: X509Certificate, ca: IssuingCa, spki: Buffer): void {
  const [issuer] = ca.chain as [X509Certificate]
  const forKey = leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(spki)
  if (!leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey) || leaf.ca || !forKey) {
    throw new CertificateIssuingError('the certificate made does not verify against the issuing CA')
  }
}

/** 16 random bytes, positive and of full length (RFC 5280 4.1.2.2: at most 20 octets, unpredictable). */
function serialNumber(): ArrayBuffer {
  const bytes = randomBytes(16)
  bytes[0] = ((bytes[0] as number) & 0x7f) | 0x40
  return Uint8Array.from(bytes).buffer
}
