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
 * `authority` (`host[:port]`, an IPv6 address in brackets) as a URL's `host` says it: lower case, the https default
 * port left out. A TypeError for anything else (a scheme, a path, credentials).
 */
export function checkAuthority(authority: string): string {
  let url: URL | undefined
  try {
    url = typeof authority === 'string' && !/[/?#@\\\s]/.test(authority) ? new URL(`https://${authority}`) : undefined
  } catch {}
  if (url === undefined || url.pathname !== '/' || url.hostname === '') {
    throw new TypeError(`Expected each of \`hosts\` to be host[:port], got ${JSON.stringify(String(authority))}`)
  }
  return url.host
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
