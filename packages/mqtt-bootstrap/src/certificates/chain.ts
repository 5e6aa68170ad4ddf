/**
 * The certificate chain a provisioning answer carries (`result.device.certificate`, issue 17), checked before the
 * device keeps it: every block parses, the leaf is for the device's own key and valid now, and each certificate is
 * issued by the next. Whether the broker trusts the root is the broker's to say; this catches a server that answers
 * for another key, out of date, or with a chain in pieces, before the device caches it and connects with it.
 *
 * The chain comes from the network: the work is bounded (size, count), nothing throws, and a problem never quotes
 * the chain.
 */
import type { KeyObject, X509Certificate } from 'node:crypto'
import { nodeCrypto } from '../lazy.js'

/** The most certificates a chain may have: a leaf, its CA and a few above (Web PKI chains have 2 to 4). */
export const MAX_CHAIN_CERTIFICATES = 8

/** The longest chain, in bytes of PEM: a P-256 certificate is about 700, an RSA 4096 one about 2,000. */
export const MAX_CHAIN_BYTES = 32 * 1024

/** What {@link checkCertificateChain} found: the leaf's validity (epoch ms), or why the chain is not usable. */
export type ChainCheck = { ok: true; notBefore: number; notAfter: number } | { ok: false; problem: string }

const BEGIN = '-----BEGIN '
const DASHES = '-----'
const END = '-----END CERTIFICATE-----'
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

/**
 * How far ahead of the device's clock a new certificate's notBefore may be: a server's clock a little ahead, or an
 * issuer that does not backdate (openssl's `x509 -req` starts the validity at the second it signs). Without it, a
 * device a few seconds behind would take a fresh certificate for a bad answer, and never retry.
 */
export const NOT_BEFORE_SKEW_MS = 5 * 60_000

/**
 * Check the PEM chain `pem` (leaf first) for the device whose public key is `publicKeyDer` (SPKI DER), at `now`
 * (epoch ms), allowing the leaf's notBefore to be up to `skewMs` ahead of `now`. Never throws: any input is a result.
 */
export function checkCertificateChain(pem: string, publicKeyDer: Buffer, now: number, skewMs = 0): ChainCheck {
  try {
    return check(pem, publicKeyDer, now, skewMs)
  } catch {
    return problem('the certificate chain could not be checked')
  }
}

function check(pem: unknown, publicKeyDer: unknown, now: unknown, skewMs: number): ChainCheck {
  if (typeof pem !== 'string') return problem('the certificate chain is not a string')
  if (!(publicKeyDer instanceof Uint8Array)) return problem("the device's public key is not bytes")
  if (typeof now !== 'number' || !Number.isFinite(now)) return problem('the time to check at is not a number')
  if (pem.length > MAX_CHAIN_BYTES || Buffer.byteLength(pem) > MAX_CHAIN_BYTES) {
    return problem(`the certificate chain is longer than ${MAX_CHAIN_BYTES} bytes`)
  }
  const blocks = pemBlocks(pem)
  if (typeof blocks === 'string') return problem(blocks)
  if (blocks.length === 0) return problem('the certificate chain has no PEM certificate')
  const chain: X509Certificate[] = []
  for (const [index, der] of blocks.entries()) {
    const certificate = parse(der)
    if (certificate === undefined) return problem(`certificate ${index + 1} of the chain does not parse`)
    chain.push(certificate)
  }
  const leaf = chain[0]!
  const leafKey = publicKeyDerOf(leaf)
  if (leafKey === undefined) return problem("the certificate's public key does not parse")
  if (!leafKey.equals(publicKeyDer)) return problem("the certificate is not for the device's key")
  const notBefore = Date.parse(leaf.validFrom)
  const notAfter = Date.parse(leaf.validTo)
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) {
    return problem("the certificate's dates are unreadable")
  }
  if (now + skewMs < notBefore) return problem('the certificate is not valid yet')
  if (now > notAfter) return problem('the certificate has expired')
  for (let index = 0; index + 1 < chain.length; index++) {
    const subject = chain[index]!
    const issuer = chain[index + 1]!
    if (!issuer.ca) return problem(`certificate ${index + 2} of the chain is not a CA`)
    if (!subject.checkIssued(issuer) || !subject.verify(issuer.publicKey)) {
      return problem(`certificate ${index + 1} of the chain is not issued by certificate ${index + 2}`)
    }
  }
  return { ok: true, notBefore, notAfter }
}

/**
 * The DER of each CERTIFICATE block of `text`, or what is wrong: another kind of block (a private key sent by mistake
 * among them), a block cut short, base64 that is not, more than {@link MAX_CHAIN_CERTIFICATES}. Text between blocks
 * is allowed, as OpenSSL allows it (`openssl ca` writes a certificate's text dump before its PEM).
 */
function pemBlocks(text: string): Buffer[] | string {
  const ders: Buffer[] = []
  let at = 0
  for (;;) {
    const begin = text.indexOf(BEGIN, at)
    const between = text.slice(at, begin === -1 ? text.length : begin)
    if (between.includes(DASHES)) return 'the certificate chain has a malformed PEM boundary'
    if (begin === -1) return ders
    if (ders.length === MAX_CHAIN_CERTIFICATES) {
      return `the certificate chain has more than ${MAX_CHAIN_CERTIFICATES} certificates`
    }
    const labelEnd = text.indexOf(DASHES, begin + BEGIN.length)
    if (labelEnd === -1) return 'a PEM block of the certificate chain is cut short'
    if (text.slice(begin + BEGIN.length, labelEnd) !== 'CERTIFICATE') {
      return 'the certificate chain has a PEM block that is not a CERTIFICATE'
    }
    const end = text.indexOf(END, labelEnd + DASHES.length)
    if (end === -1) return 'a PEM block of the certificate chain is cut short'
    const body = text.slice(labelEnd + DASHES.length, end).replace(/[ \t\r\n]/g, '')
    if (body.length % 4 !== 0 || !BASE64.test(body)) {
      return `certificate ${ders.length + 1} of the chain is not base64`
    }
    ders.push(Buffer.from(body, 'base64'))
    at = end + END.length
  }
}

/** `der` as a certificate, or `undefined` when it is not exactly one (bytes after it are refused too). */
function parse(der: Buffer): X509Certificate | undefined {
  try {
    const certificate = new (nodeCrypto().X509Certificate)(der)
    return certificate.raw.equals(der) ? certificate : undefined
  } catch {
    return undefined
  }
}

const spki = (key: KeyObject): Buffer => key.export({ type: 'spki', format: 'der' })

/** A parsed certificate's public key (SPKI DER); `undefined` when OpenSSL cannot decode it (node throws then). */
function publicKeyDerOf(certificate: X509Certificate): Buffer | undefined {
  try {
    return spki(certificate.publicKey)
  } catch {
    return undefined
  }
}

const problem = (text: string): ChainCheck => ({ ok: false, problem: text })

/**
 * The public key (SPKI DER) of the PKCS#8 PEM private key `privateKeyPem`: what the device's certificate must carry.
 * @throws TypeError when `privateKeyPem` is not a PEM private key (the message never quotes it)
 */
export function publicKeyOf(privateKeyPem: string): Buffer {
  const crypto = nodeCrypto()
  let privateKey: KeyObject
  try {
    privateKey = crypto.createPrivateKey(privateKeyPem)
  } catch {
    throw new TypeError('Expected a PEM private key') // no cause: nothing of the key goes into the error
  }
  return spki(crypto.createPublicKey(privateKey))
}
