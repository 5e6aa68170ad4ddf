// tsyringe needs the Reflect polyfill before it loads.
import 'reflect-metadata'
import { container as globalContainer } from 'tsyringe'
import { describe, expect, test } from 'vitest'
import {
  AliyunRegistration,
  type AuthStrategy,
  connectProvisioned,
  createBootstrap,
  DEFAULTS,
  InvalidOptionError,
  PointAccess,
  RETRY_DEFAULTS,
  type RegistrationStrategy,
  registerBootstrap,
  TOKENS,
} from '../packages/mqtt-bootstrap/src/index.js'
import { resolveOptions } from '../packages/mqtt-bootstrap/src/options.js'
import { RECONNECT_DEFAULTS } from '../packages/mqtt-bootstrap/src/reconnect.js'
import { resolveAliyunRegistrationOptions } from '../packages/mqtt-bootstrap/src/registration/aliyun-options.js'
import { noRegistration } from '../packages/mqtt-bootstrap/src/registration/strategy.js'
import { resolveTransportOptions } from '../packages/mqtt-bootstrap/src/transport/options.js'

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
    ['mqtt.reconnectPeriod', { mqtt: { reconnectPeriod: -1 } }],
    ['reconnect', { reconnect: true }],
    ['reconnect.minDelay', { reconnect: { minDelay: 0 } }],
    ['reconnect.maxDelay', { reconnect: { minDelay: 5000, maxDelay: 100 } }],
    ['reconnect.factor', { reconnect: { factor: Number.NaN } }],
    ['reconnect.stableAfter', { reconnect: { stableAfter: -1 } }],
    ['reconnect.jitter', { reconnect: { jitter: true } }],
    ['startupJitterMs', { startupJitterMs: -1 }],
    ['deadlineMs', { deadlineMs: 0 }],
    ['registration', { registration: 'aliyun' }],
    ['registration.name', { registration: { register: () => Promise.resolve({ deviceSecret: 's' }) } }],
    ['registration.region', { registration: { region: 'Shanghai' } }],
    ['registration.signMethod', { registration: { signMethod: 'sha512' } }],
    ['registration.timeoutMs', { registration: { timeoutMs: 0 } }],
    ['registration.tls.ca', { registration: { tls: { ca: 1 } } }],
    // The top-level allowInsecureHttp governs the bootstrap's registration.
    ['registration.allowInsecureHttp', { registration: { allowInsecureHttp: true } }],
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

describe('each concern resolves its option to what the bootstrap uses', () => {
  const plain: AuthStrategy = { name: 'mine', sign: () => ({ clientId: 'c', username: 'u', password: 'p' }) }

  test('auth: a name or a function becomes its strategy; a strategy stays itself; absent stays absent', () => {
    expect(resolveOptions(base).auth).toBeUndefined()
    expect(resolveOptions({ ...base, auth: 'plain' }).auth).toMatchObject({ name: 'plain', defaultPort: 8883 })
    expect(resolveOptions({ ...base, auth: 'aliyun' }).auth).toMatchObject({ name: 'aliyun', defaultPort: 1883 })
    expect(resolveOptions({ ...base, auth: plain }).auth).toBe(plain)
    const signed = resolveOptions({
      ...base,
      auth: function custom() {
        return plain.sign({} as never, {} as never)
      },
    })
    expect(signed.auth).toMatchObject({ name: 'custom', defaultPort: 8883 })
    expect(signed.auth?.sign({} as never, { brokerUrl: 'mqtts://h', now: 0 })).toEqual({
      clientId: 'c',
      username: 'u',
      password: 'p',
    })
  })

  test("registration: false refuses, options become Alibaba's flow, a strategy stays itself, absent stays absent", () => {
    const mine: RegistrationStrategy = { name: 'mine', register: () => Promise.resolve({ deviceSecret: 's' }) }
    expect(resolveOptions(base).registration).toBeUndefined()
    expect(resolveOptions({ ...base, registration: false }).registration).toBe(noRegistration)
    expect(resolveOptions({ ...base, registration: mine }).registration).toBe(mine)
    expect(resolveOptions({ ...base, registration: { region: 'cn-shanghai' } }).registration?.name).toBe('aliyun')
  })

  test('retry and reconnect become policies', () => {
    expect(resolveOptions({ ...base, retry: { retries: 2 } }).retry).toEqual({ ...RETRY_DEFAULTS, retries: 2 })
    expect(resolveOptions(base).reconnect).toEqual(RECONNECT_DEFAULTS)
    expect(resolveOptions({ ...base, reconnect: false }).reconnect).toBe(false)
    expect(resolveOptions({ ...base, mqtt: { reconnectPeriod: 0 } }).reconnect).toBe(false)
    expect(resolveOptions({ ...base, mqtt: { reconnectPeriod: 250 } }).reconnect).toMatchObject({ minDelay: 250 })
    expect(resolveOptions({ ...base, reconnect: { maxDelay: 5000 } }).reconnect).toEqual({
      ...RECONNECT_DEFAULTS,
      maxDelay: 5000,
    })
  })

  test('options checked at the door come back as they are when passed on (not checked twice)', () => {
    const resolved = resolveOptions({ ...base, timeoutMs: 1234, tls: { servername: 'x' } })
    expect(resolved.transportOptions).toEqual({
      tls: { servername: 'x' },
      timeoutMs: 1234,
      maxResponseBytes: DEFAULTS.maxResponseBytes,
      allowInsecureHttp: false,
    })
    expect(resolveTransportOptions(resolved.transportOptions)).toBe(resolved.transportOptions)
    expect(() => new PointAccess(resolved.transportOptions)).not.toThrow()
    const registration = resolveAliyunRegistrationOptions({ region: 'cn-shanghai', timeoutMs: 50 })
    expect(registration).toMatchObject({ region: 'cn-shanghai', timeoutMs: 50, signMethod: 'hmacsha256' })
    expect(resolveAliyunRegistrationOptions(registration)).toBe(registration)
    expect(new AliyunRegistration(registration).endpoint('x').href).toBe(
      'https://iot-auth.cn-shanghai.aliyuncs.com/auth/register/device',
    )
  })

  test("an option not given leaves the container's registration in force; one given wins over it", () => {
    const registration: RegistrationStrategy = { name: 'mine', register: () => Promise.reject(new Error('no')) }
    const parent = globalContainer.createChildContainer()
    parent.register(TOKENS.AuthStrategy, { useValue: plain })
    parent.register(TOKENS.Registration, { useValue: registration })
    const inherits = registerBootstrap(parent.createChildContainer(), base)
    expect(inherits.resolve(TOKENS.AuthStrategy)).toBe(plain)
    expect(inherits.resolve(TOKENS.Registration)).toBe(registration)
    const overrides = registerBootstrap(parent.createChildContainer(), { ...base, auth: 'plain', registration: false })
    expect(overrides.resolve(TOKENS.AuthStrategy).name).toBe('plain')
    expect(overrides.resolve(TOKENS.Registration)).toBe(noRegistration)
    const defaults = registerBootstrap(globalContainer.createChildContainer(), base)
    expect(defaults.resolve(TOKENS.AuthStrategy).name).toBe(DEFAULTS.auth)
    expect(defaults.resolve(TOKENS.Registration).name).toBe('aliyun')
  })
})
