/**
 * PointAccess: the original component's API, faithfully. One POST of the device's identity, one result code.
 *
 * Differences from the original, all on the side of not crashing: a non-JSON answer is `"99999"` (the original
 * threw), a timeout or network failure is `"77777"`, and the reason behind any code other than `"00000"` is kept in
 * `lastError`, a typed error with a stable `code` and the `cause`.
 *
 * Underneath is {@link requestConfig}, stateless (a request in, a configuration out, or the error thrown): the
 * bootstrap provisions through it directly, with options it has checked once, at its own door.
 */
import { type AttestationOptions, type ResolvedAttestation, splitAttestation } from './attestation/options.js'
import { type Clock, systemClock } from './clock.js'
import { type DeviceConfig, defaultDeviceConfig, parseAnswer, parseDeviceConfig, ResultCode } from './contract.js'
import { withUrl } from './error-urls.js'
import { AbortError, ProvisioningError, throwIfAborted } from './errors.js'
import { redactEchoes } from './redact.js'
import { parseRetryAfter } from './retry.js'
import {
  type ClientCertificate,
  type HttpResponse,
  type HttpTransport,
  isTransientStatus,
} from './transport/http-transport.js'
import {
  checkHeaders,
  checkUrl,
  type ResolvedTransportOptions,
  resolveTransportOptions,
  serializeData,
  type TransportOptions,
} from './transport/options.js'
import { asTransportError } from './transport/transport-error.js'
import { UndiciTransport } from './transport/undici-transport.js'

export interface PointAccessOptions extends TransportOptions {
  /** Sign every request (RFC 9421 HTTP Message Signature, hmac-sha256) with the device's key. @default unsigned */
  attestation?: AttestationOptions
}

/** Seams the bootstrap's container fills in; a direct user normally passes none. */
export interface PointAccessDeps {
  transport?: HttpTransport
  clock?: Clock
}

export interface PointAccessRequestOptions {
  /** Extra headers. `Content-Type` is always `application/json`: a caller's value for it is ignored. */
  headers?: Record<string, string>
  /** Cancels the request: it then rejects with an `AbortError` instead of returning a code. */
  signal?: AbortSignal
}

/** One provisioning request, its parts already checked (checkUrl, serializeData, checkHeaders: no check here). */
export interface ConfigRequest {
  /** The provisioning URL (https, or http when allowed). */
  url: URL | string
  /** The device's data, as JSON. */
  body: string
  /** Extra headers, lower-case names; `content-type` is set here (`application/json`), whatever they say. */
  headers?: Readonly<Record<string, string>> | undefined
  signal?: AbortSignal | undefined
  /** Secrets the device holds that a refusal's message must not quote (its `resultCode` stays the server's own). */
  secrets?: ReadonlyArray<string | null> | undefined
  /** Signs the request: each call (each retry) anew, `created` from the clock. Its headers win over `headers`. */
  attestation?: ResolvedAttestation | undefined
  /** The TLS client certificate of this request, in place of the transport's (a renewal's: the current one). */
  clientCertificate?: ClientCertificate | undefined
}

/** The seams a request goes through. */
export interface ConfigSeams {
  readonly transport: HttpTransport
  readonly clock: Clock
}

/**
 * POST the request and return the configuration the answer carries. Error in, error out: rejects with the
 * `ProvisioningError` that says why there is none (its message and `url` name the URL, redacted), or an `AbortError`
 * when `request.signal` fires. Keeps no state: the retries, the cache and the events are the caller's.
 */
export async function requestConfig(
  request: ConfigRequest,
  options: Pick<ResolvedTransportOptions, 'timeoutMs' | 'maxResponseBytes'>,
  seams: ConfigSeams,
): Promise<DeviceConfig> {
  const { signal } = request
  const url = typeof request.url === 'string' ? new URL(request.url) : request.url
  const { attestation, body, clientCertificate } = request
  // Spread last: a caller's `signature` (names are lower-case here) cannot stand in for the device's own.
  const signed = attestation && (await attestation.sign({ method: 'POST', url, body }, seams.clock.now()))
  let response: HttpResponse
  try {
    response = await seams.transport.post({
      url,
      headers: { ...request.headers, ...signed, 'content-type': 'application/json' },
      body,
      timeoutMs: options.timeoutMs,
      maxResponseBytes: options.maxResponseBytes,
      signal,
      ...(clientCertificate === undefined ? {} : { clientCertificate }),
    })
  } catch (error) {
    // A custom transport's own abort error (fetch's DOMException) is an abort too, when the signal says so.
    if (error instanceof AbortError) throw error
    if (signal?.aborted) throw new AbortError(signal.reason)
    throw withUrl(transportFailure(error, options), url)
  }
  const outcome = interpretAnswer(response, seams.clock.now(), request.secrets)
  if (outcome instanceof ProvisioningError) throw withUrl(outcome, url)
  return outcome
}

/** A transport's failure, in provisioning's terms (the codes and result codes of the seed's contract). */
function transportFailure(
  error: unknown,
  limits: Pick<ResolvedTransportOptions, 'timeoutMs' | 'maxResponseBytes'>,
): ProvisioningError {
  const failure = asTransportError(error)
  const { transient, reason } = failure
  // What failed below HTTP, as the cause has always been (a CLI reads its code: ERR_TLS_CERT_ALTNAME_INVALID, …).
  const cause = failure.cause ?? failure
  switch (failure.code) {
    case 'ERR_TRANSPORT_TLS':
      return new ProvisioningError('ERR_PROVISION_TLS', `TLS certificate verification failed (${reason})`, {
        resultCode: ResultCode.TRANSIENT,
        transient: false, // never retried (tls-failures.ts isCertificateError), even from a transport that says otherwise
        cause,
      })
    case 'ERR_TRANSPORT_TIMEOUT': {
      const message = `provisioning request timed out after ${failure.timeoutMs ?? limits.timeoutMs} ms`
      return new ProvisioningError('ERR_PROVISION_TIMEOUT', message, {
        resultCode: ResultCode.TRANSIENT,
        transient,
        cause,
      })
    }
    case 'ERR_TRANSPORT_TOO_LARGE':
      return new ProvisioningError(
        'ERR_PROVISION_RESPONSE_TOO_LARGE',
        `provisioning answer exceeds ${failure.limit ?? limits.maxResponseBytes} bytes`,
        {
          resultCode: ResultCode.INVALID_RESPONSE,
          transient,
          status: failure.status,
          cause,
        },
      )
    default:
      return new ProvisioningError('ERR_PROVISION_NETWORK', `provisioning request failed (${reason})`, {
        resultCode: ResultCode.TRANSIENT,
        transient,
        cause,
      })
  }
}

export class PointAccess {
  /** The last configuration received; changes only on a valid `"00000"` answer. Holds secrets (hidden from inspect). */
  deviceConfig: DeviceConfig = defaultDeviceConfig()
  /** Why the last request did not return `"00000"`; `null` after a success. */
  lastError: ProvisioningError | null = null

  readonly #options: ResolvedTransportOptions
  readonly #attestation: ResolvedAttestation | undefined
  readonly #seams: ConfigSeams

  constructor(options: PointAccessOptions = {}, deps: PointAccessDeps = {}) {
    const [attestation, transport] = splitAttestation(options)
    this.#attestation = attestation
    this.#options = resolveTransportOptions(transport)
    this.#seams = {
      transport: deps.transport ?? new UndiciTransport(this.#options.tls),
      clock: deps.clock ?? systemClock,
    }
  }

  /**
   * POST `data` as JSON to `url` and return the result code: `"00000"`, `"77777"`, `"99999"` or the server's own.
   * Rejects only for a bad argument (`TypeError`) or an aborted signal (`AbortError`).
   */
  async request(url: string, data: unknown, options: PointAccessRequestOptions = {}): Promise<string> {
    const target = checkUrl(url, this.#options.allowInsecureHttp, 'url')
    const body = serializeData(data, 'data')
    const headers = checkHeaders(options.headers, 'headers')
    const { signal } = options
    throwIfAborted(signal)
    const { deviceSecret, productSecret } = this.deviceConfig.device // what a refusal could echo
    try {
      this.deviceConfig = await requestConfig(
        { url: target, body, headers, signal, secrets: [deviceSecret, productSecret], attestation: this.#attestation },
        this.#options,
        this.#seams,
      )
    } catch (error) {
      if (!(error instanceof ProvisioningError)) throw error
      this.lastError = error
      return error.resultCode
    }
    this.lastError = null
    return ResultCode.SUCCESS
  }
}

/** An answer's body as JSON (a leading byte-order mark is tolerated). Throws a SyntaxError quoting the body. */
export function parseBody(body: string): unknown {
  return JSON.parse(body.replace(/^\uFEFF/, ''))
}

/** The refusals the contract lets come with HTTP 401 (signed claims: a missing or bad signature, a replay). */
const CLAIM_REFUSALS: ReadonlySet<string> = new Set(['10004', '10005'])

/**
 * An HTTP answer -> the configuration it carries, or why it carries none. A refusal's message shows the server's code
 * without any echo of `secrets` (the code itself is passed through in `resultCode`, by contract).
 *
 * The contract's statuses are 200 with any code, 401 with a claim refusal (`"10004"`/`"10005"`), and 408, 429 and 5xx
 * (transient). Any other (a 404, a 403, a 3xx: the transport follows no redirect) comes from something that is not a
 * provisioning endpoint, whatever its body says: `"99999"`, never a refusal the app would act on as the server's word.
 */
export function interpretAnswer(
  response: HttpResponse,
  now: number,
  secrets: ReadonlyArray<string | null> = [],
): DeviceConfig | ProvisioningError {
  const { status } = response
  const retryAfterMs = parseRetryAfter(response.headers['retry-after'], now)
  if (isTransientStatus(status)) {
    return new ProvisioningError('ERR_PROVISION_HTTP_STATUS', `provisioning server answered HTTP ${status}`, {
      resultCode: ResultCode.TRANSIENT,
      transient: true,
      status,
      retryAfterMs,
    })
  }
  const ok = status === 200
  const outsideContract = (why: string) =>
    new ProvisioningError('ERR_PROVISION_HTTP_STATUS', `provisioning server answered HTTP ${status}, ${why}`, {
      resultCode: ResultCode.INVALID_RESPONSE,
      transient: false,
      status,
    })
  if (!ok && status !== 401) return outsideContract('a status outside the provisioning contract')
  const invalid = (reason: string) =>
    ok
      ? new ProvisioningError('ERR_PROVISION_INVALID_RESPONSE', `provisioning answer ${reason}`, {
          resultCode: ResultCode.INVALID_RESPONSE,
          transient: false,
          status,
        })
      : outsideContract(`without a claim refusal (its body ${reason})`)

  let json: unknown
  try {
    json = parseBody(response.body)
  } catch {
    // No `cause`: V8's SyntaxError quotes the body, which may hold secrets.
    return invalid('is not JSON')
  }
  const answer = parseAnswer(json)
  if (!answer.ok) return invalid(`envelope: ${answer.problem}`)
  const { code, result } = answer.value
  // Not quoted: whatever answers 401 (a proxy, an API gateway) may put anything in its code.
  if (!ok && !CLAIM_REFUSALS.has(code)) return outsideContract('without a claim refusal ("10004" or "10005")')

  if (code === ResultCode.SUCCESS) {
    const config = parseDeviceConfig(result)
    return config.ok ? config.value : invalid(`result: ${config.problem}`)
  }
  if (code === ResultCode.TRANSIENT) {
    return new ProvisioningError('ERR_PROVISION_SERVER_BUSY', 'provisioning server answered "77777" (try again)', {
      resultCode: code,
      transient: true,
      status,
      retryAfterMs,
    })
  }
  const shown = redactEchoes(code, secrets)
  const why = code === STALE_CLAIM && status === 401 ? staleClaimHint(response.headers.date, now) : ''
  return new ProvisioningError('ERR_PROVISION_REFUSED', `provisioning server refused the device: "${shown}"${why}`, {
    resultCode: code,
    transient: false,
    status,
  })
}

/** The refusal of a claim as a replay or out of the server's window; a device never replays one. */
const STALE_CLAIM = '10005'

/**
 * Why a claim was stale, as far as the device can tell: every request it signs has a new nonce, so `"10005"` is a
 * clock that is off (no NTP, local time taken for UTC), which the server's `Date` header shows.
 */
function staleClaimHint(date: string | undefined, now: number): string {
  const server = date === undefined ? Number.NaN : Date.parse(date)
  if (Number.isNaN(server)) return " (a claim signed outside the server's time window: is the device clock set?)"
  const seconds = Math.round((now - server) / 1000)
  if (Math.abs(seconds) < 60) return ` (the device clock agrees with the server's Date within ${Math.abs(seconds)} s)`
  const off = `${Math.abs(seconds)} s ${seconds >= 0 ? 'ahead of' : 'behind'}`
  return ` (a claim signed outside the server's time window: the device clock is ${off} the server's Date)`
}
