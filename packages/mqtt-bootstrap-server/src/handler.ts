/**
 * A reference provisioning request handler for node:http / node:https (and Express or Fastify, see the third
 * argument). It answers the wire contract of PointAccess: `{ code, result? }`, with `"00000"` and a configuration
 * checked by the same validation the device uses, or a refusal code checked against the contract too. With `verify`,
 * a claim is judged (its signature, DESIGN.md "Authenticated claims") between reading the body and `resolve`. With
 * `issue`, a request's CSR is judged before `resolve` and answered a certificate with the configuration (issue 17), and
 * a request whose TLS client certificate the issuer made is that device's renewal, its certificate the proof (issue 18).
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { type DeviceConfig, parseDeviceConfig, ResultCode } from 'mqtt-bootstrap/contract'
import {
  awaitingCertificate,
  BAD_CSR,
  checkIssuer,
  renewalOf,
  renewedAnswer,
  requestedCertificate,
  withCertificate,
  withoutCertificate,
} from './certificates/handler-step.js'
import type { CertificateIssuer } from './certificates/issue.js'
import { type ClaimLimiter, type ClaimLimitsOptions, claimGates } from './claims/limits.js'
import { type ReclaimOptions, reclaimRecorder } from './claims/reclaims.js'
import { judgeClaim } from './claims/verdict.js'
import { CLAIM_CODES, type ClaimVerifier } from './claims/verify.js'
import { answer, exchanges, NOT_JSON, parseJson, type Reply, rawBytes } from './http-answer.js'
import { refusalCodeProblem } from './refusal-codes.js'
import { RegistryUnavailableError } from './unavailable.js'

/** What `resolve` answers: the device's configuration, a refusal code, or `undefined` for an unknown device. */
export type Resolution = { device: Record<string, unknown>; connect: Record<string, unknown> } | { code: string }

/** With re-claims' `claims`, `onReclaim` and `clock` (claims/reclaims.ts: a verified identity served again). */
export interface ProvisioningHandlerOptions extends ReclaimOptions {
  /** Map the request's data (the parsed JSON body) to a configuration or a refusal. */
  resolve(data: unknown, request: IncomingMessage): Resolution | undefined | Promise<Resolution | undefined>
  /**
   * Judges each claim before `resolve` sees it, e.g. `signedClaims({ keyFor, identity })`; a refusal is answered with
   * its code only (HTTP 401 for `"10004"`/`"10005"`). Without it, anyone who knows a device's identity gets its
   * configuration (the seed's contract). It needs the body's bytes as received: when the body was read in front of the
   * handler, pass them (a Buffer or string third argument, or `request.rawBody`), or the request fails (`"77777"`,
   * HTTP 500, told to `onError`).
   */
  verify?: ClaimVerifier
  /**
   * Certificates for the device's own key, e.g. `issueCertificates({ ca: { cert, key }, validitySeconds })`: a
   * request whose data carries `csr` has it checked before `resolve` (an unusable one is `"10008"`, and `resolve` is
   * not asked), and its `"00000"` answer gets `device.certificate` (CN = the configuration's deviceName). A failure of
   * the issuer itself is `"77777"`, told to `onError`. Without it, `csr` is ignored. A request whose TLS client
   * certificate `issue.renewal` recognises is a renewal: `verify` is not asked (the certificate is the proof), the
   * limits never hold it back, and a configuration of another deviceName than the certificate's is `"10004"` (HTTP
   * 401); it is no re-claim. @default none
   */
  issue?: CertificateIssuer
  /**
   * Abuse limits for failed claims (claims/limits.ts): past 10 failures a minute from one address, or against one
   * identity, a claim without a valid signature is answered at once 429 + Retry-After (`"77777"`); a valid signature is
   * never limited. `true` for the defaults, options, a `ClaimLimiter`, or `false`. @default false (`serve`: on)
   */
  limits?: boolean | ClaimLimitsOptions | ClaimLimiter
  /**
   * The proxies (addresses or CIDRs) whose `X-Forwarded-For` is believed: the limits' peer is then its right-most
   * address that is not one of them. @default none (the socket's address)
   */
  trustProxy?: readonly string[]
  /** Largest request body accepted, in bytes. @default 16384 */
  maxBodyBytes?: number
  /** A body that has not arrived whole by then is answered 408 (slow clients hold no resources). @default 10000 */
  bodyTimeoutMs?: number
  /**
   * Told about failures of `resolve` and `issue` (the device gets `"77777"`: HTTP 503 + Retry-After for a
   * `RegistryUnavailableError`, else 500). Never given a secret by the handler.
   */
  onError?(error: unknown): void
  /**
   * Told once per request when its exchange ends, answered or not (the client gone first): for an access log. Never
   * given the answer's configuration; an exception it throws goes to `onError`.
   */
  onRequest?(outcome: RequestOutcome): void
}

/** What `onRequest` is told about one request. */
export interface RequestOutcome {
  request: IncomingMessage
  /** The HTTP status answered; `undefined` when the exchange ended before an answer. */
  status: number | undefined
  /** The answer's `code`; `undefined` when none was sent. */
  code: string | undefined
  /**
   * The request's data (its parsed JSON body), which identifies the device; `undefined` when no JSON body was read.
   * The device's claim, not a secret the server hands out; a log should still show no more of it than it needs.
   */
  data: unknown
  /**
   * Whether the request was a renewal: its TLS client certificate one the handler's `issue` made (issue 18), which
   * proved the claim in place of `verify`. `false` for every other request, and without `issue`.
   */
  renewal: boolean
}

/** The reference server's refusal codes (any string other than 00000/77777/99999 is a refusal). */
export const SERVER_CODES = Object.freeze({
  /** The data identifies no known device. */
  UNKNOWN_DEVICE: '10001',
  /** The request is not a POST of a JSON body within the size limit. */
  BAD_REQUEST: '10002',
  /** Signed claims: no signature or an invalid one, a keyid that is not the claimed identity, a tampered body. */
  INVALID_SIGNATURE: CLAIM_CODES.INVALID_SIGNATURE,
  /** Signed claims: a replayed nonce, or a `created` outside the window. */
  STALE_CLAIM: CLAIM_CODES.STALE_CLAIM,
  /** The PostgreSQL registry: no free triplet is left in the pool. */
  POOL_EXHAUSTED: '10006',
  /** The PostgreSQL registry: the identity is revoked. */
  REVOKED: '10007',
  /** With `issue`: the CSR is unusable (not PEM PKCS#10, a bad signature, a key that is not P-256 or RSA 2048+). */
  BAD_CSR,
})

/**
 * The handler: `(req, res)` for node:http(s). When something in front of it has already read the body (Express with a
 * body parser sets `req.body`; with Fastify pass `request.body`), give the parsed body as the third argument. With
 * `verify`, the body's bytes as received are needed instead (the Content-Digest covers them): a Buffer or string third
 * argument, or `req.rawBody` (Express: `express.json({ verify: (req, _res, buf) => { req.rawBody = buf } })`; Fastify:
 * a raw-body plugin).
 */
export function createProvisioningHandler(options: ProvisioningHandlerOptions) {
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024
  const bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000

  const { verify } = options
  if (verify !== undefined && typeof verify !== 'function') throw new TypeError('Expected `verify` to be a function')
  const issue = checkIssuer(options.issue)
  const gateOf = claimGates(options.limits, options.trustProxy, verify)
  /** Tell `onError`; one that throws itself is ignored (it must not take the host app down, nor the answer). */
  const tellError = (error: unknown) => {
    try {
      options.onError?.(error)
    } catch {}
  }
  const reclaimed = reclaimRecorder(options, tellError)
  const failed = (response: ServerResponse, error: unknown) => {
    tellError(error)
    // A registry that cannot answer now (its database gone): 503, and when to come back.
    const unavailable = error instanceof RegistryUnavailableError
    const retry = unavailable ? { 'retry-after': String(error.retryAfterSeconds) } : undefined
    answer(response, unavailable ? 503 : 500, { code: ResultCode.TRANSIENT, message: 'try again later' }, retry)
  }

  /** `raw`: the body's bytes, `undefined` when whoever read it kept none (refused when a verifier needs them). */
  const respond = (request: IncomingMessage, response: ServerResponse, data: unknown, raw: Buffer | undefined) => {
    const exchange = exchanges.get(response)
    if (exchange !== undefined) exchange.data = data
    Promise.resolve()
      .then(async (): Promise<Reply> => {
        const gate = gateOf?.(request, data)
        // A renewal's certificate is its proof (EST's re-enroll): no signature asked, never limited, like a signed one.
        const renewal = renewalOf(issue, request)
        if (exchange !== undefined) exchange.renewal = renewal !== undefined
        let proven = renewal !== undefined
        if (!proven && verify !== undefined) {
          const judged = await judgeClaim(verify, { request, body: raw, data }, gate)
          if ('reply' in judged) return judged.reply
          proven = judged.signed
        }
        // A proven claim (a verified signature, a renewal) is never limited; any other is answered 429 when over.
        const limited = proven ? undefined : await gate?.limited()
        if (limited !== undefined) return limited
        // Before resolve: a CSR that cannot be used must not take a triplet from a pool.
        const wanted = issue === undefined ? undefined : await requestedCertificate(issue, data)
        // Counted like any failed claim (a 429 past the limit), unless it was proven.
        if (wanted !== undefined && 'refusal' in wanted)
          return (proven ? undefined : await gate?.refused(BAD_CSR)) ?? wanted.refusal
        // With a certificate to issue, a configuration needs no secret: the certificate is its credential.
        const resolved = toAnswer(await options.resolve(data, request), wanted !== undefined)
        // A renewal gets its own device's configuration only: the certificate of one device, the data of another, no.
        const body = renewal === undefined ? resolved : renewedAnswer(renewal, resolved)
        const answered =
          wanted === undefined ? body : await withCertificate(issue as CertificateIssuer, wanted.request, body)
        // The registry's configuration, without the certificate: a certificate is new at every claim. A renewal is no
        // re-claim: the device has not lost anything.
        if (renewal === undefined) await reclaimed?.(request, body) // noted before the answer leaves; never throws
        const { code } = body as { code: string }
        // Decided: a counter store that fails now (its database gone) is told, and the answer stands as decided. A
        // renewal refused counts as any failed claim: a certificate tried against other devices' data.
        if (!proven || renewal !== undefined)
          // only a failure code counts
          await Promise.resolve(gate?.failed(code)).catch(tellError)
        // A claim refusal is 401 however it is made: also from a resolve (a group-key registry without `verify`).
        return [CLAIM_REFUSALS.has(code) ? 401 : 200, answered, {}]
      })
      .then(([status, body, headers]) => answer(response, status, body, headers))
      // answer() too: whatever fails is the server's "77777", never an unhandled rejection.
      .catch((error: unknown) => failed(response, error))
  }

  const { onRequest } = options
  const watch = (request: IncomingMessage, response: ServerResponse, tell: NonNullable<typeof onRequest>) => {
    exchanges.set(response, {})
    response.once('close', () => {
      const { code, data, renewal = false } = exchanges.get(response) ?? {}
      try {
        tell({ request, status: response.headersSent ? response.statusCode : undefined, code, data, renewal })
      } catch (error) {
        tellError(error) // in a 'close' listener: a throw here would be the server's uncaught exception
      }
    })
  }

  return (request: IncomingMessage, response: ServerResponse, body?: unknown): void => {
    if (onRequest !== undefined) watch(request, response, onRequest)
    if (request.method !== 'POST') {
      answer(response, 405, { code: SERVER_CODES.BAD_REQUEST, message: 'use POST' }, { allow: 'POST' })
      request.resume()
      return
    }
    if (!/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
      answer(response, 415, { code: SERVER_CODES.BAD_REQUEST, message: 'send application/json' })
      request.resume()
      return
    }
    const read = request as IncomingMessage & { body?: unknown; rawBody?: unknown }
    const parsed = body ?? read.body
    if (parsed !== undefined) {
      const text = typeof parsed === 'string' || Buffer.isBuffer(parsed)
      const raw = text ? Buffer.from(parsed) : rawBytes(read.rawBody)
      // With a verifier the signed bytes are what counts: parsed here, not taken from whoever parsed them first.
      const data = text ? parseJson(parsed) : raw !== undefined && verify !== undefined ? parseJson(raw) : parsed
      if (data === NOT_JSON) answer(response, 400, { code: SERVER_CODES.BAD_REQUEST, message: 'body is not JSON' })
      else respond(request, response, data, raw)
      return
    }
    if (request.readableEnded) {
      answer(response, 400, {
        code: SERVER_CODES.BAD_REQUEST,
        message: 'body already read: pass it as the third argument',
      })
      return
    }
    if (Number(request.headers['content-length'] ?? 0) > maxBodyBytes) {
      answer(response, 413, { code: SERVER_CODES.BAD_REQUEST, message: 'body too large' }, { connection: 'close' })
      request.resume()
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    const timer = setTimeout(() => {
      answer(response, 408, { code: SERVER_CODES.BAD_REQUEST, message: 'body too slow' }, { connection: 'close' })
      request.destroy()
    }, bodyTimeoutMs)
    request.on('close', () => clearTimeout(timer))
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBodyBytes) {
        chunks.push(chunk)
        return
      }
      clearTimeout(timer)
      answer(response, 413, { code: SERVER_CODES.BAD_REQUEST, message: 'body too large' }, { connection: 'close' })
      request.destroy()
    })
    request.on('end', () => {
      clearTimeout(timer)
      if (response.headersSent) return
      const raw = Buffer.concat(chunks)
      const data = parseJson(raw)
      if (data === NOT_JSON) answer(response, 400, { code: SERVER_CODES.BAD_REQUEST, message: 'body is not JSON' })
      else respond(request, response, data, raw)
    })
  }
}

const CLAIM_REFUSALS: ReadonlySet<string> = new Set(Object.values(CLAIM_CODES))

function toAnswer(resolution: Resolution | undefined, certified = false): object {
  if (resolution === undefined) return { code: SERVER_CODES.UNKNOWN_DEVICE, message: 'unknown device' }
  if ('code' in resolution) {
    const problem = refusalCodeProblem(resolution.code)
    if (problem !== undefined) throw new TypeError(`resolve() returned a refusal code that ${problem}`)
    return { code: resolution.code }
  }
  const config = parseDeviceConfig(certified ? awaitingCertificate(resolution) : resolution)
  if (!config.ok) throw new TypeError(`resolve() returned an invalid configuration: ${config.problem}`)
  return { code: ResultCode.SUCCESS, result: certified ? withoutCertificate(config.value) : plain(config.value) }
}

function plain({ device, connect }: DeviceConfig): DeviceConfig {
  return { device: { ...device }, connect: { ...connect } }
}
