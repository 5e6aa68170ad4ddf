/**
 * The default transport: undici's `request` through dispatchers of our own, so a custom CA or client certificate
 * applies to provisioning only (`https.globalAgent` does not affect fetch/undici, and we never touch globals).
 *
 * Proxies: HTTPS_PROXY / HTTP_PROXY / NO_PROXY (either case) are honoured through undici's EnvHttpProxyAgent, which
 * tunnels with CONNECT; the TLS settings then apply to the server behind the tunnel (`requestTls`). Like Go's
 * net/http, `localhost`, 127.0.0.1 and ::1 never go through a proxy (other addresses follow NO_PROXY).
 *
 * undici is imported, and the dispatchers made, on the first request: a device that boots from its cache never loads
 * it (it is the largest part of the import cost, docs/performance.md).
 *
 * `timeoutMs` and the caller's signal stop an attempt at any stage, connect and TLS handshake included (undici alone
 * waits out its own 10 s connect timeout), and the attempt's sockets are destroyed then: see `post()`. Knowing which
 * sockets carry an attempt takes two of undici's diagnostics channels, subscribed once per process (the one global
 * thing this module does; it only reads). Certificate verification is explicit, never NODE_TLS_REJECT_UNAUTHORIZED's.
 */
import type { Duplex } from 'node:stream'
import type { buildConnector, Dispatcher } from 'undici'
import { AbortError } from '../errors.js'
import { traceFor } from '../logger.js'
import { redactUrl } from '../redact.js'
import type { ClientCertificate, HttpRequest, HttpResponse, HttpTransport } from './http-transport.js'
import { sharedSecureContext, type TlsOptions } from './secure-context.js'

export type { TlsOptions } from './secure-context.js'

import { networkError, TransportError, timeoutError, tooLargeError } from './transport-error.js'

const trace = traceFor('transport')

type Connector = buildConnector.connector

const PROXY_VARIABLES = ['https_proxy', 'HTTPS_PROXY', 'http_proxy', 'HTTP_PROXY']

interface Dispatchers {
  request: typeof import('undici').request
  direct: Dispatcher
  /** Only when the environment names a proxy (read once, on the transport's first request). */
  proxied: Dispatcher | undefined
}

/** One `post()` in flight, and the sockets that carry it: destroyed if it is stopped before it settles. */
interface Attempt {
  readonly signal: AbortSignal
  readonly sockets: Set<Duplex>
}

/**
 * The attempt whose `request()` call is on the stack. Inside that call undici makes the request and, when no idle
 * connection is at hand, starts a new one (a busy pool connects again rather than queue; a proxy's CONNECT is
 * dispatched before its first await), both synchronously: so the connectors and the subscribers below know which
 * attempt a request or a new socket is for. An AsyncLocalStorage would say the same at a price: on Node 20 it turns on
 * promise hooks for the whole process. test/transport-limits.test.ts checks that the server sees a stopped attempt's
 * connection closed: new or kept alive, direct or through a proxy.
 */
let opening: Attempt | undefined

/** `connect`, with each socket it opens handed to the attempt that asked for it. */
function tracked(connect: Connector): Connector {
  return (options, callback) => {
    const socket = (connect as (...args: Parameters<Connector>) => Duplex | undefined)(options, callback)
    if (socket !== undefined) opening?.sockets.add(socket)
  }
}

/**
 * undici names an https:// proxy in SNI by its host even when that is an IP address, which RFC 6066 forbids: Node 26
 * refuses it (ERR_INVALID_ARG_VALUE; earlier majors warn, DEP0123). Without a servername the certificate is still
 * checked against the address.
 */
function noIpServername(connect: Connector): Connector {
  return (options, callback) => {
    const { servername } = options as { servername?: string | null }
    const { isIP } = process.getBuiltinModule('node:net') // a proxy connect only: not worth loading at import
    const ip = typeof servername === 'string' && isIP(servername.replace(/^\[|\]$/g, '')) !== 0
    // The socket is returned for tracked(), which wraps this.
    return (connect as (...args: Parameters<Connector>) => Duplex | undefined)(
      ip ? { ...options, servername: undefined } : options,
      callback,
    )
  }
}

/** undici's requests made for our attempts. */
const attempts = new WeakMap<object, Attempt>()

/**
 * A kept-alive socket was opened for an earlier attempt: undici's diagnostics channels tell which one a request is
 * written on (later, not inside `request()`: undici first lets pending bytes or a FIN on the idle socket arrive).
 * Without this, undici's own abort of a written request would close the socket as "informational" and connect once
 * more for the request before it noticed the abort. Others' requests (Node's fetch publishes here too) are not
 * in the map, and are ignored.
 */
function watchRequests(): void {
  if (watching) return
  watching = true
  const channels = process.getBuiltinModule('node:diagnostics_channel')
  channels.subscribe('undici:request:create', (message) => {
    if (opening !== undefined) attempts.set((message as { request: object }).request, opening)
  })
  channels.subscribe('undici:client:sendHeaders', (message) => {
    const { request, socket } = message as { request: object; socket: Duplex }
    attempts.get(request)?.sockets.add(socket)
  })
}
let watching = false

export class UndiciTransport implements HttpTransport {
  readonly #tls: TlsOptions
  #dispatchers: Promise<Dispatchers> | undefined
  /** The dispatchers of the last request with a client certificate of its own (a renewal's), and that certificate. */
  #renewal: { certificate: ClientCertificate; dispatchers: Promise<Dispatchers> } | undefined

  constructor(tls: TlsOptions = {}) {
    // A frozen one (resolved options) cannot change under us: no copy per bootstrap.
    this.#tls = Object.isFrozen(tls) ? tls : { ...tls }
  }

  /**
   * The dispatchers for a request: the transport's own, or for a request with a client certificate of its own (the
   * device's, when it renews: the configured one's passphrase is not its key's), one set kept for the last such
   * certificate, and closed when another takes its place (a renewal a day at most).
   */
  #ready(certificate: ClientCertificate | undefined): Promise<Dispatchers> {
    if (certificate === undefined) {
      this.#dispatchers ??= dispatchersFor(this.#tls)
      return this.#dispatchers
    }
    const last = this.#renewal
    if (last?.certificate.cert === certificate.cert && last.certificate.key.equals(certificate.key)) {
      return last.dispatchers
    }
    last?.dispatchers.then(closeDispatchers).catch(() => {}) // the previous certificate's: closed, whatever it says
    const { cert, key } = certificate
    const dispatchers = dispatchersFor({ ...this.#tls, cert, key, passphrase: undefined })
    this.#renewal = { certificate, dispatchers }
    return dispatchers
  }

  /**
   * Settles as soon as the caller's signal or `timeoutMs` fires, whatever stage the exchange is at (connect, TLS
   * handshake, headers, body), and destroys the sockets opened for it: undici alone would let an abort wait for a
   * pending connect, up to its own 10 s connect timeout.
   */
  async post(req: HttpRequest): Promise<HttpResponse> {
    const { signal } = req
    if (signal?.aborted) throw new AbortError(signal.reason)
    const stop = new AbortController()
    const attempt: Attempt = { signal: stop.signal, sockets: new Set() }
    let reject: (error: Error) => void = () => {}
    const stopped = new Promise<never>((_resolve, fail) => {
      reject = fail
    })
    const end = (error: Error) => {
      reject(error)
      // Sockets first, with an error of ours: undici then fails the request and forgets it. Its own abort (next)
      // would close the socket as "informational" and connect again for the request before it noticed the abort.
      for (const socket of attempt.sockets) socket.destroy(error)
      stop.abort(error)
    }
    const onAbort = () => end(new AbortError(signal?.reason))
    const timer = setTimeout(() => end(timeoutError(req.timeoutMs)), req.timeoutMs)
    signal?.addEventListener('abort', onAbort, { once: true })
    const exchange = this.#exchange(req, attempt)
    exchange.catch(() => {}) // after a stop it rejects too, unobserved
    try {
      return await Promise.race([exchange, stopped])
    } catch (error) {
      trace.debug({ error: (error as { code?: unknown })?.code ?? (error as Error)?.name }, 'failed')
      if (signal?.aborted) throw new AbortError(signal.reason)
      if (stop.signal.aborted) throw stop.signal.reason
      if (error instanceof TransportError) throw error
      throw networkError(error)
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }

  async #exchange(req: HttpRequest, attempt: Attempt): Promise<HttpResponse> {
    const { request, direct, proxied } = await this.#ready(req.clientCertificate)
    attempt.signal.throwIfAborted()
    const viaProxy = proxied !== undefined && !isLoopback(req.url.hostname)
    trace.debug({ url: redactUrl(req.url.href), proxy: viaProxy, timeoutMs: req.timeoutMs }, 'POST')
    let pending: ReturnType<typeof request>
    opening = attempt
    try {
      pending = request(req.url, {
        method: 'POST',
        headers: req.headers,
        body: req.body,
        signal: attempt.signal,
        // A backstop only: the attempt's own timer fires first, and destroys its sockets.
        headersTimeout: req.timeoutMs,
        bodyTimeout: req.timeoutMs,
        dispatcher: viaProxy ? proxied : direct,
      })
    } finally {
      opening = undefined
    }
    const res = await pending
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
  }

  /** Close idle connections. Pending requests finish first. */
  async close(): Promise<void> {
    const all = [this.#dispatchers, this.#renewal?.dispatchers]
    await Promise.all(all.map((dispatchers) => dispatchers?.then(closeDispatchers)))
  }
}

/** undici and the dispatchers for `tls`, made on a first request (see the module's comment). */
function dispatchersFor(tls: TlsOptions): Promise<Dispatchers> {
  return Promise.all([import('undici'), import('node:tls')]).then(([undici, nodeTls]) => {
    const { Agent, buildConnector, EnvHttpProxyAgent, Pool, request } = undici
    watchRequests()
    // One secure context for every connection (Node would otherwise parse the PEMs into a new one each time).
    const secureContext = sharedSecureContext(tls, nodeTls.createSecureContext)
    // rejectUnauthorized spelled out: left absent, tls.connect reads NODE_TLS_REJECT_UNAUTHORIZED from the
    // environment, and `0` there would switch verification off.
    const serverTls = {
      rejectUnauthorized: true,
      ...(tls.servername ? { servername: tls.servername } : {}),
      ...(secureContext ? { secureContext } : {}),
    }
    const connect = tracked(buildConnector(serverTls))
    // Read with the agents, on the first request (EnvHttpProxyAgent reads the same variables then): a cached boot,
    // which makes none, does not read the environment at all.
    const proxy = PROXY_VARIABLES.some((name) => (process.env[name] ?? '') !== '')
    return {
      request,
      direct: new Agent({ connect, keepAliveTimeout: 4_000 }),
      proxied: proxy
        ? new EnvHttpProxyAgent({
            connect, // for the hosts NO_PROXY sends direct
            requestTls: serverTls,
            proxyTls: { rejectUnauthorized: true }, // an https:// proxy, on the system roots
            clientFactory: (origin, options) =>
              new Pool(origin, {
                ...options,
                connect: tracked(noIpServername((options as { connect: Connector }).connect)),
              }),
            keepAliveTimeout: 4_000,
          })
        : undefined,
    }
  })
}

async function closeDispatchers({ direct, proxied }: Dispatchers): Promise<void> {
  await Promise.all([direct.close(), proxied?.close()])
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '127.0.0.1' || hostname === '[::1]'
}
