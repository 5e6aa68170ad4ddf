/**
 * The handler's HTTP side (handler.ts): writing an answer, and reading a body someone else may have read first. The
 * code each exchange was answered, the data it carried and whether it was a renewal are kept here for `onRequest`.
 */
import type { ServerResponse } from 'node:http'

/** The code answered, the data read and whether it was a renewal, per exchange, for `onRequest`. */
export const exchanges = new WeakMap<ServerResponse, { code?: string; data?: unknown; renewal?: boolean }>()

/** What parseJson() answers for a body that is not JSON. */
export const NOT_JSON = Symbol('not JSON')

/** An answer: status, body, extra headers. */
export type Reply = [number, object, Record<string, string>]

/** A body's bytes as someone in front of the handler kept them (a Buffer or a string), or `undefined`. */
export function rawBytes(value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value)) return value
  return typeof value === 'string' ? Buffer.from(value) : undefined
}

/** The JSON value of a body, or {@link NOT_JSON}. */
export function parseJson(text: string | Buffer): unknown {
  try {
    return JSON.parse(text.toString())
  } catch {
    return NOT_JSON
  }
}

/** Write `body` as JSON with `status`, unless an answer went out already (or the client is gone). */
export function answer(
  response: ServerResponse,
  status: number,
  body: object,
  headers: Record<string, string> = {},
): void {
  if (response.headersSent || response.destroyed) return
  const exchange = exchanges.get(response)
  if (exchange !== undefined && 'code' in body && typeof body.code === 'string') exchange.code = body.code
  // no-store: the answer carries secrets, no cache on the way may keep it.
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
  response.end(JSON.stringify(body))
}
