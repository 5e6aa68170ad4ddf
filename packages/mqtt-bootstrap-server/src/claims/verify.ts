/**
 * Verifying signed claims (DESIGN.md "Authenticated claims", issue 14): knowing a device's identity is not enough to
 * take its configuration, the request must carry an RFC 9421 HTTP Message Signature made with the device's key.
 *
 * What is accepted, exactly: one signature (any label), covering exactly `"@method"`, `"@target-uri"` and
 * `"content-digest"` (no component parameters), with `alg="hmac-sha256"`, a `keyid` equal to the identity the body
 * claims, a `nonce` of 16+ bytes in base64url, and a `created` within `maxSkewSeconds` of now. The RFC 9530
 * Content-Digest (`sha-256`) must be the digest of the body's bytes as received. The signature fields are parsed with
 * `structured-headers` and the base built for those three components (signature.ts); the time window and the nonce
 * are checked with the verifier's own clock and store, the nonce only once the signature holds (a forged claim must
 * not use one up).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { CLAIM_ALG, CLAIM_COMPONENTS, keyBytes, MAX_KEY_ID_LENGTH } from 'mqtt-bootstrap/contract'
import { checkOrigin, digestMatches, hostMatcher, targetUri } from './message.js'
import { MemoryNonceStore, type NonceStore, NonceStoreFullError } from './nonces.js'
import { readSignature, signatureBase } from './signature.js'
import { type ClientCertificateOptions, certificateJudge } from './x509.js'

/** The refusal codes of signed claims (DESIGN.md), both answered with HTTP 401 and a body of `{ code }` only. */
export const CLAIM_CODES = Object.freeze({
  /** No signature, an invalid one, a keyid that is not the claimed identity, a tampered body, an unknown key. */
  INVALID_SIGNATURE: '10004',
  /** A nonce seen before, or a `created` outside the window: a replay or a device clock far off. */
  STALE_CLAIM: '10005',
})

/** One request to judge: the raw body's bytes (what Content-Digest covers) and the JSON they parsed to. */
export interface Claim {
  request: IncomingMessage
  body: Buffer
  data: unknown
}

/**
 * A verifier's decision: go on to `resolve` (with the key id verified, when a signature was), or answer `code` with
 * HTTP `status` (and a Retry-After when given).
 */
export type ClaimVerdict =
  | { ok: true; keyId?: string }
  | { ok: false; code: string; status: number; retryAfterSeconds?: number }

/**
 * What `createProvisioningHandler({ verify })` takes. A rejected promise is a transient failure of the server
 * (`"77777"`, HTTP 500, told to `onError`), never a refusal.
 */
export type ClaimVerifier = (claim: Claim) => Promise<ClaimVerdict>

/** A device key: bytes, or a base64 string of them (what `deriveDeviceKey` returns). */
export type DeviceKey = string | Uint8Array

export interface SignedClaimsOptions {
  /**
   * The key of the device whose key id (its claimed identity) this is, derived from a group key or looked up;
   * `undefined` for none. May be async; a rejection is a transient failure (`"77777"`). Called only with a key id
   * equal to the identity the body claims.
   */
  keyFor(keyId: string): DeviceKey | undefined | Promise<DeviceKey | undefined>
  /**
   * The identity the request's data claims, e.g. `(data) => data.imei`, or the name of that field (`'imei'`). Anything
   * but a non-empty string (a number included: a registry tells `1` from `"1"`, a key id cannot) is no identity, and
   * the claim is refused with `"10004"`; so is an exception.
   */
  identity: string | ((data: unknown) => unknown)
  /** How far `created` may be from now, either way, in seconds; a nonce is remembered that long after it. @default 300 */
  maxSkewSeconds?: number
  /** Where nonces are remembered. @default new MemoryNonceStore() (one process) */
  nonces?: NonceStore
  /** Where now comes from (epoch ms). @default Date */
  clock?: { now(): number }
  /**
   * The public origin devices call, e.g. `https://provision.example.com` (behind a proxy or a load balancer that ends
   * TLS). Without it the `@target-uri` is rebuilt from the connection: `https` over TLS (`http` otherwise), the Host
   * header, and the request's path and query as received.
   */
  origin?: string
  /**
   * The hosts this server answers to, e.g. its certificate's names (`serve` gives them): a name or address (any
   * port), `name:port`, or `*.domain` (one label more). A claim whose `@target-uri` names another host, by its
   * request's Host header, is refused with `"10004"`, so a claim meant for another server (staging, another
   * instance) cannot be replayed here. Without it, or `origin`, a claim is bound to whatever Host its request names.
   * @default any
   */
  hosts?: readonly string[]
  /**
   * X.509 claims (claims/x509.ts): a request without a signature is judged by its mutual-TLS client certificate, which
   * must chain to `ca` (the factory CA), be valid by `clock`, and name the claimed identity (`subject`: its CN by
   * default, or a subjectAltName kind); a request with a signature is judged by it alone. The server must ask for the
   * certificate (`requestCert: true`; `rejectUnauthorized: false` lets devices without one sign instead). For a fleet
   * of certificates only, `keyFor: () => undefined`. @default none (a signature is the only proof)
   */
  clientCertificate?: ClientCertificateOptions
}

/** The key id each request's claim was verified with, by the handler, for `resolve` and the registries. */
const verifiedClaims = new WeakMap<IncomingMessage, string>()

/** The handler's note that `request`'s claim passed its verifier. Not exported from the package. */
export function recordVerifiedClaim(request: IncomingMessage, keyId: string): void {
  verifiedClaims.set(request, keyId)
}

/**
 * The key id (the claimed identity) that `request`'s claim was verified with by the handler's `verify`, or
 * `undefined` when it was not: what a `resolve` may rely on, e.g. to refuse a request whose claim nobody verified.
 */
export function verifiedKeyId(request: IncomingMessage | undefined): string | undefined {
  return request === undefined ? undefined : verifiedClaims.get(request)
}

export const SIGNED_CLAIMS_DEFAULTS = Object.freeze({ maxSkewSeconds: 300 })

/** base64url of 16 bytes or more (22 characters); at most 128 characters, so that a store entry stays small. */
const NONCE = /^[A-Za-z0-9_-]{22,128}$/

const refuse = (code: string): ClaimVerdict => ({ ok: false, code, status: 401 })

/** A verifier of signed claims for `createProvisioningHandler({ resolve, verify })`. */
export function signedClaims(options: SignedClaimsOptions): ClaimVerifier {
  const { keyFor, maxSkewSeconds = SIGNED_CLAIMS_DEFAULTS.maxSkewSeconds, clock = Date } = options
  if (typeof keyFor !== 'function') throw new TypeError('Expected `keyFor` to be a function')
  const identityOf = identityReader(options.identity)
  if (!(Number.isFinite(maxSkewSeconds) && maxSkewSeconds > 0)) {
    throw new TypeError(`Expected \`maxSkewSeconds\` to be a positive number, got ${String(maxSkewSeconds)}`)
  }
  if (typeof clock?.now !== 'function') throw new TypeError('Expected `clock` to have a now() method')
  const certified =
    options.clientCertificate === undefined ? undefined : certificateJudge(options.clientCertificate, clock)
  const nonces = options.nonces ?? new MemoryNonceStore({ clock })
  if (typeof nonces?.remember !== 'function') throw new TypeError('Expected `nonces` to have a remember() method')
  const origin = options.origin === undefined ? undefined : checkOrigin(options.origin)
  if (options.hosts !== undefined && !Array.isArray(options.hosts)) {
    throw new TypeError('Expected `hosts` to be an array of host[:port]')
  }
  const named = options.hosts === undefined ? undefined : hostMatcher(options.hosts)
  // An identity without a key is checked against this one: the refusal costs the same as a bad signature's.
  const standIn = randomBytes(32)

  const verifier: ClaimVerifier = async ({ request, body, data }) => {
    const claimed = identityOf(data)
    const { signature: signatureHeader, 'signature-input': input } = request.headers
    if (certified !== undefined && signatureHeader === undefined && input === undefined) {
      // No nonce, no window: the TLS handshake was this connection's own, a recording of it cannot be replayed.
      const proven = certified(request)
      return proven !== undefined && proven === claimed
        ? { ok: true, keyId: proven }
        : refuse(CLAIM_CODES.INVALID_SIGNATURE)
    }
    const url = targetUri(request, origin)
    if (url === undefined || (named !== undefined && !named(new URL(url)))) {
      return refuse(CLAIM_CODES.INVALID_SIGNATURE)
    }
    const signature = readSignature(input, signatureHeader)
    if (signature === undefined) return refuse(CLAIM_CODES.INVALID_SIGNATURE)
    const { params } = signature
    const [keyid, alg, nonce, created] = ['keyid', 'alg', 'nonce', 'created'].map((name) => params.get(name))
    if (
      !sameComponents(signature.components) ||
      alg !== CLAIM_ALG ||
      typeof keyid !== 'string' ||
      keyid.length > MAX_KEY_ID_LENGTH ||
      typeof nonce !== 'string' ||
      !NONCE.test(nonce) ||
      typeof created !== 'number' ||
      !Number.isSafeInteger(created)
    ) {
      return refuse(CLAIM_CODES.INVALID_SIGNATURE)
    }
    // A device must not claim another identity with its own key: another device's key is never asked for.
    const key = keyid === claimed ? deviceKeyBytes(await keyFor(keyid)) : undefined
    const digest = request.headers['content-digest']
    const base = signatureBase(signature, {
      '@method': request.method ?? '',
      '@target-uri': url,
      'content-digest': (Array.isArray(digest) ? digest.join(', ') : (digest ?? '')).trim(),
    })
    // Computed whatever the key: an unknown identity's refusal costs what a bad signature's does.
    const expected = createHmac('sha256', key ?? standIn)
      .update(base ?? '')
      .digest()
    const match = signature.signature.length === expected.length && timingSafeEqual(signature.signature, expected)
    if (!match || key === undefined || base === undefined || !digestMatches(digest, body)) {
      return refuse(CLAIM_CODES.INVALID_SIGNATURE)
    }
    const keyId = claimed as string // the signature verified with the claimed identity's key
    const now = clock.now()
    const expires =
      typeof params.get('expires') === 'number' ? (params.get('expires') as number) : Number.POSITIVE_INFINITY
    if (Math.abs(now / 1000 - created) > maxSkewSeconds || now / 1000 > expires) {
      return refuse(CLAIM_CODES.STALE_CLAIM)
    }
    // Remembered until `created` leaves the window (one second more: `created` is rounded down).
    const forgetAtMs = (created + maxSkewSeconds + 1) * 1000
    try {
      if (!(await nonces.remember(keyId, nonce, forgetAtMs))) return refuse(CLAIM_CODES.STALE_CLAIM)
    } catch (error) {
      if (!(error instanceof NonceStoreFullError)) throw error
      return { ok: false, code: '77777', status: 503, retryAfterSeconds: error.retryAfterSeconds }
    }
    return { ok: true, keyId }
  }
  identityReaders.set(verifier, identityOf)
  return verifier
}

/** Each `signedClaims` verifier's reader of the claimed identity: the abuse limits count failures per identity. */
const identityReaders = new WeakMap<ClaimVerifier, (data: unknown) => string | undefined>()

/** The identity reader of a `signedClaims` verifier (`undefined` for another function). Not exported from the package. */
export function claimedIdentityReader(verify: ClaimVerifier | undefined) {
  return verify === undefined ? undefined : identityReaders.get(verify)
}

/** What `identity` names as a non-empty string, or `undefined` (an exception too: the data is the client's). */
export function identityReader(identity: SignedClaimsOptions['identity']): (data: unknown) => string | undefined {
  let read: (data: unknown) => unknown
  if (typeof identity === 'string' && identity !== '') {
    read = (data) =>
      typeof data === 'object' && data !== null && Object.hasOwn(data, identity)
        ? (data as Record<string, unknown>)[identity]
        : undefined
  } else if (typeof identity === 'function') read = identity
  else throw new TypeError('Expected `identity` to be a function or the name of a field')
  return (data) => {
    try {
      const value = read(data)
      return typeof value === 'string' && value !== '' ? value : undefined
    } catch {
      return undefined // the data is the client's: a reader that cannot cope with it is a claim of no identity
    }
  }
}

/** The key's bytes (the device's rules: bytes, or canonical base64); a TypeError that never quotes the key. */
function deviceKeyBytes(key: DeviceKey | undefined): Buffer | undefined {
  if (key === undefined || key === null) return undefined
  try {
    return keyBytes(key, 'keyFor()')
  } catch {
    throw new TypeError('keyFor() returned neither bytes nor canonical base64 (the key is not shown)')
  }
}

function sameComponents(components: readonly string[]): boolean {
  return components.length === CLAIM_COMPONENTS.length && CLAIM_COMPONENTS.every((name) => components.includes(name))
}
