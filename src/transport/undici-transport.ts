/**
 * The default transport: undici's `request` through an `Agent` of our own, so a custom CA or client certificate
 * applies to provisioning only (`https.globalAgent` does not affect fetch/undici, and we never touch globals).
 */
import { Agent, request } from 'undici'
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

export class UndiciTransport implements HttpTransport {
  readonly #agent: Agent

  constructor(tls: TlsOptions = {}) {
    this.#agent = new Agent({ connect: { ...tls }, keepAliveTimeout: 4_000 })
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
        dispatcher: this.#agent,
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
    await this.#agent.close()
  }
}
