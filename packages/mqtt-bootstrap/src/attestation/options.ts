/**
 * The `attestation` option (bootstrap and PointAccess), resolved next to its checks. The resolved form holds the key
 * in a `#private` field, which util.inspect never shows and JSON.stringify never sees: the resolved options are
 * inspectable objects, and they are logged and printed (`[Attestation keyId="…"]` is all they show of it).
 */
import { checkKnown, fail, isPlainObject, typeName } from '../option-checks.js'
import { checkKeyId, keyBytes } from './key.js'
import { type ClaimHeaders, type ClaimRequest, signClaim } from './sign.js'

/** Sign every provisioning request (RFC 9421, hmac-sha256) with the device's key. */
export interface AttestationOptions {
  /** The key's id: the identity the device claims (its IMEI, serial, …), as the server's `identity(data)` names it. */
  keyId: string
  /** The HMAC key: its bytes (Buffer, Uint8Array), or their base64 (what `deriveDeviceKey` and `keys derive` give). */
  key: string | Uint8Array
}

const ATTESTATION_OPTIONS: ReadonlySet<string> = new Set(['keyId', 'key'])

/** A checked `attestation` option: it signs claims, and shows only its key id. */
export class ResolvedAttestation {
  readonly keyId: string
  readonly #key: Buffer

  constructor(keyId: string, key: Buffer) {
    this.keyId = keyId
    this.#key = key
  }

  /** The Content-Digest, Signature-Input and Signature of one request: a fresh nonce, `created` from `nowMs`. */
  sign(request: ClaimRequest, nowMs: number): Promise<ClaimHeaders> {
    return signClaim({ keyId: this.keyId, key: this.#key }, request, nowMs)
  }

  toJSON(): { keyId: string } {
    return { keyId: this.keyId }
  }

  toString(): string {
    return `[Attestation keyId=${JSON.stringify(this.keyId)}]`
  }
}

/**
 * The `attestation` option, checked (names prefixed `attestation.` in errors): `undefined` when not given. A resolved
 * one comes back as it is.
 */
export function resolveAttestation(value: unknown): ResolvedAttestation | undefined {
  if (value === undefined || value instanceof ResolvedAttestation) return value
  if (!isPlainObject(value)) fail('attestation', 'an object { keyId, key }', typeName(value))
  checkKnown(value, ATTESTATION_OPTIONS, 'attestation.')
  const keyId = checkKeyId(value.keyId, 'attestation.keyId')
  return new ResolvedAttestation(keyId, keyBytes(value.key, 'attestation.key'))
}

/**
 * PointAccess's options split: its `attestation`, resolved, and the transport options that remain (the options
 * themselves when there is no `attestation` field, so that a non-object still fails as `options`).
 */
export function splitAttestation<T extends object>(
  options: T & { attestation?: unknown },
): [ResolvedAttestation | undefined, Omit<T, 'attestation'>] {
  if (!isPlainObject(options) || !Object.hasOwn(options, 'attestation')) return [undefined, options]
  const { attestation, ...rest } = options
  return [resolveAttestation(attestation), rest]
}
