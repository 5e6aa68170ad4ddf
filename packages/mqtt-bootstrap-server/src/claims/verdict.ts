/**
 * The handler's `verify` step (handler.ts, issue 14): a claim judged by the verifier between reading the body and
 * `resolve`, with the abuse limits around it, and a refusal held to the contract before it is answered (a code of
 * its own or `"77777"`, HTTP 200 or 4xx/5xx, a whole Retry-After): a verifier of one's own that breaks these is the
 * server's failure (`"77777"`, told to `onError`), never an answer the device cannot read.
 */
import type { IncomingMessage } from 'node:http'
import { ResultCode } from 'mqtt-bootstrap/contract'
import type { Reply } from '../http-answer.js'
import { refusalCodeProblem } from '../refusal-codes.js'
import { type ClaimGate, carriesSignature } from './limits.js'
import { type ClaimVerifier, recordVerifiedClaim } from './verify.js'

const RAW_BODY_NEEDED =
  'verify needs the body as received, to check its Content-Digest: the body was read before the handler; pass it ' +
  'as a Buffer or string third argument, or keep it as request.rawBody (Buffer or string)'

/** One claim as the handler has it: `body` its bytes, `undefined` when whoever read them kept none. */
export interface ReadClaim {
  request: IncomingMessage
  body: Buffer | undefined
  data: unknown
}

/**
 * The answer when the claim is refused (or limited), else whether its signature verified (`signed`: its key id is
 * noted for `verifiedKeyId`, and the limits never hold it back).
 */
export async function judgeClaim(
  verify: ClaimVerifier,
  claim: ReadClaim,
  gate: ClaimGate | undefined,
): Promise<{ reply: Reply } | { signed: boolean }> {
  const { request, body, data } = claim
  if (body === undefined) throw new TypeError(RAW_BODY_NEEDED)
  // Over the limit, a request with no signature at all cannot be a valid claim: answered at once.
  const early = carriesSignature(request) ? undefined : await gate?.limited()
  if (early !== undefined) return { reply: early }
  const verdict = await verify({ request, body, data })
  if (verdict.ok) {
    if (verdict.keyId !== undefined) recordVerifiedClaim(request, verdict.keyId)
    return { signed: verdict.keyId !== undefined }
  }
  // Nothing but the code: no configuration, no hint whether the identity exists.
  const { code, status, retryAfterSeconds: after } = verdict
  if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
    throw new TypeError(`verify() refused with a retryAfterSeconds that is not a whole number of seconds`)
  }
  // 200 with any code is the contract too (the seed's servers refuse with 200).
  if (!(status === 200 || (Number.isInteger(status) && status >= 400 && status <= 599))) {
    throw new TypeError(`verify() refused with HTTP status ${String(status)}, not 200, 4xx or 5xx`)
  }
  const problem = code === ResultCode.TRANSIENT ? undefined : refusalCodeProblem(code)
  if (problem !== undefined) throw new TypeError(`verify() refused with a code that ${problem}`)
  const limited = await gate?.refused(code)
  if (limited !== undefined) return { reply: limited }
  return { reply: [status, { code }, after === undefined ? {} : { 'retry-after': String(after) }] }
}
