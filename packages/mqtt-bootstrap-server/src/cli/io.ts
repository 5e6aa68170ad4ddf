/** What the commands share: reading their inputs, printing tables, failing with the usage exit code. */
import { readFileSync } from 'node:fs'

/** Exit codes of the `mqtt-bootstrap` command (README: "Command line"). */
export const EXIT = Object.freeze({
  OK: 0,
  /** The check failed, the demo failed, the server could not run. */
  FAILED: 1,
  /** Bad arguments, unreadable files. */
  USAGE: 2,
  /** provision: "77777", a transient failure. */
  TRANSIENT: 3,
  /** provision: "99999", an answer that could not be understood. */
  INVALID_RESPONSE: 4,
  /** provision: the server refused the device with its own code. */
  REFUSED: 5,
  /**
   * provision: an HTTP status outside the contract (a 404, a 403, a redirect, a 401 without a claim refusal), whatever
   * the body said: the URL is probably not a provisioning endpoint. Not retried by a device ("99999").
   */
  HTTP_STATUS: 6,
  /** provision: the server's certificate failed verification (an untrusted CA: --ca; another host). Not transient. */
  TLS: 7,
})

/** A bad argument: the command prints the message and exits with EXIT.USAGE. */
export class UsageError extends Error {
  override name = 'UsageError'
}

export function parseJsonOption(value: string, option: string): unknown {
  try {
    return JSON.parse(value)
  } catch {
    throw new UsageError(`${option} must be JSON, e.g. ${option} '{"imei":"860000000000001"}'`)
  }
}

export function readFileOption(path: string | undefined, option: string): string | undefined {
  if (path === undefined) return undefined
  try {
    return readFileSync(path, 'utf8')
  } catch {
    throw new UsageError(`${option}: cannot read ${path}`)
  }
}

/** `--header name:value` (repeatable) -> headers. */
export function collectHeader(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const colon = value.indexOf(':')
  // Not quoted back: a header is often a token.
  if (colon <= 0) throw new UsageError('--header must be name:value (e.g. --header "Authorization: Bearer …")')
  return { ...previous, [value.slice(0, colon).trim()]: value.slice(colon + 1).trim() }
}

/** A TCP port: 1 to 65535, or 0 for any free one. */
export function parsePortOption(value: string, option: string): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`${option} must be a port from 0 to 65535, got ${value}`)
  return port
}

export function parseIntegerOption(value: string, option: string): number {
  const number = Number(value)
  if (!Number.isInteger(number) || number < 0) throw new UsageError(`${option} must be a whole number, got ${value}`)
  return number
}

/** Rows as aligned columns. */
export function table(rows: string[][]): string {
  const widths = rows.reduce<number[]>((max, row) => row.map((cell, i) => Math.max(max[i] ?? 0, cell.length)), [])
  return rows
    .map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  '))
    .join('\n')
}
