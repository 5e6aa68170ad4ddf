/**
 * The device's own key pair and its certificate request (issue 17): the private key is made on the device and never
 * leaves it; the server sees only the PKCS#10 request, which proves the device holds the key.
 *
 * node:crypto makes the key and signs; @peculiar/asn1-csr (asn1.ts) encodes the request. Nothing here is
 * hand-written cryptography: the ASN.1 is built from the library's classes, and the signature is node:crypto's
 * DER-encoded ECDSA, which is what X.509 expects in a signature BIT STRING (RFC 5758 section 3.2).
 */
import type { KeyObject } from 'node:crypto'
import { InvalidOptionError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { loadAsn1 } from './asn1.js'
import type { KeyType } from './options.js'

export type { KeyType } from './options.js'

/** A key pair the device made. */
export interface DeviceKey {
  /** The private key, PKCS#8 PEM. A secret: it stays on the device (sealed in memory and in the store). */
  readonly privateKeyPem: string
  /** The public key, SubjectPublicKeyInfo DER: what the certificate must carry. */
  readonly publicKeyDer: Buffer
}

/** ecdsa-with-SHA256 (RFC 5758 section 3.2): its AlgorithmIdentifier has no parameters. */
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2'

/**
 * A new key pair of `keyType`, made by node:crypto off the main thread (generateKeyPair, not its Sync twin: a boot
 * keeps the event loop free for the app).
 * @throws InvalidOptionError (a TypeError) for a key type other than `'p256'`
 */
export async function createDeviceKey(keyType: KeyType): Promise<DeviceKey> {
  if (keyType !== 'p256') {
    throw new InvalidOptionError('certificate.keyType', "Expected `certificate.keyType` to be 'p256'")
  }
  const crypto = nodeCrypto()
  return new Promise<DeviceKey>((resolve, reject) => {
    crypto.generateKeyPair('ec', { namedCurve: 'P-256' }, (error, publicKey, privateKey) => {
      if (error) return reject(error)
      resolve({
        privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
        publicKeyDer: publicKey.export({ type: 'spki', format: 'der' }),
      })
    })
  })
}

/**
 * A PKCS#10 certificate request (PEM, "CERTIFICATE REQUEST") for `key`: version 0, an empty subject (the server sets
 * it from its registry: CN = deviceName), no attributes, signed with ecdsa-with-SHA256.
 * Loads `@peculiar/asn1-csr` on the first call.
 * @throws DependencyError (`ERR_DEPENDENCY_MISSING`) when `@peculiar/asn1-csr` is not installed
 * @throws TypeError when `key` is not a P-256 key pair whose halves match (messages never quote the key)
 */
export function createCertificateRequest(key: DeviceKey): string {
  const { csr, schema, x509 } = loadAsn1()
  const crypto = nodeCrypto()
  let privateKey: KeyObject
  try {
    privateKey = crypto.createPrivateKey(key.privateKeyPem)
  } catch {
    // No cause: Node's decoder errors add nothing here, and nothing of the caller's argument goes into the error.
    throw new TypeError('Expected the device key to be a PKCS#8 PEM private key')
  }
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new TypeError('Expected the device key to be a P-256 key')
  }
  // A request for a public key the private key does not match would be refused by the server for a bad signature,
  // which says nothing of why: a store that kept one half of another pair.
  const publicKeyDer = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' })
  if (!(key.publicKeyDer instanceof Uint8Array) || !publicKeyDer.equals(key.publicKeyDer)) {
    throw new TypeError('Expected the device key to have the public key of its private key')
  }
  const info = new csr.CertificationRequestInfo({
    version: 0,
    subject: new x509.Name([]),
    subjectPKInfo: schema.AsnConvert.parse(key.publicKeyDer, x509.SubjectPublicKeyInfo),
  })
  const signed = Buffer.from(schema.AsnConvert.serialize(info))
  const request = new csr.CertificationRequest({
    certificationRequestInfo: info,
    signatureAlgorithm: new x509.AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 }),
    signature: new Uint8Array(crypto.sign('sha256', signed, privateKey)).buffer,
  })
  return pem('CERTIFICATE REQUEST', Buffer.from(schema.AsnConvert.serialize(request)))
}

/** `der` as a PEM block (RFC 7468): base64 in lines of 64 characters. */
function pem(label: string, der: Buffer): string {
  const base64 = der.toString('base64')
  const lines: string[] = []
  for (let at = 0; at < base64.length; at += 64) lines.push(base64.slice(at, at + 64))
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`
}
