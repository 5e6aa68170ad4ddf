/**
 * The default transport: undici's `request` through dispatchers of our own, so a custom CA or client certificate
 * applies to provisioning only (`https.globalAgent` does not affect fetch/undici, and we never touch globals).
 *
 * Proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY (either case) are honoured through undici's EnvHttpProxyAgent, which
 * tunnels with CONNECT; the TLS settings then apply to the server behind the tunnel (`requestTls`). Like Go's
 * net/http, `localhost`, 127.0.0.1 and ::1 never go through a proxy (other addresses follow NO_PROXY).
 */
import { Agent, type Dispatcher, EnvHttpProxyAgent, request } from 'undici'
import { AbortError, ProvisioningError } from '../errors.js'
import type { HttpRequest, HttpResponse, HttpTransport } from './http-transport.js'
import { networkError, timeoutError, tooLargeError } from './http-transport.js'

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

export class UndiciTransport implements HttpTransport {
  readonly #direct: Agent
  /** Only when the environment names a proxy (read once, at construction). */
  readonly #proxied: Dispatcher | undefined

  constructor(tls: TlsOptions = {}) {
    this.#direct = new Agent({ connect: { ...tls }, keepAliveTimeout: 4_000 })
    const proxy = PROXY_VARIABLES.some((name) => (process.env[name] ?? '') !== '')
    this.#proxied = proxy
      ? new EnvHttpProxyAgent({ connect: { ...tls }, requestTls: { ...tls }, keepAliveTimeout: 4_000 })
      : undefined
  }

  async post(req: HttpRequest): Promise<HttpResponse> {
    const timeout = AbortSignal.timeout(req.timeoutMs)
    const signal = req.signal === undefined ? timeout : AbortSignal.any([req.signal, timeout])
    try {
      const res = await request(req.url, {
        method: 'POST',
        headers: req.headers,
        body: req.body,
        signal,
        dispatcher: this.#proxied === undefined || isLoopback(req.url.hostname) ? this.#direct : this.#proxied,
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
      return { status: res.statusCode, headers, body: Buffer.concat(chunks).toString('utf8') }
    } catch (error) {
      if (req.signal?.aborted) throw new AbortError(req.signal.reason)
      if (timeout.aborted) throw timeoutError(req.timeoutMs, error)
      if (error instanceof ProvisioningError) throw error
      throw networkError(error)
    }
  }

  /** Close idle connections. Pending requests finish first. */
  async close(): Promise<void> {
    await Promise.all([this.#direct.close(), this.#proxied?.close()])
  }
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]'
}
