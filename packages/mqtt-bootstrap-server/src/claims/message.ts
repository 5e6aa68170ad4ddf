/**
 * What a claim's signature covers, as the server sees it: the `@target-uri` rebuilt from the request, and the
 * Content-Digest (RFC 9530) checked against the body's bytes.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'

/** `origin` as a URL origin (scheme, host, port), or a TypeError: no path, query, fragment or credentials. */
export function checkOrigin(origin: string): string {
  let url: URL | undefined
  try {
    url = new URL(origin)
  } catch {}
  if (
    url === undefined ||
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.username !== '' ||
    url.password !== '' ||
    url.pathname !== '/' ||
    url.search !== '' ||
    url.hash !== ''
  ) {
    throw new TypeError(`Expected \`origin\` to be a scheme and host, e.g. https://provision.example.com`)
  }
  return url.origin
}

/**
 * Which hosts a claim may name (`@target-uri`): each entry a name or address (any port: a port mapping in front, a
 * Docker `-p 443:8443`, changes the port the device names), `name:port` (that port only), or a certificate's wildcard
 * `*.example.com` (one label more, any port). A TypeError for anything else (a scheme, a path, credentials).
 */
export function hostMatcher(entries: readonly string[]): (url: URL) => boolean {
  const exact = new Set<string>()
  const names = new Set<string>()
  const suffixes: string[] = []
  for (const entry of entries) {
    const wildcard = typeof entry === 'string' && entry.startsWith('*.')
    const url = parseAuthority(wildcard ? entry.slice(2) : entry)
    if (url === undefined) {
      throw new TypeError(
        `Expected each of \`hosts\` to be a host, host:port or *.domain, got ${JSON.stringify(String(entry))}`,
      )
    }
    if (wildcard) suffixes.push(`.${url.hostname}`)
    else if (/^(?:\[[^\]]*\]|[^:]*):\d+$/.test(entry)) exact.add(url.host)
    else names.add(url.hostname)
  }
  return (url) => {
    const { hostname } = url
    if (exact.has(url.host) || names.has(hostname)) return true
    return suffixes.some((suffix) => {
      const label = hostname.slice(0, -suffix.length)
      return hostname.endsWith(suffix) && label !== '' && !label.includes('.')
    })
  }
}

function parseAuthority(authority: unknown): URL | undefined {
  if (typeof authority !== 'string' || authority === '' || /[/?#@\\\s*]/.test(authority)) return undefined
  try {
    const url = new URL(`https://${authority}`)
    return url.pathname === '/' && url.hostname !== '' ? url : undefined
  } catch {
    return undefined
  }
}

/**
 * The `@target-uri` of a request as the device signed it (`new URL(url).href`): the pinned origin, or the scheme of
 * the connection and the Host header; then the path and query as received. `undefined` when it cannot be known: a
 * request target that is not a path (absolute-form, `*`) or no Host.
 */
export function targetUri(request: IncomingMessage, origin?: string): string | undefined {
  const path = request.url ?? ''
  if (!path.startsWith('/')) return undefined
  let authority = origin
  if (authority === undefined) {
    const host = request.headers.host ?? request.headers[':authority']
    if (typeof host !== 'string' || host === '' || /[/?#@\\\s]/.test(host)) return undefined
    authority = `${(request.socket as TLSSocket).encrypted === true ? 'https' : 'http'}://${host}`
  }
  try {
    const url = new URL(`${authority}${path}`)
    // A path new URL() rewrites (`/x/../bootstrap`, `\\`, `%2e`) is not the target as received (RFC 9421 §2.2.2): a
    // device signs the URL it sends, already normal, so only a crafted request has one.
    return url.href.slice(url.origin.length) === path ? url.href : undefined
  } catch {
    return undefined
  }
}

/**
 * Whether the Content-Digest field (RFC 9530) has a `sha-256` member equal to the body's digest, compared in constant
 * time. Strict: one member per algorithm, each `name=:base64:` without parameters; anything else does not match.
 */
export function digestMatches(field: string | string[] | undefined, body: Buffer): boolean {
  if (field === undefined) return false
  let sent: Buffer | undefined
  for (const member of (Array.isArray(field) ? field.join(',') : field).split(',')) {
    const parsed = /^[ \t]*([a-z*][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*={0,2}):[ \t]*$/.exec(member)
    if (parsed === null) return false
    if (parsed[1] !== 'sha-256') continue
    if (sent !== undefined) return false
    sent = Buffer.from(parsed[2] as string, 'base64')
  }
  const actual = createHash('sha256').update(body).digest()
  return sent !== undefined && sent.length === actual.length && timingSafeEqual(sent, actual)
}
