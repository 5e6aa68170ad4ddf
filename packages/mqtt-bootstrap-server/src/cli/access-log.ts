/**
 * `serve`'s access log: one line per request on stdout, fields separated by one space (none of them holds one):
 *
 *     2026-05-04T10:00:00.000Z 127.0.0.1 POST /bootstrap 200 00000 8600…(15)
 *     <time, ISO> <peer> <method> <path> <HTTP status> <answer's code, or -> <device identity, or -> [renewal]
 *     2026-05-04T10:00:01.000Z 127.0.0.1 TLS handshake failed (ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN)
 *     2026-05-04T10:00:02.000Z 127.0.0.1 - - 400 - - (HPE_INVALID_METHOD)
 *
 * `renewal` ends the line of a request the handler took for a renewal: its TLS client certificate was one the issuing
 * CA made (issue 18). The last form is a request that Node's HTTP parser refused before any handler saw it
 * (malformed, headers too large, too slow): no method, path or code, the status Node answers and the parser's reason.
 *
 * The identity is what the registry matches on (e.g. the IMEI), shown as its first 4 characters and its length, never
 * whole (a short one shows at most half its characters). What a client sent (path, method) is cut to a bounded length
 * and its controls and spaces escaped, so no request can forge a line; the query string is left out (tokens).
 */

/** The request data's values for the registry's match fields, joined with `/`; `undefined` when it has none. */
export function identityOf(data: unknown, fields: readonly string[]): string | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined
  const values: string[] = []
  for (const field of fields) {
    const value = Object.hasOwn(data, field) ? (data as Record<string, unknown>)[field] : undefined
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') values.push(String(value))
  }
  return values.length === 0 ? undefined : values.join('/')
}

/** `8600…(15)`: the first 4 characters (code points) and the length; `-` for none. */
export function shownIdentity(identity: string | undefined): string {
  if (identity === undefined) return '-'
  const characters = Array.from(identity)
  const shown = Math.min(4, Math.floor(characters.length / 2))
  return `${safe(characters.slice(0, shown).join(''), 4)}…(${characters.length})`
}

export interface RequestLine {
  time: Date
  peer: string | undefined
  method: string | undefined
  /** The request's URL: only its path is logged. */
  url: string | undefined
  status: number | undefined
  code: string | undefined
  identity: string | undefined
  /** A renewal (its certificate the proof): `renewal` ends the line. @default false */
  renewal?: boolean | undefined
}

export function requestLine(line: RequestLine): string {
  const path = (line.url ?? '').split('?')[0] ?? ''
  return [
    line.time.toISOString(),
    line.peer ?? '-',
    safe(line.method ?? '-', 16),
    safe(path === '' ? '-' : path, 200),
    line.status === undefined ? '-' : String(line.status),
    line.code === undefined ? '-' : safe(line.code, 64),
    shownIdentity(line.identity),
    ...(line.renewal ? ['renewal'] : []),
  ].join(' ')
}

export function tlsFailureLine(time: Date, peer: string | undefined, reason: string): string {
  return `${time.toISOString()} ${peer ?? '-'} TLS handshake failed (${safe(reason, 120)})`
}

/** A request Node's HTTP parser refused (no method or path known): its status and the parser's reason. */
export function rejectedLine(time: Date, peer: string | undefined, status: number, reason: string): string {
  return `${time.toISOString()} ${peer ?? '-'} - - ${status} - - (${safe(reason, 120)})`
}

/** Printable, space-free, at most `max` characters (then `…`): what a client sent cannot break a line or a field. */
function safe(text: string, max: number): string {
  const characters = Array.from(text)
  const escaped = characters
    .slice(0, max)
    .map((c) => (/^[\p{L}\p{N}\p{P}\p{S}]$/u.test(c) ? c : `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`))
    .join('')
  return characters.length > max ? `${escaped}…` : escaped
}
