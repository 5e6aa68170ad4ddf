import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { withUrl } from '../packages/mqtt-bootstrap/src/error-urls.js'
import {
  AliyunRegistration,
  BrokerError,
  PointAccess,
  ProvisioningError,
  RegistrationError,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot, nextEvent, payloads, useTestEnv } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { configAnswer, json } from './helpers/https-server.js'
import { freePort } from './helpers/ports.js'
import { PRODUCT, type RegistrationServer, startRegistrationServer } from './helpers/registration-server.js'

const env = useTestEnv()
const TOKEN = 'query-token-4f1d9a7c'
const PASSWORD = 'userinfo-pw-83b2e6'
suite.secret(TOKEN)
suite.secret(PASSWORD)

/** The provisioning URL with a password and a token in it, and the same URL as errors must show it. */
function secretUrl(url: string): { url: string; shown: string } {
  const parsed = new URL(url)
  const shown = `${parsed.protocol}//${parsed.host}${parsed.pathname}`
  parsed.username = 'device'
  parsed.password = PASSWORD
  parsed.search = `?token=${TOKEN}`
  parsed.hash = 'part'
  return { url: parsed.href, shown }
}

function expectNamed(error: unknown, shown: string, code: string): void {
  expect(error).toMatchObject({ code, url: shown })
  const { message } = error as Error
  expect(message).toContain(`, at ${shown}`)
  expect(message).not.toContain(TOKEN)
  expect(message).not.toContain(PASSWORD)
  expect((error as Error).stack).toContain(shown) // what util.inspect and loggers print
}

describe('provisioning errors name the URL (PointAccess)', () => {
  async function lastError(url: string, options: ConstructorParameters<typeof PointAccess>[0] = {}) {
    const point = new PointAccess({ tls: { ca: env.tls.ca }, ...options })
    const code = await point.request(url, { imei: '1' })
    expect(code).not.toBe('00000')
    expect(point.lastError).toBeInstanceOf(ProvisioningError)
    suite.objects.push(point.lastError)
    return point.lastError
  }

  test('network: nothing listening', async () => {
    const { url, shown } = secretUrl(`https://127.0.0.1:${await freePort()}/provision`)
    expectNamed(await lastError(url), shown, 'ERR_PROVISION_NETWORK')
  })

  test('timeout: the server never answers', async () => {
    env.server.handle(() => {})
    const { url, shown } = secretUrl(env.server.url)
    const error = await lastError(url, { timeoutMs: 150 })
    expectNamed(error, shown, 'ERR_PROVISION_TIMEOUT')
    expect(error?.message).toBe(`provisioning request timed out after 150 ms, at ${shown}`)
  })

  test('TLS: a server certificate from an unknown CA', async () => {
    const { url, shown } = secretUrl(env.server.url)
    const point = new PointAccess() // the system roots: the test CA is unknown
    expect(await point.request(url, {})).toBe('77777')
    expectNamed(point.lastError, shown, 'ERR_PROVISION_TLS')
  })

  test.each([
    ['HTTP 503', 503, '', 'ERR_PROVISION_HTTP_STATUS'],
    ['HTTP 404', 404, 'not found', 'ERR_PROVISION_HTTP_STATUS'],
    ['a refusal', 200, JSON.stringify({ code: '10001' }), 'ERR_PROVISION_REFUSED'],
    ['"77777"', 200, JSON.stringify({ code: '77777' }), 'ERR_PROVISION_SERVER_BUSY'],
    ['not JSON', 200, '<html>', 'ERR_PROVISION_INVALID_RESPONSE'],
  ])('%s', async (_what, status, body, code) => {
    env.server.handle((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end(body))
    const { url, shown } = secretUrl(env.server.url)
    expectNamed(await lastError(url), shown, code)
  })

  test('the answer too large', async () => {
    env.server.handle((_req, res) => json(res, 200, { code: '00000', pad: 'x'.repeat(2000) }))
    const { url, shown } = secretUrl(env.server.url)
    expectNamed(await lastError(url, { maxResponseBytes: 1000 }), shown, 'ERR_PROVISION_RESPONSE_TOO_LARGE')
  })

  test('a success leaves no error behind', async () => {
    env.answerValid()
    const point = new PointAccess({ tls: { ca: env.tls.ca } })
    expect(await point.request(env.server.url, {})).toBe('00000')
    expect(point.lastError).toBeNull()
  })
})

describe('through the bootstrap', () => {
  test('a provisioning failure rejects with the URL (and its retry events carry it too)', async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    const { url, shown } = secretUrl(env.server.url)
    const { boot: bootstrap, events } = boot(env.options({ url, retry: { retries: 1, minTimeout: 1, maxTimeout: 1 } }))
    const error = await bootstrap.connect().catch((e: unknown) => e)
    expectNamed(error, shown, 'ERR_PROVISION_HTTP_STATUS')
    expect(error).toMatchObject({ attempts: 2 })
    expectNamed(payloads(events, 'retry')[0]?.error, shown, 'ERR_PROVISION_HTTP_STATUS')
  })

  test('an answer without a deviceSecret, registration off', async () => {
    const device = { productKey: PRODUCT.productKey, deviceName: 'meter-0001', productSecret: PRODUCT.productSecret }
    env.server.handle((_req, res) => json(res, 200, configAnswer({ host: env.broker.host }, device)))
    const { url, shown } = secretUrl(env.server.url)
    const error = await boot(env.options({ url, registration: false }))
      .boot.connect()
      .catch((e: unknown) => e)
    expectNamed(error, shown, 'ERR_PROVISION_NO_DEVICE_SECRET')
  })
})

describe('registration errors name the endpoint', () => {
  let registry: RegistrationServer
  beforeAll(async () => {
    registry = await startRegistrationServer(env.tls, env.broker, ['meter-0001'])
  })
  afterAll(() => registry.close())
  const request = {
    productKey: PRODUCT.productKey,
    deviceName: 'unknown-meter',
    productSecret: PRODUCT.productSecret,
    host: '127.0.0.1',
  }
  const context = { signal: undefined, now: () => Date.now() }

  test('a refusal (a device that is not pre-registered)', async () => {
    const { url, shown } = secretUrl(registry.url)
    const registration = new AliyunRegistration({ url, tls: { ca: env.tls.ca } })
    const error = await registration.register(request, context).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RegistrationError)
    expectNamed(error, shown, 'ERR_REGISTER_REFUSED')
  })

  test('the transport failing (nothing listening)', async () => {
    const { url, shown } = secretUrl(`https://127.0.0.1:${await freePort()}/auth/register/device`)
    const registration = new AliyunRegistration({ url, tls: { ca: env.tls.ca } })
    const error = await registration.register(request, context).catch((e: unknown) => e)
    expectNamed(error, shown, 'ERR_REGISTER_NETWORK')
    expect((error as Error).message).toMatch(/^registration request failed \(ECONNREFUSED\), at /)
  })
})

describe('broker errors name the broker URL', () => {
  test('nothing listening at connect.host', async () => {
    const port = await freePort()
    env.answerValid({ host: `127.0.0.1:${port}` })
    const error = await boot(env.options({ retry: false }))
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(BrokerError)
    expectNamed(error, `mqtt://127.0.0.1:${port}`, 'ERR_BROKER_CONNECT')
    expect(error).toMatchObject({ attempts: 1 })
  })

  test('credentials rejected', async () => {
    env.broker.refuse.push(5)
    const error = await boot(env.options({ retry: false }))
      .boot.connect()
      .catch((e: unknown) => e)
    expectNamed(error, `mqtt://${env.broker.host}`, 'ERR_BROKER_AUTH_REJECTED')
    expect(error).toMatchObject({ returnCode: 5 })
  })

  test('the connection lost after boot: the retry event names the broker', async () => {
    const { boot: bootstrap, events } = boot(env.options({ reconnect: { minDelay: 20, maxDelay: 40 } }))
    env.track(await bootstrap.connect())
    await sleep(5)
    env.broker.drop()
    await nextEvent(bootstrap, 'connected', () => true, 3000)
    const lost = payloads(events, 'retry')[0]
    expect(lost).toMatchObject({ phase: 'reconnect', attempt: 1, code: 'ERR_BROKER_CONNECT' })
    expectNamed(lost?.error, `mqtt://${env.broker.host}`, 'ERR_BROKER_CONNECT')
  })
})

describe('withUrl', () => {
  test('redacts userinfo, query and fragment, keeps code, fields and cause, and names a URL once', () => {
    const cause = new Error('socket hang up')
    const original = new BrokerError('ERR_BROKER_CONNECT', 'broker refused the connection (CONNACK 3)', {
      transient: true,
      returnCode: 3,
      cause,
    })
    const named = withUrl(original, `wss://device:${PASSWORD}@broker.example:8884/mqtt?token=${TOKEN}#x`)
    expect(named).toBeInstanceOf(BrokerError)
    expect(named).toMatchObject({ code: 'ERR_BROKER_CONNECT', transient: true, returnCode: 3, cause })
    expect(named.url).toBe('wss://broker.example:8884/mqtt')
    expect(named.message).toBe('broker refused the connection (CONNACK 3), at wss://broker.example:8884/mqtt')
    expect(withUrl(named, 'mqtt://other:1883')).toBe(named)
    const plain = new Error('not ours')
    expect(withUrl(plain, 'mqtt://other:1883')).toBe(plain)
  })
})
