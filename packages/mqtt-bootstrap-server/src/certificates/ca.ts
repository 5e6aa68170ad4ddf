/**
 * The issuing CA, checked once when the issuer is made: a CA certificate (or a chain, the issuing CA first) and its
 * private key. Everything signing needs later is worked out here, so that a wrong file is a TypeError at start-up,
 * never a device's failed boot. Messages name `ca.cert` / `ca.key` and never quote the key.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto'
import { asn1 } from './asn1.js'
import { describeKey } from './csr.js'

/** The issuing CA as `issueCertificates` takes it. */
export interface IssuingCaOptions {
  /** The CA certificate, PEM; or a chain: the issuing CA first, then each certificate's issuer. */
  cert: string | Buffer
  /** The issuing CA's private key: PEM (PKCS#8, SEC1 or PKCS#1), or a KeyObject. Never logged or quoted. */
  key: string | Buffer | KeyObject
}

/** What signing needs, worked out once. */
export interface IssuingCa {
  /** The issuing CA, then the rest of the chain: sent after each leaf. */
  readonly chain: readonly X509Certificate[]
  readonly privateKey: KeyObject
  /** The signature algorithm's OID and DER parameters (none for ECDSA, NULL for RSA). */
  readonly algorithm: { oid: string; parameters: ArrayBuffer | undefined; ec: boolean }
  /** The CA's subject, its exact DER: the leaf's issuer. */
  readonly subject: Uint8Array
  /** The CA's subjectKeyIdentifier, for the leaf's authorityKeyIdentifier; `undefined` when it has none. */
  readonly keyIdentifier: Buffer | undefined
  readonly notAfter: number
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

const RSA_NULL = Uint8Array.of(0x05, 0x00).buffer

/** `ca` checked: a TypeError naming what is wrong otherwise. */
export function loadIssuingCa(ca: IssuingCaOptions | undefined, now: number): IssuingCa {
  if (typeof ca !== 'object' || ca === null) throw new TypeError('Expected `ca` to be an object { cert, key }')
  if (typeof ca.cert !== 'string' && !Buffer.isBuffer(ca.cert)) {
    throw new TypeError('Expected `ca.cert` to be the CA certificate (PEM)')
  }
  const blocks = ca.cert.toString().match(CERTIFICATE_BLOCK) ?? []
  if (blocks.length === 0) throw new TypeError('Expected `ca.cert` to hold a PEM certificate (no CERTIFICATE block)')
  const chain = blocks.map((block, index) => {
    try {
      return new X509Certificate(block)
    } catch {
      throw new TypeError(`Expected \`ca.cert\` to hold certificates that parse (certificate ${index + 1} does not)`)
    }
  })
  const [issuer] = chain as [X509Certificate, ...X509Certificate[]]
  // OpenSSL's own judgement (X509_check_ca): CA:TRUE, and keyCertSign when it has a keyUsage.
  if (!issuer.ca) {
    throw new TypeError('Expected `ca.cert` to be a CA certificate (CA:TRUE, and keyCertSign in any keyUsage)')
  }
  const privateKey = privateKeyOf(ca.key)
  if (!issuer.checkPrivateKey(privateKey)) throw new TypeError('Expected `ca.key` to be the private key of `ca.cert`')
  const type = privateKey.asymmetricKeyType
  if (type !== 'ec' && type !== 'rsa') {
    throw new TypeError(`Expected \`ca.key\` to be an EC or RSA key, not ${describeKey(privateKey)}`)
  }
  for (let index = 0; index + 1 < chain.length; index++) {
    const [child, parent] = [chain[index] as X509Certificate, chain[index + 1] as X509Certificate]
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new TypeError(
        `Expected \`ca.cert\` to be a chain, the issuing CA first: certificate ${index + 1} is not issued by ` +
          `certificate ${index + 2}`,
      )
    }
  }
  const notAfter = Date.parse(issuer.validTo)
  if (notAfter <= now) throw new TypeError(`Expected \`ca.cert\` to be valid now: it expired on ${issuer.validTo}`)
  const { keyIdentifier, subject } = readCa(issuer)
  return Object.freeze({
    chain: Object.freeze(chain),
    privateKey,
    algorithm:
      type === 'ec'
        ? { oid: '1.2.840.10045.4.3.2', parameters: undefined, ec: true }
        : { oid: '1.2.840.113549.1.1.11', parameters: RSA_NULL, ec: false },
    subject,
    keyIdentifier,
    notAfter,
  })
}

function privateKeyOf(key: IssuingCaOptions['key']): KeyObject {
  if (typeof key === 'object' && key !== null && !Buffer.isBuffer(key) && 'type' in key) {
    if (key.type !== 'private') throw new TypeError('Expected `ca.key` to be a private key')
    return key
  }
  if (typeof key !== 'string' && !Buffer.isBuffer(key)) throw new TypeError('Expected `ca.key` to be a private key')
  try {
    return createPrivateKey(key)
  } catch {
    // Not OpenSSL's message: it says little, and nothing here may quote the key.
    throw new TypeError('Expected `ca.key` to be a private key that parses (PEM; an encrypted key is not supported)')
  }
}

/** The CA's exact subject bytes and its key identifier. */
function readCa(certificate: X509Certificate): { subject: Uint8Array; keyIdentifier: Buffer | undefined } {
  const { asn1js, schema, x509 } = asn1()
  const { AsnConvert } = schema
  const parsed = AsnConvert.parse(certificate.raw, x509.Certificate)
  const extension = (id: string) => parsed.tbsCertificate.extensions?.find((item) => item.extnID === id)?.extnValue
  const ski = extension(x509.id_ce_subjectKeyIdentifier)
  const keyIdentifier =
    ski === undefined ? undefined : Buffer.from(AsnConvert.parse(ski, x509.SubjectKeyIdentifier).buffer)
  // TBSCertificate: [0] version (v2, v3), serialNumber, signature, issuer, validity, subject, …
  const root = asn1js.fromBER(Uint8Array.from(certificate.raw).buffer).result as InstanceType<typeof asn1js.Sequence>
  const tbs = root.valueBlock.value[0] as InstanceType<typeof asn1js.Sequence>
  const fields = tbs.valueBlock.value
  const versioned = fields[0]?.idBlock.tagClass === 3 && fields[0].idBlock.tagNumber === 0
  const subject = fields[versioned ? 5 : 4]?.valueBeforeDecodeView
  if (subject === undefined) throw new TypeError('Expected `ca.cert` to be an X.509 certificate (no subject)')
  return { subject: Uint8Array.from(subject), keyIdentifier }
}
