/**
 * Signing a claim: RFC 9421 HTTP Message Signatures over the provisioning request.
 *
 * The wire format is fixed by DESIGN.md "Authenticated claims": label `sig1`, `alg="hmac-sha256"`, covered components
 * `("@method" "@target-uri" "content-digest")`, parameters `created` (unix seconds), `nonce` (16 random bytes,
 * base64url) and `keyid`; `Content-Digest: sha-256=:<base64>:` (RFC 9530).
 *
 * The device builds the signature base itself (RFC 9421 §2.5: one line per component, then `@signature-params`) and
 * HMACs it with node:crypto: it signs a fixed set of components with values it made itself, so it parses nothing.
 * With `http-message-signatures` a signature cost the device about 130 µs among its requests, 10–30 ms to load on a
 * first boot and 286 kB of install; this costs 9 µs (docs/performance.md "Signed claims"). RFC 9421's own example
 * (Appendix B.2.5) is reproduced by this code, and http-message-signatures, now a test-only dependency, verifies what
 * it signs (test/attestation-rfc9421.test.ts, test/attestation-device.test.ts).
 */
import { InvalidOptionError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { checkKeyId } from './key.js'

export const CLAIM_LABEL = 'sig1'
export const CLAIM_ALG = 'hmac-sha256'
export const CLAIM_COMPONENTS: readonly string[] = Object.freeze(['@method', '@target-uri', 'content-digest'])
/** Random bytes in a nonce: 128 bits, so that two claims never share one (22 base64url characters). */
export const NONCE_BYTES = 16

/** What a claim is signed with: the device's key id (its claimed identity) and the HMAC key's bytes. */
export interface ClaimKey {
  keyId: string
  key: Uint8Array
}

/** The request a claim signature covers. */
export interface ClaimRequest {
  method: string
  url: URL | string
  /** The body exactly as it is sent. */
  body: string
}

/** The headers a signed claim adds to its request (lower-case names). */
export interface ClaimHeaders {
  'content-digest': string
  'signature-input': string
  signature: string
}

/** The names of the headers a signed claim sets: a caller's header of one of these names never replaces them. */
export const CLAIM_HEADERS: ReadonlySet<string> = new Set(['content-digest', 'signature-input', 'signature'])

/**
 * Sign one provisioning request: a fresh nonce each call, `created` from `nowMs` (the injected clock's now()).
 * Throws an InvalidOptionError for a bad key id or key (a resolved `attestation` option has passed both checks).
 */
export async function signClaim(attestation: ClaimKey, request: ClaimRequest, nowMs: number): Promise<ClaimHeaders> {
  const keyid = checkKeyId(attestation.keyId, 'attestation.keyId')
  const { key } = attestation
  if (!(key instanceof Uint8Array) || key.length === 0) {
    throw new InvalidOptionError('attestation.key', 'Expected `attestation.key` to be a non-empty Uint8Array')
  }
  const url = new URL(request.url)
  // Never sent in the request line or Host, so never covered: the server sees the target without them.
  url.hash = ''
  url.username = ''
  url.password = ''
  if (url.search === '') url.search = '' // `…/bootstrap?`: an empty query is not sent, so its `?` is not signed
  const digest = contentDigest(request.body)
  const nonce = nodeCrypto().randomBytes(NONCE_BYTES).toString('base64url')
  const signed = await signComponents({
    label: CLAIM_LABEL,
    method: request.method,
    url,
    headers: { 'content-digest': digest },
    components: CLAIM_COMPONENTS,
    params: [
      ['created', Math.floor(nowMs / 1000)],
      ['nonce', nonce],
      ['alg', CLAIM_ALG],
      ['keyid', keyid],
    ],
    key,
  })
  return { 'content-digest': digest, 'signature-input': signed.signatureInput, signature: signed.signature }
}

/** RFC 9530 Content-Digest of `body` (its UTF-8 bytes), sha-256: `sha-256=:<base64>:`. */
export function contentDigest(body: string | Uint8Array): string {
  return `sha-256=:${nodeCrypto().createHash('sha256').update(body).digest('base64')}:`
}

/** One message to sign over any components and parameters (what the RFC 9421 examples need beside claims). */
export interface ComponentsToSign {
  label: string
  method: string
  url: URL | string
  /** The message's fields, lower-case names. */
  headers: Readonly<Record<string, string>>
  components: readonly string[]
  /** The signature parameters in their order on the wire; `created`/`expires` in unix seconds. */
  params: ReadonlyArray<readonly [name: string, value: string | number]>
  /** HMAC-SHA256 key bytes. */
  key: Uint8Array
}

/** What signing gives: the two header values, and the signature base that was signed (for tests and debugging). */
export interface SignedComponents {
  signatureInput: string
  signature: string
  base: string
}

/**
 * The HMAC-SHA256 RFC 9421 signature of `message`: its signature base (§2.5), the Signature-Input and the Signature
 * (their values, `label=` first). Only the parameters given, in their order.
 */
export async function signComponents(message: ComponentsToSign): Promise<SignedComponents> {
  const url = typeof message.url === 'string' ? new URL(message.url) : message.url
  let base = ''
  for (const name of message.components) {
    base += `${sfString(name)}: ${componentValue(name, message.method, url, message.headers)}\n`
  }
  let params = `(${message.components.map(sfString).join(' ')})`
  for (const [name, value] of message.params) {
    params += `;${name}=${typeof value === 'number' ? sfInteger(value) : sfString(value)}`
  }
  base += `"@signature-params": ${params}`
  const signature = nodeCrypto().createHmac('sha256', message.key).update(base).digest('base64')
  return { signatureInput: `${message.label}=${params}`, signature: `${message.label}=:${signature}:`, base }
}

/** A component's value (RFC 9421 §2.1, §2.2): a derived one from the method and URL, else the field's, trimmed. */
function componentValue(name: string, method: string, url: URL, headers: Readonly<Record<string, string>>): string {
  switch (name) {
    case '@method':
      return method
    case '@target-uri':
      return url.href
    case '@authority':
      return url.host // lower-case, the scheme's default port left out, as WHATWG URL gives it
    case '@scheme':
      return url.protocol.slice(0, -1)
    case '@path':
      return url.pathname
    case '@query':
      return url.search === '' ? '?' : url.search
    case '@request-target':
      return `${url.pathname}${url.search}`
  }
  const value = headers[name]
  if (name.startsWith('@') || value === undefined) throw new Error(`cannot sign the component ${name}`)
  return value.trim()
}

/** An RFC 8941 sf-string: printable ASCII, `\\` and `"` escaped. */
function sfString(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new Error('an sf-string is printable ASCII')
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/** An RFC 8941 sf-integer (at most 15 digits). */
function sfInteger(value: number): string {
  if (!Number.isSafeInteger(value) || Math.abs(value) > 999_999_999_999_999) throw new Error('not an sf-integer')
  return String(value)
}
