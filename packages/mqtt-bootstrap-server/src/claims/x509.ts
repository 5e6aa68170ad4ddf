/**
 * X.509 claims (DESIGN.md "Authenticated claims", issue 15): the client certificate of a mutual-TLS request as the
 * proof of a claim, instead of an HMAC signature. The certificate must chain to a configured factory CA, be valid now
 * (by the verifier's clock), and name the claimed identity (its subject's CN, or one SAN of the kind the operator
 * names). The TLS handshake has proved that the peer holds the certificate's key (its CertificateVerify), whatever
 * the server's `rejectUnauthorized`: what is left to judge, the chain and the name, is judged here.
 *
 * Why our own chain check and not `socket.authorized`: Node sets `authorized` against the *server's* `ca` option, with
 * the system clock. The verifier is a library piece that may sit on any server (an Express app whose `ca` trusts other
 * authorities too, a server whose `ca` was not set at all): trusting `authorized` would let whatever the server trusts
 * claim devices, and would couple the verdict to TLS options this module cannot see. So the anchors are this
 * verifier's `ca` only, the certificates the client sent are untrusted candidates for intermediates, and the dates are
 * checked against the verifier's clock (the same clock that judges signatures' `created`).
 */
import { X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls'

/**
 * Which name of a device certificate is the device's identity: its subject's common name, one subjectAltName of a
 * kind (there must be exactly one of that kind), or a function of the parsed certificate.
 */
export type CertificateSubject = 'CN' | 'DNS' | 'URI' | 'email' | ((certificate: X509Certificate) => unknown)

export interface ClientCertificateOptions {
  /** The factory CA certificate(s) device certificates must chain to: PEM (one or more blocks), or several. */
  ca: string | Buffer | readonly (string | Buffer)[]
  /**
   * Which name is the identity. `'CN'`: the subject's common name (exactly one); `'DNS'`, `'URI'`, `'email'`: the
   * subjectAltName of that kind (exactly one; a certificate with two of them names no identity). @default 'CN'
   */
  subject?: CertificateSubject
}

export const CLIENT_CERTIFICATE_DEFAULTS = Object.freeze({ subject: 'CN' as const })

/** More intermediates than a factory PKI has (root, issuing CA): a longer chain is refused, not walked. */
const MAX_INTERMEDIATES = 4
/** id-kp-clientAuth, and anyExtendedKeyUsage: a certificate limited to other uses (a server's) is no device's. */
const CLIENT_AUTH = new Set(['1.3.6.1.5.5.7.3.2', '2.5.29.37.0'])
const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g
const SUBJECTS: ReadonlySet<unknown> = new Set(['CN', 'DNS', 'URI', 'email'])

/**
 * The judge of one request: the identity its client certificate proves (to compare with the claimed one), or
 * `undefined` when it proves none (no certificate, another CA, out of its validity, no single name of the kind).
 * TypeErrors naming the option for bad options, before any request.
 */
export function certificateJudge(
  options: ClientCertificateOptions,
  clock: { now(): number },
): (request: IncomingMessage) => string | undefined {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('Expected `clientCertificate` to be an object: { ca, subject? }')
  }
  const anchors = parseAnchors(options.ca)
  const subject = options.subject ?? CLIENT_CERTIFICATE_DEFAULTS.subject
  if (typeof subject !== 'function' && !SUBJECTS.has(subject)) {
    throw new TypeError(
      `Expected \`clientCertificate.subject\` to be 'CN', 'DNS', 'URI', 'email' or a function, got ${String(subject)}`,
    )
  }
  return (request) => {
    // Both must hold: the server's TLS stack (OpenSSL) verified the chain against its `ca` (path lengths, name
    // constraints, critical extensions, which the check below does not read), and the chain reaches this verifier's
    // own anchors by its own clock. The server's `ca` must hold the factory CA (serve gives it --client-ca).
    if ((request.socket as Partial<TLSSocket> | undefined)?.authorized !== true) return undefined
    const peer = peerCertificates(request)
    if (peer === undefined) return undefined
    const [leaf, ...presented] = peer.chain
    if (leaf === undefined || !chainsTo(leaf, presented, anchors, clock.now())) return undefined
    try {
      const name = typeof subject === 'function' ? subject(leaf) : nameOf(peer.detailed, subject)
      return typeof name === 'string' && name !== '' ? name : undefined
    } catch {
      return undefined // the certificate is the client's: a subject function that cannot cope with it proves nothing
    }
  }
}

/**
 * Whether `request` came over TLS with a client certificate (any: judged later). Not `getPeerX509Certificate()`: on
 * Node 20, once it has been called, `getPeerCertificate(true)` no longer has the issuers the client sent (tried here),
 * and a device certificate from an issuing CA would be refused.
 */
export function presentsCertificate(request: IncomingMessage): boolean {
  const socket = request.socket as Partial<TLSSocket> | undefined
  return typeof socket?.getPeerCertificate === 'function' && Buffer.isBuffer(socket.getPeerCertificate()?.raw)
}

function parseAnchors(ca: ClientCertificateOptions['ca']): X509Certificate[] {
  const pems = (Array.isArray(ca) ? ca : [ca]).flatMap((one: unknown) =>
    typeof one === 'string' || Buffer.isBuffer(one) ? (one.toString().match(CERTIFICATE_BLOCK) ?? []) : [],
  )
  if (pems.length === 0) throw new TypeError('Expected `clientCertificate.ca` to be PEM CA certificate(s)')
  return pems.map((pem, index) => {
    let certificate: X509Certificate
    try {
      certificate = new X509Certificate(pem)
    } catch {
      throw new TypeError(`Expected \`clientCertificate.ca\`: certificate ${index + 1} does not parse`)
    }
    if (!certificate.ca) {
      throw new TypeError(
        `Expected \`clientCertificate.ca\` to hold CA certificates: certificate ${index + 1} (${certificate.subject.replace(/\n/g, ', ')}) is not a CA`,
      )
    }
    return certificate
  })
}

/** The client's certificate and those it sent with it (or Node added from the server's store), leaf first. */
function peerCertificates(
  request: IncomingMessage,
): { detailed: DetailedPeerCertificate; chain: X509Certificate[] } | undefined {
  const socket = request.socket as Partial<TLSSocket> | undefined
  if (typeof socket?.getPeerCertificate !== 'function') return undefined
  const detailed = socket.getPeerCertificate(true)
  if (!Buffer.isBuffer(detailed?.raw)) return undefined // `{}`: no certificate
  const chain: X509Certificate[] = []
  const seen = new Set<object>()
  // Bounded: a self-signed issuer points at itself, and a chain longer than a factory PKI's is not walked.
  for (let at: DetailedPeerCertificate | undefined = detailed; at?.raw && !seen.has(at); at = at.issuerCertificate) {
    if (chain.length > MAX_INTERMEDIATES + 1) break
    seen.add(at)
    try {
      chain.push(new X509Certificate(at.raw))
    } catch {
      return undefined
    }
  }
  return { detailed, chain }
}

/** Whether `leaf` (a device's: no CA, fit for client authentication) chains to one of `anchors`, all valid at `now`. */
function chainsTo(leaf: X509Certificate, presented: X509Certificate[], anchors: X509Certificate[], now: number) {
  const usages = leaf.keyUsage as string[] | undefined // Node names the extended key usages so
  if (leaf.ca || (usages !== undefined && !usages.some((usage) => CLIENT_AUTH.has(usage)))) return false
  let current = leaf
  for (let depth = 0; depth <= MAX_INTERMEDIATES; depth++) {
    if (!validAt(current, now)) return false
    const issued = (by: X509Certificate) => current.checkIssued(by) && current.verify(by.publicKey)
    const anchor = anchors.find(issued)
    if (anchor !== undefined) return validAt(anchor, now)
    // An intermediate the client sent: trusted only as far as it is itself issued, up to an anchor.
    const next = presented.find((candidate) => candidate.ca && !candidate.raw.equals(current.raw) && issued(candidate))
    if (next === undefined) return false
    current = next
  }
  return false
}

function validAt(certificate: X509Certificate, now: number): boolean {
  const from = Date.parse(certificate.validFrom)
  const to = Date.parse(certificate.validTo)
  return Number.isFinite(from) && Number.isFinite(to) && from <= now && now <= to
}

/** The certificate's one name of `kind`, or `undefined` (none, or more than one: ambiguous). */
function nameOf(certificate: DetailedPeerCertificate, kind: 'CN' | 'DNS' | 'URI' | 'email'): string | undefined {
  if (kind === 'CN') {
    const cn: unknown = certificate.subject?.CN
    return typeof cn === 'string' ? cn : undefined // several CNs come as an array: no single identity
  }
  const names = subjectAltNames(certificate.subjectaltname ?? '')
  const found = names?.filter((name) => name.kind === kind) ?? []
  return found.length === 1 ? found[0]?.value : undefined
}

/**
 * Node's subjectAltName text (`DNS:a, URI:b, email:c`), where a value that would be ambiguous (a comma, a quote) is
 * written as a JSON string literal (Node's fix of CVE-2021-44532); `undefined` for text that does not parse.
 */
export function subjectAltNames(text: string): Array<{ kind: string; value: string }> | undefined {
  const entry = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/y
  const names: Array<{ kind: string; value: string }> = []
  while (entry.lastIndex < text.length) {
    const match = entry.exec(text)
    if (match === null) return undefined
    const [, kind = '', raw = ''] = match
    try {
      names.push({ kind, value: raw.startsWith('"') ? (JSON.parse(raw) as string) : raw })
    } catch {
      return undefined
    }
  }
  return names
}
