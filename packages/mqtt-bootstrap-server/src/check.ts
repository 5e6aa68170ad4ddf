/**
 * The conformance checker: calls a real provisioning server and reports, check by check, whether it keeps the
 * contract. It judges with the library's own schemas (contract.ts) and transport, so a server that passes is one the
 * library works with. Details name fields and codes, never a secret. With a device's key (`attestation`) it signs that
 * device's claim and checks that claims without it are refused (check-claims.ts); with `certificate`, that claim
 * carries a CSR and the certificate answered is judged, then renewed with itself as the TLS client certificate
 * (check-certificates.ts).
 */
import { randomBytes } from 'node:crypto'
import type { HttpResponse } from 'mqtt-bootstrap'
import { InvalidOptionError, ProvisioningError, type TlsOptions, TransportError, UndiciTransport } from 'mqtt-bootstrap'
import {
  checkHeaders,
  checkUrl,
  contractSchemas,
  describeIssue,
  interpretAnswer,
  parseAnswer,
  parseBody,
  ResultCode,
  redactUrl,
  serializeData,
} from 'mqtt-bootstrap/contract'
import * as v from 'valibot'
import { CERTIFICATE_CHECKS, certificateProbe, checkCertificates } from './check-certificates.js'
import {
  type CheckAttestation,
  type CheckStatus,
  CLAIM_CHECKS,
  checkClaims,
  claimHint,
  claimKeys,
  signed,
} from './check-claims.js'
import { judgeExpiry } from './check-expiry.js'
import { refusalCodeProblem } from './refusal-codes.js'

export type { CheckAttestation, CheckKey, CheckStatus } from './check-claims.js'

export interface CheckOptions {
  /** The provisioning server's URL. */
  url: string
  /** The identity of a device the server knows. */
  data: unknown
  /** Identity of a device the server must refuse. @default a random IMEI no server knows */
  unknownData?: unknown
  headers?: Record<string, string>
  /** CA (and client certificate) for the server. */
  tls?: TlsOptions
  /** Per request. @default 10000 */
  timeoutMs?: number
  /** The known device's request (TLS handshake included) must answer within this. @default 2000 */
  maxLatencyMs?: number
  /**
   * The known device's key: its claim is signed (as the device's own `attestation` option signs it), and the claim
   * checks run (CLAIM_CHECKS). @default none: unsigned claims, as the seed's contract has them
   */
  attestation?: CheckAttestation
  /**
   * The known device's claim carries a CSR for a P-256 key made for the check (as the device's `certificate` option
   * sends it; `data` must then be an object without `csr`), and the certificate checks run (CERTIFICATE_CHECKS).
   * @default false
   */
  certificate?: boolean
}

export interface CheckResult {
  id: string
  title: string
  status: CheckStatus
  detail: string
}

export interface CheckReport {
  url: string
  /** No check failed (warnings allowed). */
  ok: boolean
  checks: CheckResult[]
}

/** The checks, in report order. */
export const CHECKS = Object.freeze({
  https: 'HTTPS',
  tls: 'TLS certificate verifies for the host',
  reachable: 'answers the known device',
  status: 'HTTP status 200',
  contentType: 'Content-Type application/json',
  json: 'body is JSON',
  envelope: 'envelope { code, result }',
  code: 'code "00000" for the known device',
  device: 'device fields (productKey, deviceName, deviceSecret/productSecret)',
  qos: 'qos is 0, 1 or 2',
  cleanSession: 'cleanSession is 0/1 (or a boolean)',
  host: 'host is an mqtt(s)/ws(s) URL or host[:port]',
  noStore: 'Cache-Control: no-store (the answer holds secrets)',
  unknownDevice: 'refuses an unknown device with its own code',
  latency: 'latency',
  ...CLAIM_CHECKS,
  ...CERTIFICATE_CHECKS,
} as const)

type CheckId = keyof typeof CHECKS

export async function checkProvisioningServer(options: CheckOptions): Promise<CheckReport> {
  const results = new Map<CheckId, CheckResult>()
  const record = (id: CheckId, status: CheckStatus, detail: string) => {
    results.set(id, { id, title: CHECKS[id], status, detail })
  }
  const url = checkUrl(options.url, true, 'url')
  const { certificate = false } = options
  if (typeof certificate !== 'boolean') {
    throw new InvalidOptionError('certificate', 'Expected `certificate` to be a boolean')
  }
  // Made before any request: data that cannot carry a CSR is an option error, as it is for the device.
  const withCsr = certificate ? await certificateProbe(options.data) : undefined
  const body = serializeData(withCsr?.data ?? options.data, 'data')
  const unknownBody = serializeData(
    options.unknownData ?? { imei: `check-${randomBytes(6).toString('hex')}` },
    'unknownData',
  )
  const headers = { ...checkHeaders(options.headers, 'headers'), 'content-type': 'application/json' }
  const timeoutMs = options.timeoutMs ?? 10_000
  const maxLatencyMs = options.maxLatencyMs ?? 2000
  const keys = options.attestation === undefined ? undefined : claimKeys(options.attestation)
  const secure = url.protocol === 'https:'
  record('https', secure ? 'pass' : 'fail', secure ? 'https://' : 'plain http: credentials would travel in clear')

  /** `tls`: the transport's, by default the checker's own (a renewal presents the certificate it renews instead). */
  const post = async (payload: string, claim: Record<string, string> = {}, tls = options.tls) => {
    // A new transport each time: a fresh TLS connection, as a booting device has.
    const transport = new UndiciTransport(tls)
    const started = performance.now()
    try {
      const request = { url, headers: { ...headers, ...claim }, body: payload, timeoutMs, maxResponseBytes: 64 * 1024 }
      const response = await transport.post(request)
      return { response, ms: performance.now() - started }
    } catch (error) {
      return { error: error as Error, ms: performance.now() - started }
    } finally {
      await transport.close()
    }
  }

  const sent = keys === undefined ? undefined : await signed(keys.key, url, body)
  const known = await post(body, { ...sent })
  if (known.error !== undefined) {
    // The transport's own codes (issue 13: the seam speaks HTTP, not provisioning).
    if (known.error instanceof TransportError && known.error.code === 'ERR_TRANSPORT_TLS') {
      record('tls', 'fail', known.error.message)
    } else record('reachable', 'fail', known.error.message)
    return finish(url.href, results, keys !== undefined, certificate)
  }
  record('tls', secure ? 'pass' : 'skip', secure ? `verified for ${url.hostname}` : 'not HTTPS')
  record('reachable', 'pass', `HTTP ${known.response.status}`)
  judgeAnswer(known.response, record, sent !== undefined)
  record(
    'latency',
    known.ms <= maxLatencyMs ? 'pass' : 'fail',
    `${Math.round(known.ms)} ms (at most ${maxLatencyMs} ms), TLS handshake included`,
  )

  // Signed with another device's key when there is one: an unknown identity's valid claim is told it is unknown.
  const other = keys?.other
  const unknown = await post(unknownBody, other === undefined ? {} : { ...(await signed(other, url, unknownBody)) })
  if (unknown.error !== undefined) {
    record('unknownDevice', 'fail', `no answer: ${unknown.error.message}`)
  } else {
    record('unknownDevice', ...judgeRefusal(unknown.response))
  }
  if (keys !== undefined && sent !== undefined) {
    const accepted = results.get('code')?.status === 'pass'
    await checkClaims({ url, body, ...keys, sent, accepted, post, record })
  }
  if (withCsr !== undefined) {
    const { probe, data } = withCsr
    // A renewal's client certificate replaces the checker's own (and its key's passphrase); the trust stays.
    const { cert: _cert, key: _key, passphrase: _passphrase, ...trust } = options.tls ?? {}
    const signedPost = async (payload: string, client?: { cert: string; key: string }) => {
      const claim = keys === undefined ? {} : { ...(await signed(keys.key, url, payload)) }
      return post(payload, claim, client === undefined ? options.tls : { ...trust, ...client })
    }
    await checkCertificates({ probe, data, response: known.response, post: signedPost, record })
  }
  return finish(url.href, results, keys !== undefined, certificate)
}

function judgeAnswer(
  response: HttpResponse,
  record: (id: CheckId, status: CheckStatus, detail: string) => void,
  signedClaim: boolean,
): void {
  const { status, headers } = response
  record('status', status === 200 ? 'pass' : 'fail', `HTTP ${status}`)
  const contentType = headers['content-type'] ?? '(none)'
  record('contentType', /^application\/json\b/i.test(contentType) ? 'pass' : 'fail', contentType)
  record(
    'noStore',
    /\bno-store\b/i.test(headers['cache-control'] ?? '') ? 'pass' : 'warn',
    headers['cache-control'] ?? '(none)',
  )
  let json: unknown
  try {
    json = parseBody(response.body)
  } catch {
    record('json', 'fail', `not JSON (${response.body.length} characters)`)
    return
  }
  record('json', 'pass', 'parsed')
  const envelope = parseAnswer(json)
  if (!envelope.ok) {
    record('envelope', 'fail', envelope.problem)
    return
  }
  record('envelope', 'pass', `code "${envelope.value.code}"`)
  const { code, result } = envelope.value
  record('code', code === ResultCode.SUCCESS ? 'pass' : 'fail', `"${code}"${claimHint(code, signedClaim)}`)
  if (code !== ResultCode.SUCCESS) return
  const { device, connect } = (typeof result === 'object' && result !== null ? result : {}) as Record<string, unknown>
  const { Device, Connect } = contractSchemas()
  const deviceChecked = field(Device, device, 'device')
  record('device', ...(deviceChecked[0] === 'pass' ? judgeExpiry(device as { expiresAt?: string }) : deviceChecked))
  const fields = (typeof connect === 'object' && connect !== null ? connect : {}) as Record<string, unknown>
  record('qos', ...field(Connect.entries.qos, fields.qos, 'connect.qos'))
  record('cleanSession', ...field(Connect.entries.cleanSession, fields.cleanSession, 'connect.cleanSession'))
  record('host', ...field(Connect.entries.host, fields.host, 'connect.host'))
}

/** One part of the answer against the contract's own schema for it. */
function field(schema: v.GenericSchema, value: unknown, name: string): [CheckStatus, string] {
  const parsed = v.safeParse(schema, value, { abortEarly: true })
  if (parsed.success) return ['pass', value === undefined ? `${name} absent (default applies)` : `${name} ok`]
  return ['fail', describeIssue(parsed.issues[0], name)]
}

/** Judged as the device judges it (PointAccess's own interpretation): only a refusal passes. */
function judgeRefusal(response: HttpResponse): [CheckStatus, string] {
  const outcome = interpretAnswer(response, Date.now())
  if (!(outcome instanceof ProvisioningError)) return ['fail', 'answered "00000": it hands out credentials to anyone']
  if (outcome.code === 'ERR_PROVISION_REFUSED') {
    // "99999" from the server would read as "could not understand" to the app: refusals need codes of their own.
    const problem = refusalCodeProblem(outcome.resultCode)
    if (problem !== undefined) return ['fail', `refusal code "${outcome.resultCode}" ${problem}`]
    return ['pass', `"${outcome.resultCode}" (HTTP ${response.status})`]
  }
  const why = outcome.transient
    ? 'the device would take it for a transient failure and retry'
    : 'the device could not understand it'
  return ['fail', `${outcome.message}: ${why}; a refusal needs the server's own code`]
}

function finish(url: string, results: Map<CheckId, CheckResult>, claims: boolean, certificate: boolean): CheckReport {
  // The claim checks are listed only when there was a key to sign with: without one, the seed's contract is checked.
  // The certificate checks likewise only when asked for.
  const ids = (Object.keys(CHECKS) as CheckId[]).filter(
    (id) => (claims || !Object.hasOwn(CLAIM_CHECKS, id)) && (certificate || !Object.hasOwn(CERTIFICATE_CHECKS, id)),
  )
  const checks = ids.map(
    (id) => results.get(id) ?? { id, title: CHECKS[id], status: 'skip' as const, detail: 'not reached' },
  )
  // No credentials or query (tokens) in a report that gets printed and stored.
  return { url: redactUrl(url), ok: checks.every((check) => check.status !== 'fail'), checks }
}
