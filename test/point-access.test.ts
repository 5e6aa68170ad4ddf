import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { PointAccess, ProvisioningError, ResultCode } from '../packages/mqtt-bootstrap/src/index.js'
import { configAnswer, DEVICE, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

let tls: TlsFixture
let server: TestServer

beforeAll(async () => {
  tls = await tlsFixture()
  server = await startHttpsServer(tls, (_req, res) => json(res, 200, configAnswer({ host: 'broker.example:1883' })))
})
afterAll(() => server.close())
beforeEach(() => {
  server.requests.length = 0
})

const pointAccess = (options: ConstructorParameters<typeof PointAccess>[0] = {}) =>
  new PointAccess({ tls: { ca: tls.ca }, timeoutMs: 2000, ...options })

describe('PointAccess.request', () => {
  test('starts with the original default deviceConfig', () => {
    expect(new PointAccess().deviceConfig).toEqual({
      device: { productKey: '', productSecret: null, deviceName: '', deviceSecret: '' },
      connect: { qos: 1, host: '', cleanSession: 1 },
    })
  })

  test('"00000": POSTs data as JSON and stores the configuration', async () => {
    const pa = pointAccess()
    const code = await pa.request(server.url, { imei: '860000000000001' })
    expect(code).toBe('00000')
    expect(code).toBe(ResultCode.SUCCESS)
    expect(pa.lastError).toBeNull()
    expect(pa.deviceConfig).toEqual({
      device: { ...DEVICE, productSecret: null },
      connect: { qos: 1, host: 'broker.example:1883', cleanSession: 1 },
    })
    const [request] = server.requests
    expect(request?.method).toBe('POST')
    expect(request?.headers['content-type']).toBe('application/json')
    expect(JSON.parse(request?.body ?? '')).toEqual({ imei: '860000000000001' })
  })

  test('Content-Type stays application/json whatever the caller says; other headers are sent', async () => {
    const pa = pointAccess()
    await pa.request(server.url, { imei: '1' }, { headers: { 'Content-Type': 'text/plain', 'X-Api-Key': 'k-123' } })
    expect(server.requests[0]?.headers['content-type']).toBe('application/json')
    expect(server.requests[0]?.headers['x-api-key']).toBe('k-123')
  })

  test('booleans for cleanSession become 0/1, qos 2 is accepted, productSecret is kept', async () => {
    server.handle((_req, res) =>
      json(
        res,
        200,
        configAnswer(
          { host: 'mqtts://b.example:8883', qos: 2, cleanSession: false },
          { ...DEVICE, productSecret: 'ps' },
        ),
      ),
    )
    const pa = pointAccess()
    expect(await pa.request(server.url, {})).toBe('00000')
    expect(pa.deviceConfig.connect).toEqual({ qos: 2, host: 'mqtts://b.example:8883', cleanSession: 0 })
    expect(pa.deviceConfig.device.productSecret).toBe('ps')
  })

  const cases: Array<[string, (res: import('node:http').ServerResponse) => void, string, string]> = [
    [
      'a non-JSON body',
      (res) => res.writeHead(200).end('<html>oops</html>'),
      '99999',
      'ERR_PROVISION_INVALID_RESPONSE',
    ],
    ['JSON without code', (res) => json(res, 200, { result: {} }), '99999', 'ERR_PROVISION_INVALID_RESPONSE'],
    ['a numeric code', (res) => json(res, 200, { code: 0 }), '99999', 'ERR_PROVISION_INVALID_RESPONSE'],
    ['"00000" without result', (res) => json(res, 200, { code: '00000' }), '99999', 'ERR_PROVISION_INVALID_RESPONSE'],
    [
      '"00000" with qos 7',
      (res) => json(res, 200, configAnswer({ host: 'h:1', qos: 7 })),
      '99999',
      'ERR_PROVISION_INVALID_RESPONSE',
    ],
    [
      '"00000" with an ftp host',
      (res) => json(res, 200, configAnswer({ host: 'ftp://h' })),
      '99999',
      'ERR_PROVISION_INVALID_RESPONSE',
    ],
    [
      '"00000" with an empty deviceName',
      (res) => json(res, 200, configAnswer({ host: 'h' }, { ...DEVICE, deviceName: '' })),
      '99999',
      'ERR_PROVISION_INVALID_RESPONSE',
    ],
    [
      "the server's own refusal",
      (res) => json(res, 200, { code: '10001', message: 'unknown device' }),
      '10001',
      'ERR_PROVISION_REFUSED',
    ],
    // Outside the contract's statuses: no refusal, whatever the body (test/http-status.test.ts has the whole rule).
    ['a refusal with HTTP 404', (res) => json(res, 404, { code: '10404' }), '99999', 'ERR_PROVISION_HTTP_STATUS'],
    ['HTTP 404 with HTML', (res) => res.writeHead(404).end('<h1>not found</h1>'), '99999', 'ERR_PROVISION_HTTP_STATUS'],
    ['the server answering "77777"', (res) => json(res, 200, { code: '77777' }), '77777', 'ERR_PROVISION_SERVER_BUSY'],
    ['HTTP 500 with HTML', (res) => res.writeHead(500).end('<h1>boom</h1>'), '77777', 'ERR_PROVISION_HTTP_STATUS'],
    ['HTTP 503', (res) => json(res, 503, { code: '00000' }), '77777', 'ERR_PROVISION_HTTP_STATUS'],
    ['HTTP 408', (res) => res.writeHead(408).end(), '77777', 'ERR_PROVISION_HTTP_STATUS'],
    ['HTTP 429', (res) => res.writeHead(429).end(), '77777', 'ERR_PROVISION_HTTP_STATUS'],
  ]
  test.each(cases)('%s gives the right code and keeps deviceConfig', async (_name, answer, code, errorCode) => {
    server.handle((_req, res) => answer(res))
    const pa = pointAccess()
    const before = structuredClone(pa.deviceConfig)
    expect(await pa.request(server.url, {})).toBe(code)
    expect(pa.deviceConfig).toEqual(before)
    expect(pa.lastError).toBeInstanceOf(ProvisioningError)
    expect(pa.lastError?.code).toBe(errorCode)
    expect(pa.lastError?.resultCode).toBe(code)
  })

  test('a failed request after a success keeps the previous configuration', async () => {
    server.handle((_req, res) => json(res, 200, configAnswer({ host: 'first:1883' })))
    const pa = pointAccess()
    await pa.request(server.url, {})
    server.handle((_req, res) => res.writeHead(500).end())
    expect(await pa.request(server.url, {})).toBe('77777')
    expect(pa.deviceConfig.connect.host).toBe('first:1883')
  })

  test('Retry-After in seconds is kept on lastError', async () => {
    server.handle((_req, res) => res.writeHead(503, { 'retry-after': '7' }).end())
    const pa = pointAccess()
    await pa.request(server.url, {})
    expect(pa.lastError?.retryAfterMs).toBe(7000)
    expect(pa.lastError?.status).toBe(503)
  })

  test('connection refused is "77777" (ERR_PROVISION_NETWORK)', async () => {
    const closed = net.createServer().listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const { port } = closed.address() as AddressInfo
    closed.close()
    const pa = pointAccess()
    expect(await pa.request(`https://127.0.0.1:${port}/`, {})).toBe('77777')
    expect(pa.lastError?.code).toBe('ERR_PROVISION_NETWORK')
    expect(pa.lastError?.transient).toBe(true)
  })

  test('a server that never answers is "77777" after timeoutMs (ERR_PROVISION_TIMEOUT)', async () => {
    server.handle(() => {})
    const pa = pointAccess({ timeoutMs: 300 })
    const started = performance.now()
    expect(await pa.request(server.url, {})).toBe('77777')
    expect(pa.lastError?.code).toBe('ERR_PROVISION_TIMEOUT')
    expect(performance.now() - started).toBeLessThan(2000)
  })

  test('an untrusted certificate is "77777" but permanent (ERR_PROVISION_TLS)', async () => {
    const pa = new PointAccess({ timeoutMs: 2000 })
    expect(await pa.request(server.url, {})).toBe('77777')
    expect(pa.lastError?.code).toBe('ERR_PROVISION_TLS')
    expect(pa.lastError?.transient).toBe(false)
    expect(server.requests).toHaveLength(0)
  })

  test('a certificate for another host name fails closed (ERR_PROVISION_TLS)', async () => {
    const wrong = await startHttpsServer({ ...tls, ...tls.wrongHost }, (_req, res) => json(res, 200, {}))
    try {
      const pa = pointAccess()
      expect(await pa.request(wrong.url, {})).toBe('77777')
      expect(pa.lastError?.code).toBe('ERR_PROVISION_TLS')
      expect(wrong.requests).toHaveLength(0)
    } finally {
      await wrong.close()
    }
  })

  test('an answer larger than maxResponseBytes is "99999" (ERR_PROVISION_RESPONSE_TOO_LARGE)', async () => {
    server.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ code: '00000', pad: 'x'.repeat(200_000) }))
    })
    const pa = pointAccess({ maxResponseBytes: 10_000 })
    expect(await pa.request(server.url, {})).toBe('99999')
    expect(pa.lastError?.code).toBe('ERR_PROVISION_RESPONSE_TOO_LARGE')
  })

  test('a chunked answer without content-length is capped too', async () => {
    server.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      for (let i = 0; i < 50; i++) res.write('x'.repeat(1000))
      res.end()
    })
    const pa = pointAccess({ maxResponseBytes: 10_000 })
    expect(await pa.request(server.url, {})).toBe('99999')
    expect(pa.lastError?.code).toBe('ERR_PROVISION_RESPONSE_TOO_LARGE')
  })

  test('mutual TLS: the client certificate is presented', async () => {
    const mtls = await startHttpsServer(tls, (_req, res) => json(res, 200, configAnswer({ host: 'h:1' })), {
      requestCert: true,
      rejectUnauthorized: true,
      ca: tls.ca,
    })
    try {
      const withCert = pointAccess({ tls: { ca: tls.ca, cert: tls.client.cert, key: tls.client.key } })
      expect(await withCert.request(mtls.url, {})).toBe('00000')
      // Under TLS 1.3 the server's refusal arrives after the handshake, as a closed socket: a network failure.
      const without = pointAccess()
      expect(await without.request(mtls.url, {})).toBe('77777')
      expect(['ERR_PROVISION_NETWORK', 'ERR_PROVISION_TLS']).toContain(without.lastError?.code)
      expect(mtls.requests).toHaveLength(1)
    } finally {
      await mtls.close()
    }
  })

  test('http:// is refused with a TypeError unless allowInsecureHttp', async () => {
    const pa = pointAccess()
    await expect(pa.request('http://127.0.0.1:1/', {})).rejects.toThrow(TypeError)
    await expect(pa.request('http://127.0.0.1:1/', {})).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      option: 'url',
    })
    const insecure = pointAccess({ allowInsecureHttp: true, timeoutMs: 500 })
    expect(await insecure.request('http://127.0.0.1:1/', {})).toBe('77777')
  })

  test('bad arguments are TypeErrors naming the argument', async () => {
    const pa = pointAccess()
    const circular: Record<string, unknown> = {}
    circular.self = circular
    await expect(pa.request('not a url', {})).rejects.toMatchObject({ name: 'InvalidOptionError', option: 'url' })
    await expect(pa.request(server.url, circular)).rejects.toMatchObject({ option: 'data' })
    await expect(pa.request(server.url, undefined)).rejects.toMatchObject({ option: 'data' })
    await expect(pa.request(server.url, {}, { headers: { 'x-a': 'a\r\nb' } })).rejects.toMatchObject({
      option: 'headers.x-a',
    })
    expect(() => new PointAccess({ timeoutMs: -1 })).toThrow(/timeoutMs/)
  })

  test('an aborted signal rejects with AbortError', async () => {
    server.handle(() => {})
    const pa = pointAccess()
    const controller = new AbortController()
    const pending = pa.request(server.url, {}, { signal: controller.signal })
    setTimeout(() => controller.abort(), 50)
    await expect(pending).rejects.toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
  })
})
