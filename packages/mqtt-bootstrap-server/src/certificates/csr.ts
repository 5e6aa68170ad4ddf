/**
 * A device's PKCS#10 certificate request (RFC 2986), judged before anything is signed for it: PEM, parsed with
 * @peculiar/asn1-csr, its self-signature verified by node:crypto over the exact bytes signed (which proves the sender
 * holds the key), and its key one a device may have: P-256 with ecdsa-with-SHA256, or RSA of 2048 to 8192 bits with
 * sha256WithRSAEncryption. What the request asks for besides its key (a subject, extensions such as CA:TRUE) is never
 * read: the issuer decides those. Problems name what is wrong, never quote the request.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto'
import { asn1, encode } from './asn1.js'

/** Longest CSR accepted, in bytes of PEM: an RSA-8192 request is about 5 KiB. */
export const MAX_CSR_BYTES = 8 * 1024

/** A certificate request whose signature verified: the key to certify, nothing else from it. */
export interface CertificateRequest {
  /** The requested key (its SPKI, as node:crypto verified it). */
  readonly publicKey: KeyObject
  /** `'p256'` or `'rsa'` (2048 to 8192 bits). */
  readonly keyType: 'p256' | 'rsa'
}

/** A CSR judged: the request to issue for, or why it cannot be used (answered `"10008"`). */
export type CertificateRequestCheck = { ok: true; request: CertificateRequest } | { ok: false; problem: string }

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2'
const SHA256_WITH_RSA = '1.2.840.113549.1.1.11'
const MIN_RSA_BITS = 2048
/** Larger keys cost the server more to verify and the device far more to make: no device sends one. */
const MAX_RSA_BITS = 8192

/**
 * One PEM block and white space around it; the body base64 and line breaks only (linear: no '-' inside). No flags,
 * so that it is a JSON Schema pattern too (schema.ts), meaning the same with or without the u flag.
 */
export const PEM = /^\s*-----BEGIN CERTIFICATE REQUEST-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE REQUEST-----\s*$/

const refused = (problem: string): CertificateRequestCheck => ({ ok: false, problem })

/** Judge the `csr` field of a request (any JSON value). */
export function checkCertificateRequest(value: unknown): CertificateRequestCheck {
  if (typeof value !== 'string') return refused('is not a string (a PEM CERTIFICATE REQUEST)')
  if (Buffer.byteLength(value) > MAX_CSR_BYTES) return refused(`is over ${MAX_CSR_BYTES} bytes`)
  const body = PEM.exec(value)?.[1]?.replace(/\s+/g, '')
  const der = body === undefined ? undefined : Buffer.from(body, 'base64')
  // Canonical base64 only: what decodes must be what was sent.
  if (der === undefined || der.length === 0 || der.toString('base64') !== body) {
    return refused('is not one PEM block "-----BEGIN CERTIFICATE REQUEST-----" of base64')
  }
  const { asn1js, csr, schema } = asn1()
  const parsed = asn1js.fromBER(Uint8Array.from(der).buffer)
  // Nothing after the request: asn1-schema alone would ignore trailing bytes.
  if (parsed.offset !== der.length) return refused('is not a PKCS#10 request (it does not parse as DER)')
  let request: InstanceType<typeof csr.CertificationRequest>
  try {
    request = schema.AsnParser.fromASN(parsed.result, csr.CertificationRequest)
  } catch {
    return refused('is not a PKCS#10 request (it does not parse)')
  }
  const signed = request.certificationRequestInfoRaw
  if (request.certificationRequestInfo.version !== 0 || signed === undefined) {
    return refused('is not a PKCS#10 version 1 request')
  }
  let publicKey: KeyObject
  try {
    const spki = encode(request.certificationRequestInfo.subjectPKInfo)
    publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' })
  } catch {
    return refused('holds a public key that does not parse')
  }
  const keyType = acceptedKey(publicKey)
  if (keyType === undefined) {
    return refused(
      `holds a ${describeKey(publicKey)} key: a P-256 key, or RSA of ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits`,
    )
  }
  const { algorithm, parameters } = request.signatureAlgorithm
  const expected = keyType === 'p256' ? ECDSA_WITH_SHA256 : SHA256_WITH_RSA
  // ecdsa-with-SHA256 has no parameters (RFC 5758); sha256WithRSAEncryption NULL (asn1-schema reads it as null), or
  // none, as some encoders write.
  const none = parameters === undefined
  if (algorithm !== expected || (keyType === 'p256' ? !none : !(none || parameters === null))) {
    const name = keyType === 'p256' ? 'ecdsa-with-SHA256' : 'sha256WithRSAEncryption'
    return refused(`is signed with another algorithm than ${name} (for its ${describeKey(publicKey)} key)`)
  }
  let valid = false
  try {
    const key = keyType === 'p256' ? { key: publicKey, dsaEncoding: 'der' as const } : publicKey
    valid = verify('sha256', Buffer.from(signed), key, Buffer.from(request.signature))
  } catch {
    valid = false
  }
  if (!valid) return refused('has a signature that does not verify with its own key')
  return { ok: true, request: Object.freeze({ publicKey, keyType }) }
}

function acceptedKey(key: KeyObject): CertificateRequest['keyType'] | undefined {
  const details = key.asymmetricKeyDetails ?? {}
  if (key.asymmetricKeyType === 'ec') return details.namedCurve === 'prime256v1' ? 'p256' : undefined
  if (key.asymmetricKeyType !== 'rsa') return undefined
  const bits = details.modulusLength ?? 0
  // An exponent of 1 makes any padded hash a "signature" (OpenSSL takes it): the self-signature would prove nothing.
  // 65537 is what every key generator uses; an odd one of at least 3 is what RSA needs.
  const exponent = details.publicExponent ?? 0n
  if (exponent < 3n || exponent % 2n === 0n) return undefined
  return bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS ? 'rsa' : undefined
}

/** `P-384`, `RSA 1024-bit`, `ed25519`: for a problem message. */
export function describeKey(key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {}
  if (key.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve
    const names: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }
    return `EC ${curve === undefined ? '(explicit curve)' : (names[curve] ?? curve)}`
  }
  if (key.asymmetricKeyType === 'rsa') {
    const exponent = details.publicExponent
    const odd =
      exponent !== undefined && (exponent < 3n || exponent % 2n === 0n) ? ` (public exponent ${exponent})` : ''
    return `RSA ${details.modulusLength ?? '?'}-bit${odd}`
  }
  return String(key.asymmetricKeyType)
}
