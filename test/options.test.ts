import { describe, expect, test } from 'vitest'
import {
  connectProvisioned,
  createBootstrap,
  DEFAULTS,
  InvalidOptionError,
  PointAccess,
  RETRY_DEFAULTS,
} from '../packages/mqtt-bootstrap/src/index.js'
import { resolveOptions } from '../packages/mqtt-bootstrap/src/options.js'

const base = { url: 'https://provision.example/bootstrap', data: { imei: '1' } }

describe('resolveOptions', () => {
  test('fills in the documented defaults', () => {
    const resolved = resolveOptions(base)
    expect(resolved).toMatchObject({
      url: 'https://provision.example/bootstrap',
      timeoutMs: DEFAULTS.timeoutMs,
      maxResponseBytes: 65_536,
      allowInsecureHttp: false,
      retry: RETRY_DEFAULTS,
      broker: { protocol: 'mqtts' },
      headers: {},
      mqtt: {},
    })
    expect(RETRY_DEFAULTS).toEqual({
      retries: 5,
      factor: 2,
      minTimeout: 1000,
      maxTimeout: 60_000,
      randomize: true,
      maxRetryAfter: 300_000,
    })
    expect(Object.isFrozen(resolved)).toBe(true)
    expect(resolveOptions({ ...base, retry: false }).retry.retries).toBe(0)
  })

  const bad: Array<[string, Record<string, unknown>]> = [
    ['url', { url: 'http://provision.example/' }],
    ['url', { url: 'ftp://provision.example/' }],
    ['url', { url: 'not a url' }],
    ['url', { url: 42 }],
    ['data', { data: undefined }],
    ['data', { data: 10n }],
    ['headers.x-token', { headers: { 'x-token': 5 } }],
    ['headers.content-length', { headers: { 'content-length': '5' } }],
    ['headers.x-name', { headers: { 'x-name': 'Zoë 😀' } }],
    ['timeoutMs', { timeoutMs: 0 }],
    ['timeoutMs', { timeoutMs: 1.5 }],
    ['maxResponseBytes', { maxResponseBytes: -1 }],
    ['allowInsecureHttp', { allowInsecureHttp: 'yes' }],
    ['retry', { retry: true }],
    ['retry.retries', { retry: { retries: -1 } }],
    ['retry.factor', { retry: { factor: 0.5 } }],
    ['retry.maxTimeout', { retry: { minTimeout: 5000, maxTimeout: 100 } }],
    ['retry.randomize', { retry: { randomize: 1 } }],
    ['retry.forever', { retry: { forever: true } }],
    ['tls.ca', { tls: { ca: 42 } }],
    ['tls.rejectUnauthorized', { tls: { rejectUnauthorized: false } }],
    ['cache', { cache: {} }],
    ['auth', { auth: 'hmac' }],
    ['broker.protocol', { broker: { protocol: 'http' } }],
    ['broker.port', { broker: { port: 70000 } }],
    ['mqtt', { mqtt: 'keepalive=60' }],
    ['signal', { signal: {} }],
    ['logger', { logger: console.log }],
    ['retires', { retires: 3 }],
    ['container', { container: {} }],
    ['mqtt.host', { mqtt: { host: 'elsewhere' } }],
    ['mqtt.servers', { mqtt: { servers: [{ host: 'x' }] } }],
    ['mqtt.clientId', { mqtt: { clientId: 'mine' } }],
    ['mqtt.clean', { mqtt: { clean: false } }],
    ['mqtt.manualConnect', { mqtt: { manualConnect: true } }],
    ['mqtt.rejectUnauthorized', { mqtt: { rejectUnauthorized: false } }],
    ['mqtt.wsOptions.rejectUnauthorized', { mqtt: { wsOptions: { rejectUnauthorized: false } } }],
  ]
  test.each(bad)('a bad `%s` is a TypeError naming it', (option, overrides) => {
    const error = (() => {
      try {
        resolveOptions({ ...base, ...overrides } as never)
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(TypeError)
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option })
    expect((error as Error).message).toContain(`\`${option}\``)
  })

  test('http:// is allowed only with allowInsecureHttp, and the message says how', () => {
    expect(() => resolveOptions({ ...base, url: 'http://127.0.0.1/' })).toThrow(/allowInsecureHttp/)
    expect(resolveOptions({ ...base, url: 'http://127.0.0.1/', allowInsecureHttp: true }).url).toBe('http://127.0.0.1/')
  })

  test('a message never quotes a bad value (it may be a secret)', () => {
    expect(() => resolveOptions({ ...base, headers: { authorization: 'Bearer top-secret\n' } })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('top-secret') }),
    )
    expect(() => resolveOptions({ ...base, url: 'ftp://user:pw-secret@host/' })).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('pw-secret') }),
    )
  })

  test('PointAccess refuses unknown options too', () => {
    expect(() => new PointAccess({ timeout: 5000 } as never)).toThrow(expect.objectContaining({ option: 'timeout' }))
  })

  test('createBootstrap throws synchronously and connectProvisioned rejects, before any I/O', async () => {
    expect(() => createBootstrap({ ...base, timeoutMs: -5 })).toThrow(TypeError)
    await expect(connectProvisioned({ ...base, retry: { retries: 'many' } } as never)).rejects.toMatchObject({
      option: 'retry.retries',
    })
    expect(() => createBootstrap(undefined as never)).toThrow(TypeError)
  })
})
