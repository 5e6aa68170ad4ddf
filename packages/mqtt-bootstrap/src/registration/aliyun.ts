/**
 * Alibaba Cloud IoT's HTTPS dynamic registration for directly connected devices ("one secret per product", with the
 * device pre-registered): POST `https://iot-auth.<region>.aliyuncs.com/auth/register/device`, form-encoded
 * `productKey`, `deviceName`, `random`, `sign`, `signMethod`, where sign is the hex HMAC of
 * "deviceName{dn}productKey{pk}random{random}" keyed by the productSecret. The answer is
 * `{"code":200,"data":{"productKey","deviceName","deviceSecret"},"message":"success"}`, or another `code` with a
 * `message`. Alibaba issues a deviceSecret once per activation: the bootstrap stores it before connecting.
 */
import { signAliyunRegistration } from '../auth/aliyun.js'
import { withUrl } from '../error-urls.js'
import { AbortError, RegistrationError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { redactEchoes, redactOnInspect } from '../redact.js'
import { parseRetryAfter } from '../retry.js'
import { type HttpResponse, type HttpTransport, isTransientStatus } from '../transport/http-transport.js'
import { TransportError } from '../transport/transport-error.js'
import { UndiciTransport } from '../transport/undici-transport.js'
import {
  type AliyunRegistrationOptions,
  type ResolvedAliyunRegistrationOptions,
  resolveAliyunRegistrationOptions,
} from './aliyun-options.js'
import type { RegisteredDevice, RegistrationContext, RegistrationRequest, RegistrationStrategy } from './strategy.js'

export type { AliyunRegistrationOptions } from './aliyun-options.js'

/** Alibaba's system codes that mean "try again later" (too many requests, service error, service unavailable). */
const BUSY_CODES = new Set([429, 500, 503])

/** `<anything>.<region>.aliyuncs.com`, the region being the label with a dash just before aliyuncs.com. */
const REGION_IN_HOST = /(?:^|\.)([a-z]{2,}-[a-z0-9-]+)\.aliyuncs\.com$/

/** The Alibaba Cloud region in a broker address (`host`, `host:port` or a URL), if it names one. */
export function aliyunRegionOf(host: string): string | undefined {
  let hostname = host
  try {
    hostname = host.includes('://') ? new URL(host).hostname : new URL(`mqtt://${host}`).hostname
  } catch {
    return undefined
  }
  return REGION_IN_HOST.exec(hostname.toLowerCase())?.[1]
}

export function aliyunRegistrationUrl(region: string): string {
  return `https://iot-auth.${region}.aliyuncs.com/auth/register/device`
}

export class AliyunRegistration implements RegistrationStrategy {
  readonly name = 'aliyun'
  readonly #options: ResolvedAliyunRegistrationOptions
  /** Made on the first registration: most boots never register. */
  #transport: HttpTransport | undefined
  readonly #random: () => string

  /**
   * @param options checked at once: a bad one throws an `InvalidOptionError` (a TypeError) naming it
   * @param seams.transport the HTTP transport (default: undici with `options.tls`)
   * @param seams.random the `random` parameter (default: 16 hex characters from the CSPRNG)
   */
  constructor(
    options: AliyunRegistrationOptions = {},
    seams: { transport?: HttpTransport; random?: () => string } = {},
  ) {
    this.#options = resolveAliyunRegistrationOptions(options)
    this.#transport = seams.transport
    this.#random = seams.random ?? (() => nodeCrypto().randomBytes(8).toString('hex'))
  }

  /** The endpoint used for a device whose broker is `host`. Throws ERR_REGISTER_NO_REGION when it cannot tell. */
  endpoint(host: string): URL {
    if (this.#options.url !== undefined) return new URL(this.#options.url)
    const region = this.#options.region ?? aliyunRegionOf(host)
    if (region === undefined) {
      throw new RegistrationError(
        'ERR_REGISTER_NO_REGION',
        'cannot tell the Alibaba Cloud region from connect.host: set `registration.region` or `registration.url`',
        { transient: false },
      )
    }
    return new URL(aliyunRegistrationUrl(region))
  }

  async register(request: RegistrationRequest, context: RegistrationContext): Promise<RegisteredDevice> {
    const { productKey, deviceName, productSecret } = request
    const { signMethod } = this.#options
    const random = this.#random()
    const sign = signAliyunRegistration({ productKey, deviceName, productSecret, random, signMethod })
    const body = new URLSearchParams({ productKey, deviceName, random, sign, signMethod }).toString()
    const url = this.endpoint(request.host)
    try {
      return readAnswer(await this.#post(url, body, context.signal), request, context.now())
    } catch (error) {
      throw withUrl(error, url) // every failure past this point names the endpoint, redacted
    }
  }

  async #post(url: URL, body: string, signal: AbortSignal | undefined): Promise<HttpResponse> {
    try {
      this.#transport ??= new UndiciTransport(this.#options.tls)
      return await this.#transport.post({
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body,
        timeoutMs: this.#options.timeoutMs,
        maxResponseBytes: this.#options.maxResponseBytes,
        signal,
      })
    } catch (error) {
      throw transportFailure(error, signal, this.#options)
    }
  }
}

/**
 * A transport's failure, in registration's terms (aborts pass through). Anything but a TransportError counts as a
 * transient network failure (the seam's contract), worded as before: without a reason.
 */
function transportFailure(
  error: unknown,
  signal: AbortSignal | undefined,
  limits: { timeoutMs: number; maxResponseBytes: number },
): Error {
  if (error instanceof AbortError) return error
  if (signal?.aborted) return new AbortError(signal.reason)
  if (!(error instanceof TransportError)) {
    return new RegistrationError('ERR_REGISTER_NETWORK', 'registration request failed', {
      transient: true,
      cause: error,
    })
  }
  const { transient, reason } = error
  const cause = error.cause ?? error // what failed below HTTP, as for provisioning
  switch (error.code) {
    case 'ERR_TRANSPORT_TLS':
      return new RegistrationError('ERR_REGISTER_TLS', `TLS certificate verification failed (${reason})`, {
        transient: false, // never retried, even from a transport that says otherwise
        cause,
      })
    case 'ERR_TRANSPORT_TIMEOUT':
      return new RegistrationError(
        'ERR_REGISTER_TIMEOUT',
        `registration request timed out after ${error.timeoutMs ?? limits.timeoutMs} ms`,
        { transient, cause },
      )
    case 'ERR_TRANSPORT_TOO_LARGE':
      return new RegistrationError(
        'ERR_REGISTER_INVALID_RESPONSE',
        `registration answer exceeds ${error.limit ?? limits.maxResponseBytes} bytes`,
        { transient, status: error.status, cause },
      )
    default:
      return new RegistrationError('ERR_REGISTER_NETWORK', `registration request failed (${reason})`, {
        transient,
        cause,
      })
  }
}

function readAnswer(response: HttpResponse, request: RegistrationRequest, now: number): RegisteredDevice {
  const { status } = response
  const retryAfterMs = parseRetryAfter(response.headers['retry-after'], now)
  if (isTransientStatus(status)) {
    throw new RegistrationError('ERR_REGISTER_HTTP_STATUS', `registration service answered HTTP ${status}`, {
      transient: true,
      status,
      retryAfterMs,
    })
  }
  const answer = parseJson(response.body)
  const code = typeof answer?.code === 'string' && /^\d+$/.test(answer.code) ? Number(answer.code) : answer?.code
  if (typeof code !== 'number') {
    if (status < 200 || status > 299) {
      throw new RegistrationError('ERR_REGISTER_HTTP_STATUS', `registration service answered HTTP ${status}`, {
        transient: false,
        status,
      })
    }
    throw invalid(status, answer === undefined ? 'the answer is not JSON' : 'the answer has no numeric code')
  }
  if (code === 200) return registeredDevice(answer?.data, request, status)
  const serverMessage = shownMessage(answer?.message, request.productSecret)
  const said = serverMessage === undefined ? '' : `: ${serverMessage}`
  if (BUSY_CODES.has(code)) {
    throw new RegistrationError('ERR_REGISTER_BUSY', `registration service is busy (code ${code}${said})`, {
      transient: true,
      status,
      retryAfterMs,
      serverCode: code,
      ...(serverMessage === undefined ? {} : { serverMessage }),
    })
  }
  throw new RegistrationError('ERR_REGISTER_REFUSED', `registration refused with code ${code}${said}`, {
    transient: false,
    status,
    serverCode: code,
    ...(serverMessage === undefined ? {} : { serverMessage }),
  })
}

function registeredDevice(data: unknown, request: RegistrationRequest, status: number): RegisteredDevice {
  if (typeof data !== 'object' || data === null) throw invalid(status, 'code 200 without `data`')
  const { productKey, deviceName, deviceSecret } = data as Record<string, unknown>
  if (typeof deviceSecret !== 'string' || deviceSecret === '' || deviceSecret.length > 1024) {
    throw invalid(status, 'code 200 without a usable `data.deviceSecret`')
  }
  if (
    (productKey !== undefined && productKey !== request.productKey) ||
    (deviceName !== undefined && deviceName !== request.deviceName)
  ) {
    throw invalid(status, 'the answer is for another device')
  }
  return redactOnInspect({ deviceSecret }, ['deviceSecret'])
}

function invalid(status: number, why: string): RegistrationError {
  return new RegistrationError('ERR_REGISTER_INVALID_RESPONSE', `registration answer unusable: ${why}`, {
    transient: false,
    status,
  })
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

/**
 * The service's message as errors may show it: printable, at most 200 characters, with every echo of the product
 * secret (any 8 consecutive characters of it, see redactEchoes) redacted.
 */
function shownMessage(message: unknown, productSecret: string): string | undefined {
  if (typeof message !== 'string') return undefined
  const printable = message.replace(/[^\x20-\x7e\u00a0-\uffff]/g, ' ').trim()
  const safe = redactEchoes(printable, [productSecret])
  return safe === '' ? undefined : safe.slice(0, 200)
}
