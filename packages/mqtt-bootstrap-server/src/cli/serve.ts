/**
 * `mqtt-bootstrap serve`: the reference provisioning server over a device registry file or a PostgreSQL registry
 * (`--database`, serve-database.ts), over HTTPS.
 *
 * Without --cert it serves a certificate signed by a CA of its own, kept at --ca-out (the certificate) and --ca-key
 * (its key, 0600): a restart reuses both, so devices that trust the first start keep working. A new CA is written only
 * once the server listens, and never over an existing file: a start that fails (a busy port) changes nothing.
 */
import { constants } from 'node:crypto'
import { once } from 'node:events'
import { type IncomingMessage, STATUS_CODES } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { CLAIM_LIMITS_DEFAULTS as LIMITS } from '../claims/limits.js'
import { trustedProxies } from '../claims/peer.js'
import type { ClaimVerifier } from '../claims/verify.js'
import { createProvisioningHandler } from '../handler.js'
import { rejectedLine, requestLine, tlsFailureLine } from './access-log.js'
import { defaultCaKeyPath, loadCa, saveCa } from './ca-store.js'
import { type CertificateAuthority, generateCa, issueServerCertificate } from './certificates.js'
import { certificateNames, claimHosts, subjectAltNames } from './claim-hosts.js'
import { logError } from './error-log.js'
import { EXIT, parsePortOption, UsageError } from './io.js'
import { type Issuing, type IssuingFlags, issuerFromFlags } from './issuing.js'
import { readCertificateOption, readKeyPair } from './pem.js'
import { type RegistryFlags, type ServedRegistry, servedRegistry } from './serve-database.js'

export interface ServeFlags extends RegistryFlags, IssuingFlags {
  port: string
  host: string
  path: string
  cert?: string
  key?: string
  caOut: string
  /** Where the generated CA's key is kept. @default `<caOut>.key` */
  caKey?: string
  /** More names or addresses for a generated certificate. */
  san?: string[]
  /** The public origin signed claims name (`@target-uri`), behind a proxy. @default from the Host header */
  origin?: string
  /** Abuse limits for failed claims; `--no-limits` turns them off. @default true */
  limits?: boolean
  /** The proxies (addresses or CIDRs) whose X-Forwarded-For names the peer, for the limits. */
  trustProxy?: string[]
  /** Factory CA certificate(s): X.509 claims, a client certificate from it naming the identity (CN) proves a claim. */
  clientCa?: string
}

/** The status Node's HTTP server answers for a parser error (its own choice when nobody listens for 'clientError'). */
const CLIENT_ERROR_STATUS: Readonly<Record<string, number>> = {
  HPE_HEADER_OVERFLOW: 431,
  ERR_HTTP_REQUEST_TIMEOUT: 408,
}

export async function serveCommand(flags: ServeFlags): Promise<number> {
  // Issue 17: certificates for devices' own keys; the CA checked before the registry opens (a wrong file is exit 2).
  const issuing = issuerFromFlags(flags)
  const registry = await servedRegistry(flags)
  try {
    return await serveFrom(registry, flags, issuing)
  } finally {
    await registry.close().catch(() => {})
  }
}

async function serveFrom(registry: ServedRegistry, flags: ServeFlags, issuing: Issuing | undefined): Promise<number> {
  const clientCa = readCertificateOption(flags.clientCa, '--client-ca')
  // A "none" registry accepts every claim: a certificate would prove nothing more, and saying it does would mislead.
  if (clientCa !== undefined && registry.attestation !== 'group-key') {
    throw new UsageError(`--client-ca: ${registry.unsigned}, so no claim needs a proof`)
  }
  const clientCertificate = clientCa === undefined ? {} : { clientCertificate: { ca: clientCa } }
  let verify: ClaimVerifier
  try {
    verify = registry.verifier({ ...clientCertificate, ...(flags.origin ? { origin: flags.origin } : {}) })
  } catch (error) {
    throw new UsageError(`--origin: ${(error as Error).message}`)
  }
  try {
    trustedProxies(flags.trustProxy ?? [])
  } catch (error) {
    throw new UsageError(`--trust-proxy: ${(error as Error).message}`)
  }
  const port = parsePortOption(flags.port, '--port')
  const own = readKeyPair(flags)
  let tls: { cert: string; key: string }
  let caNote: string
  /** The names the certificate carries: the only hosts a claim may name, without --origin. */
  let names: string[]
  /** A CA made by this start, written once the server listens. */
  let newCa: CertificateAuthority | undefined
  const caKey = flags.caKey ?? defaultCaKeyPath(flags.caOut)
  if (own !== undefined) {
    tls = own
    caNote = 'your certificate'
    names = subjectAltNames(own.cert)
    if (!flags.origin && registry.attestation === 'group-key' && claimHosts(names).length === 0) {
      throw new UsageError(
        '--cert: the certificate names no host (no subjectAltName, no common name) a signed claim could name: ' +
          'give the public origin with --origin',
      )
    }
  } else {
    names = certificateNames(flags.host, flags.san ?? [])
    const kept = loadCa(flags.caOut, caKey)
    if (kept === undefined) newCa = await generateCa()
    tls = await issueServerCertificate(kept ?? (newCa as CertificateAuthority), names)
    caNote = `for ${names.join(', ')}, signed by the CA ${kept ? 'kept' : 'written'} at ${flags.caOut} (key ${caKey}); clients trust it with --ca ${flags.caOut}`
  }

  const log = (line: string) => console.log(line)
  // Each request's peer, read when it arrives: a request the handler destroys (a body too large or too slow) or a
  // client that went away has forgotten it by the time its line is written, and those are the lines that matter.
  const peerOf = new WeakMap<IncomingMessage, string | undefined>()
  const handler = createProvisioningHandler({
    resolve: registry.resolve,
    // Follows the file: a group key added later is enforced from the next request on.
    verify: (claim) => verify(claim),
    // On by default (issue 15): failures counted per address and per the registry's identity.
    limits: flags.limits !== false && registry.limits(),
    ...(registry.claims === undefined ? {} : { claims: registry.claims }),
    ...(issuing === undefined ? {} : { issue: issuing.issuer }),
    trustProxy: flags.trustProxy ?? [],
    onError: (error) => logError((error as Error).message),
    // Issue 15: a device back after a factory reset (or one key used twice), in the access log's columns.
    onReclaim: ({ time, peer, identity, previousTime: before, sameConfiguration: same }) =>
      log(
        `${requestLine({ time, peer, method: 're-claim', url: '', status: undefined, code: undefined, identity })} ` +
          `(served before ${before.toISOString()}${same ? '' : '; its configuration changed since'})`,
      ),
    onRequest: (outcome) => {
      const { request, status, code, data, renewal } = outcome
      const peer = peerOf.get(request)
      const { method, url } = request
      const identity = registry.identityOf(data)
      log(requestLine({ time: new Date(), peer, method, url, status, code, identity, renewal }))
      registry.audit?.(outcome)
    },
  })
  // Client certificates, asked for and never required: a factory certificate proves an X.509 claim (--client-ca), and
  // a certificate of the issuing CA a renewal (--issuing-ca, issue 18); a device without one (a first claim) signs
  // instead. `ca` holds both: what the server names in its CertificateRequest, so that a client that picks its
  // certificate by issuer offers the right one. No session tickets: a resumed session no longer carries the
  // intermediates a device sent (its next X.509 claim would be refused), nor proves the key anew (no
  // CertificateVerify); without tickets every connection's certificate is the one its own handshake proved, which a
  // renewal's certificate must be: the device's current one, not that of the connection a ticket came from.
  const clientCas = [...(issuing === undefined ? [] : [issuing.ca]), ...(clientCa === undefined ? [] : [clientCa])]
  const mutual =
    clientCas.length === 0
      ? {}
      : { requestCert: true, rejectUnauthorized: false, ca: clientCas, secureOptions: constants.SSL_OP_NO_TICKET }
  const server = createServer({ ...tls, ...mutual, noDelay: true }, (req, res) => {
    peerOf.set(req, req.socket.remoteAddress)
    if (req.url?.split('?')[0] !== flags.path) {
      res.once('close', () =>
        log(
          requestLine({
            time: new Date(),
            peer: peerOf.get(req),
            method: req.method,
            url: req.url,
            status: res.headersSent ? res.statusCode : undefined,
            code: '10404',
            identity: undefined,
          }),
        ),
      )
      res.writeHead(404, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end('{"code":"10404","message":"not found"}')
      req.resume()
      return
    }
    handler(req, res)
  })
  // A failed handshake's TLS socket is already destroyed and has forgotten its peer: the TCP socket under it (its
  // `_parent`, Node's own name) is asked at connection time, when it still knows.
  const peers = new WeakMap<object, string | undefined>()
  server.on('connection', (socket: Socket) => peers.set(socket, socket.remoteAddress))
  server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: TLSSocket & { _parent?: object }) => {
    const peer = socket.remoteAddress ?? (socket._parent === undefined ? undefined : peers.get(socket._parent))
    log(tlsFailureLine(new Date(), peer, error.code ?? error.message))
  })
  // What Node's parser refuses never reaches the handler: answered here as Node would (431, 408, else 400), logged.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex & { remoteAddress?: string }) => {
    const status = CLIENT_ERROR_STATUS[error.code ?? ''] ?? 400
    if (error.code !== 'ECONNRESET')
      log(rejectedLine(new Date(), socket.remoteAddress, status, error.code ?? error.message))
    if (socket.writable && error.code !== 'ECONNRESET')
      socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\n\r\n`)
    else socket.destroy()
  })
  // Slow clients hold nothing for long: the headers within 10 s, the whole request within 15 s.
  server.headersTimeout = 10_000
  server.requestTimeout = 15_000
  const shown = flags.host.includes(':') ? `[${flags.host}]` : flags.host
  // Listened for before listening: a stop asked for while starting (a supervisor, a test) is a clean stop too.
  const stopped = Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')])
  try {
    server.listen(port, flags.host)
    await Promise.race([
      once(server, 'listening'),
      once(server, 'error').then(([error]) => {
        throw error
      }),
    ])
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    const why =
      code === 'EADDRINUSE'
        ? 'the port is in use (another mqtt-bootstrap serve?); choose another with --port'
        : code === 'EACCES'
          ? 'not allowed (a port below 1024 needs privileges)'
          : code === 'EADDRNOTAVAIL'
            ? 'no such local address (--host)'
            : (code ?? (error as Error).message)
    console.error(`error: cannot listen on ${shown}:${port}: ${why}. Nothing was written.`)
    return EXIT.FAILED
  }
  if (newCa !== undefined) {
    try {
      saveCa(newCa, flags.caOut, caKey)
    } catch (error) {
      server.close()
      const code = (error as NodeJS.ErrnoException).code
      const why = code === 'EEXIST' ? 'another start wrote one meanwhile; start again to use it' : (code ?? 'failed')
      console.error(`error: cannot write the CA to ${flags.caOut} and ${caKey}: ${why}`)
      return EXIT.FAILED
    }
  }
  const { port: bound } = server.address() as AddressInfo
  // A claim names the server it was meant for (@target-uri): one for another host, sent here with that Host, is not
  // accepted. --origin pins the one public name instead (behind a proxy).
  if (!flags.origin) verify = registry.verifier({ ...clientCertificate, hosts: claimHosts(names) })
  console.log(`provisioning server listening on https://${shown}:${bound}${flags.path}`)
  console.log(`registry ${registry.summary}; certificate: ${caNote}`)
  for (const line of registry.claimLines(flags.origin ?? claimHosts(names).join(', '), flags.limits !== false)) {
    console.log(line)
  }
  if (issuing !== undefined) {
    console.log(`certificates: for a CSR sent with a claim (CN the deviceName), ${issuing.summary}`)
    console.log(
      'renewals: a claim whose TLS client certificate is one of these, still valid, needs no signature; it gets ' +
        "the configuration of that certificate's deviceName only",
    )
  }
  if (clientCa !== undefined) {
    console.log(`claims: or a client certificate from the CA in ${flags.clientCa}, its CN the identity (mutual TLS)`)
  }
  console.log(
    flags.limits === false
      ? 'abuse limits: off (--no-limits)'
      : `abuse limits: ${LIMITS.maxFailures} failed claims a minute per address or identity, then 429 (Retry-After ` +
          `${LIMITS.retryAfterSeconds} s, doubling up to ${LIMITS.maxRetryAfterSeconds} s); signed claims never limited` +
          (flags.trustProxy?.length ? `; X-Forwarded-For believed from ${flags.trustProxy.join(', ')}` : ''),
  )
  console.log('access log: time peer method path status code identity; stop with Ctrl-C')

  const signal = await stopped
  console.log(`\n${String(signal[0] ?? 'signal')}: stopping`)
  server.closeAllConnections()
  server.close()
  return EXIT.OK
}
