/**
 * The checker's signed-claim checks (issue 14, DESIGN.md "Authenticated claims"): with the known device's key, it signs
 * that device's claim as the device does (signClaim), then tries what an attacker who knows the identity would: no
 * signature, the same signed request again, the body changed after signing, another device's key. Each must be
 * refused with the contract's code and HTTP 401, and the refusal must carry no configuration.
 */
import { randomBytes } from 'node:crypto'
import type { HttpResponse } from 'mqtt-bootstrap'
import { InvalidOptionError, ProvisioningError } from 'mqtt-bootstrap'
import {
  type ClaimHeaders,
  type ClaimKey,
  checkKeyId,
  interpretAnswer,
  keyBytes,
  parseBody,
  signClaim,
} from 'mqtt-bootstrap/contract'

/** A device's key, as the device's `attestation` option takes it: bytes, or their base64. */
export interface CheckKey {
  /** The key id the device signs with: its claimed identity (e.g. its IMEI). */
  keyId: string
  key: string | Uint8Array
}

export interface CheckAttestation extends CheckKey {
  /**
   * Another device's key (e.g. derived from the group key for the unknown identity): the unknown device's claim is
   * signed with it, and the server must refuse it when it signs a claim of the known identity. Without it, a random key
   * stands for another device's, and that check is skipped.
   */
  other?: CheckKey
}

export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip'

/** The claim checks, in report order (listed only when the checker has a key). */
export const CLAIM_CHECKS = Object.freeze({
  unsigned: 'refuses an unsigned claim ("10004", HTTP 401)',
  replay: 'refuses a replayed claim, the same signed request again ("10005", HTTP 401)',
  tampered: 'refuses a signed claim whose body changed after signing ("10004", HTTP 401)',
  otherKey: 'refuses the known identity signed with a key that is not its own ("10004", HTTP 401)',
  foreignKeyId: 'refuses another device\'s valid signature over the known identity\'s claim ("10004", HTTP 401)',
} as const)

export type ClaimCheckId = keyof typeof CLAIM_CHECKS

type Posted = { response: HttpResponse; error?: undefined } | { response?: undefined; error: Error }

export interface ClaimContext {
  url: URL
  /** The known device's body, as signed and sent. */
  body: string
  key: ClaimKey
  other: ClaimKey | undefined
  /** The known device's signed request's claim headers, to send again. */
  sent: ClaimHeaders
  /** Whether the known device's signed claim was answered `"00000"`: without that, a refusal proves nothing. */
  accepted: boolean
  post(payload: string, headers: Record<string, string>): Promise<Posted>
  record(id: ClaimCheckId, status: CheckStatus, detail: string): void
}

/** The checker's `attestation` option as signing keys; an InvalidOptionError (never quoting a key) for a bad one. */
export function claimKeys(attestation: CheckAttestation): { key: ClaimKey; other: ClaimKey | undefined } {
  if (typeof attestation !== 'object' || attestation === null) {
    throw new InvalidOptionError('attestation', 'Expected `attestation` to be an object { keyId, key }')
  }
  const { other } = attestation
  return {
    key: claimKey(attestation, 'attestation'),
    other: other === undefined ? undefined : claimKey(other, 'attestation.other'),
  }
}

/** The rules the device applies to its own `attestation` (keys canonical base64 or bytes; key ids printable ASCII). */
function claimKey({ keyId, key }: CheckKey, option: string): ClaimKey {
  return { keyId: checkKeyId(keyId, `${option}.keyId`), key: keyBytes(key, `${option}.key`) }
}

/** The claim headers of one request, signed now. */
export const signed = (key: ClaimKey, url: URL, body: string): Promise<ClaimHeaders> =>
  signClaim(key, { method: 'POST', url, body }, Date.now())

/** A hint for the known device's refusal: what a claim code says about the checker's own key or the server's. */
export function claimHint(code: string, signedClaim: boolean): string {
  if (code === '10004') {
    return signedClaim
      ? ": the server refused the device's signature (is the key the device's, derived for this key id?)"
      : ': the server wants a signed claim: give the device key (--key-file, --group-key-file; option attestation)'
  }
  if (code === '10005') return ": a claim out of its time window (is this clock, or the server's, far off?)"
  return ''
}

export async function checkClaims(context: ClaimContext): Promise<void> {
  const { url, body, key, other, sent, post, record } = context
  if (!context.accepted) {
    for (const id of Object.keys(CLAIM_CHECKS) as ClaimCheckId[]) {
      record(id, 'skip', "not checked: the known device's signed claim was not accepted")
    }
    return
  }
  // First, while the claim is fresh: only its nonce makes it a replay.
  const replay = await post(body, { ...sent })
  record('replay', ...judge(replay, '10005', 'the same signed request'))
  record('unsigned', ...judge(await post(body, {}), '10004', 'an unsigned claim'))

  // JSON allows white space after the value: the same data, the same identity, only the digest tells the change.
  const padded = `${body}\n`
  const headers = await signed(key, url, padded)
  record('tampered', ...judge(await post(`${body} `, { ...headers }), '10004', 'a body changed after signing'))

  const stranger = other?.key ?? randomBytes(32)
  const withOtherKey = await signed({ keyId: key.keyId, key: stranger }, url, body)
  const otherWhat = other === undefined ? 'a random key' : `the key of ${other.keyId}`
  record(
    'otherKey',
    ...judge(await post(body, { ...withOtherKey }), '10004', `the known identity signed with ${otherWhat}`),
  )

  if (other === undefined) {
    record('foreignKeyId', 'skip', "needs another device's key (the group key: --group-key-file; attestation.other)")
  } else {
    const foreign = await signed(other, url, body)
    record(
      'foreignKeyId',
      ...judge(await post(body, { ...foreign }), '10004', `the known identity's claim signed by ${other.keyId}`),
    )
  }
}

/** A refusal with `code` and HTTP 401 and nothing else passes; how it failed otherwise, named (never a secret). */
function judge(posted: Posted, code: '10004' | '10005', what: string): [CheckStatus, string] {
  if (posted.error !== undefined) return ['fail', `no answer to ${what}: ${posted.error.message}`]
  const { response } = posted
  const outcome = interpretAnswer(response, Date.now())
  if (!(outcome instanceof ProvisioningError)) {
    return ['fail', `answered "00000" to ${what}: whoever knows the identity gets its configuration`]
  }
  if (outcome.code !== 'ERR_PROVISION_REFUSED') return ['fail', `${what}: ${outcome.message}`]
  const problems: string[] = []
  if (outcome.resultCode !== code) problems.push(`code "${outcome.resultCode}", not "${code}"`)
  if (response.status !== 401) problems.push(`HTTP ${response.status}, not 401`)
  if (carriesConfiguration(response.body)) problems.push('the refusal carries a configuration')
  if (problems.length > 0) return ['fail', `${what}: ${problems.join('; ')}`]
  return ['pass', `"${code}" (HTTP 401) to ${what}`]
}

function carriesConfiguration(text: string): boolean {
  try {
    const json = parseBody(text)
    return typeof json === 'object' && json !== null && 'result' in json
  } catch {
    return false
  }
}
