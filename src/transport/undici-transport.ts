/**
 * The default transport: undici's `request` through dispatchers of our own, so a custom CA or client certificate
 * applies to provisioning only (`https.globalAgent` does not affect fetch/undici, and we never touch globals).
 *
 * Proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY (either case) are honoured through undici's EnvHttpProxyAgent, which
 * tunnels with CONNECT; the TLS settings then apply to the server behind the tunnel (`requestTls`). Like Go's
 * net/http, `localhost`, 127.0.0.1 and ::1 never go through a proxy (other addresses follow NO_PROXY).
 *
 * undici is imported, and the dispatchers made, on the first request: a device that boots from its cache never loads
 * it (it is the largest part of the import cost, README "Performance").
 */
import type { SecureContext } from 'node:tls'
import type { Dispatcher } from 'undici'
import { AbortError, ProvisioningError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { traceFor } from '../logger.js'
import { redactUrl } from '../redact.js'
import type { HttpRequest, HttpResponse, HttpTransport } from './http-transport.js'
import { networkError, timeoutError, tooLargeError } from './http-transport.js'

const trace = traceFor('transport')

type PemInput = string | Buffer | Array<string | Buffer>

/** TLS settings for the provisioning server. Certificate verification is always on. */
export interface TlsOptions {
  /** Trusted CA certificate(s), PEM; replaces the system roots, as in Node's `tls.connect`. */
  ca?: PemInput
  /** Client certificate chain (PEM), for servers that require mutual TLS. */
  cert?: PemInput
  /** Client private key (PEM). Secret. */
  key?: PemInput
  /** Passphrase of an encrypted `key`. Secret. */
  passphrase?: string
  /** SNI / verification name, when it differs from the URL's host. */
  servername?: string
}

const PROXY_VARIABLES = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY']

interface Dispatchers {
  request: typeof import('undici').request
  direct: Dispatcher
  /** Only when the environment names a proxy (read once, when the transport is made). */
  proxied: Dispatcher | undefined
}

export class UndiciTransport implements HttpTransport {
  readonly #tls: TlsOptions
  readonly #proxy: boolean
  #dispatchers: Promise<Dispatchers> | undefined

  constructor(tls: TlsOptions = {}) {
    this.#tls = { ...tls }
    this.#proxy = PROXY_VARIABLES.some((name) => (process.env[name] ?? '') !== '')
  }

  #ready(): Promise<Dispatchers> {
    this.#dispatchers ??= Promise.all([import('undici'), import('node:tls')]).then(([undici, tls]) => {
      const { Agent, EnvHttpProxyAgent, request } = undici
      // One secure context for every connection (Node would otherwise parse the PEMs into a new one each time).
      const secureContext = sharedSecureContext(this.#tls, tls.createSecureContext)
      const connect = {
        ...(this.#tls.servername ? { servername: this.#tls.servername } : {}),
        ...(secureContext ? { secureContext } : {}),
      }
      return {
        request,
        direct: new Agent({ connect, keepAliveTimeout: 4_000 }),
        proxied: this.#proxy
          ? new EnvHttpProxyAgent({ connect, requestTls: connect, keepAliveTimeout: 4_000 })
          : undefined,
      }
    })
    return this.#dispatchers
  }

  async post(req: HttpRequest): Promise<HttpResponse> {
    const { request, direct, proxied } = await this.#ready()
    const timeout = AbortSignal.timeout(req.timeoutMs)
    const signal = req.signal === undefined ? timeout : AbortSignal.any([req.signal, timeout])
    const viaProxy = proxied !== undefined && !isLoopback(req.url.hostname)
    trace.debug({ url: redactUrl(req.url.href), proxy: viaProxy, timeoutMs: req.timeoutMs }, 'POST')
    try {
      const res = await request(req.url, {
        method: 'POST',
        headers: req.headers,
        body: req.body,
        signal,
        dispatcher: viaProxy ? proxied : direct,
      })
      const headers: Record<string, string | undefined> = {}
      for (const [name, value] of Object.entries(res.headers)) {
        headers[name] = Array.isArray(value) ? value.join(', ') : value
      }
      const declared = Number(headers['content-length'])
      if (declared > req.maxResponseBytes) {
        res.body.destroy()
        throw tooLargeError(req.maxResponseBytes, res.statusCode)
      }
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        if (size > req.maxResponseBytes) {
          res.body.destroy()
          throw tooLargeError(req.maxResponseBytes, res.statusCode)
        }
        chunks.push(chunk as Buffer)
      }
      trace.debug({ status: res.statusCode, bytes: size }, 'answered')
      return { status: res.statusCode, headers, body: Buffer.concat(chunks).toString('utf8') }
    } catch (error) {
      trace.debug({ error: (error as { code?: unknown })?.code ?? (error as Error)?.name }, 'failed')
      if (req.signal?.aborted) throw new AbortError(req.signal.reason)
      if (timeout.aborted) throw timeoutError(req.timeoutMs, error)
      if (error instanceof ProvisioningError) throw error
      throw networkError(error)
    }
  }

  /** Close idle connections. Pending requests finish first. */
  async close(): Promise<void> {
    if (this.#dispatchers === undefined) return
    const { direct, proxied } = await this.#dispatchers
    await Promise.all([direct.close(), proxied?.close()])
  }
}

const secureContexts = new Map<string, SecureContext>()

/**
 * The secure context for these TLS options, shared by transports with the same ones (a gateway provisioning many
 * devices, a retry on a new connection): parsing PEMs and building the trust store costs more than the handshake's
 * own signature check. Keyed by a digest of the PEMs; a few at most are kept.
 */
function sharedSecureContext(
  tls: TlsOptions,
  createSecureContext: typeof import('node:tls').createSecureContext,
): SecureContext | undefined {
  const { ca, cert, key, passphrase } = tls
  if (ca === undefined && cert === undefined && key === undefined) return undefined // the system roots: Node's default
  const digest = nodeCrypto().createHash('sha256')
  for (const part of [ca, cert, key, passphrase]) {
    for (const item of Array.isArray(part) ? part : [part])
      digest.update(item === undefined ? '\0' : item).update('\u0001')
  }
  const id = digest.digest('hex')
  let context = secureContexts.get(id)
  if (context === undefined) {
    context = createSecureContext({ ca, cert, key, passphrase })
    if (secureContexts.size >= 16) secureContexts.clear()
    secureContexts.set(id, context)
  }
  return context
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]'
}
