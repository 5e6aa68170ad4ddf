/**
 * A reference provisioning request handler for node:http / node:https (and anything that passes their request and
 * response objects, such as Express or Fastify's raw objects). It answers the wire contract of PointAccess:
 * `{ code, result? }`, with `"00000"` and a configuration checked by the same validation the device uses.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { type DeviceConfig, parseDeviceConfig, ResultCode } from '../contract.js'

/** What `resolve` answers: the device's configuration, a refusal code, or `undefined` for an unknown device. */
export type Resolution = { device: Record<string, unknown>; connect: Record<string, unknown> } | { code: string }

export interface ProvisioningHandlerOptions {
  /** Map the request's data (the parsed JSON body) to a configuration or a refusal. */
  resolve(data: unknown, request: IncomingMessage): Resolution | undefined | Promise<Resolution | undefined>
  /** Largest request body accepted, in bytes. @default 16384 */
  maxBodyBytes?: number
  /** Told about failures of `resolve` (the device gets `"77777"`). Never given a secret by the handler. */
  onError?(error: unknown): void
}

/** The reference server's refusal codes (any string other than 00000/77777/99999 is a refusal). */
export const SERVER_CODES = Object.freeze({
  /** The data identifies no known device. */
  UNKNOWN_DEVICE: '10001',
  /** The request is not a POST of a JSON body within the size limit. */
  BAD_REQUEST: '10002',
})

export function createProvisioningHandler(options: ProvisioningHandlerOptions) {
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024
  return (request: IncomingMessage, response: ServerResponse): void => {
    if (request.method !== 'POST') {
      answer(response, 405, { code: SERVER_CODES.BAD_REQUEST, message: 'use POST' }, { allow: 'POST' })
      request.resume()
      return
    }
    if (!/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
      answer(response, 415, { code: SERVER_CODES.BAD_REQUEST, message: 'send application/json' })
      request.resume()
      return
    }
    if (Number(request.headers['content-length'] ?? 0) > maxBodyBytes) {
      answer(response, 413, { code: SERVER_CODES.BAD_REQUEST, message: 'body too large' }, { connection: 'close' })
      request.resume()
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    request.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBodyBytes) {
        answer(response, 413, { code: SERVER_CODES.BAD_REQUEST, message: 'body too large' }, { connection: 'close' })
        request.destroy()
      } else chunks.push(chunk)
    })
    request.on('end', () => {
      let data: unknown
      try {
        data = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        answer(response, 400, { code: SERVER_CODES.BAD_REQUEST, message: 'body is not JSON' })
        return
      }
      Promise.resolve()
        .then(() => options.resolve(data, request))
        .then(toAnswer)
        .then(
          (body) => answer(response, 200, body),
          (error: unknown) => {
            options.onError?.(error)
            answer(response, 500, { code: ResultCode.TRANSIENT, message: 'try again later' })
          },
        )
    })
  }
}

function toAnswer(resolution: Resolution | undefined): object {
  if (resolution === undefined) return { code: SERVER_CODES.UNKNOWN_DEVICE, message: 'unknown device' }
  if ('code' in resolution) return { code: resolution.code }
  const config = parseDeviceConfig(resolution)
  if (!config.ok) throw new TypeError(`resolve() returned an invalid configuration: ${config.problem}`)
  return { code: ResultCode.SUCCESS, result: plain(config.value) }
}

function plain({ device, connect }: DeviceConfig): DeviceConfig {
  return { device: { ...device }, connect: { ...connect } }
}

function answer(response: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  if (response.headersSent) return
  // no-store: the answer carries secrets, no cache on the way may keep it.
  response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers })
  response.end(JSON.stringify(body))
}
