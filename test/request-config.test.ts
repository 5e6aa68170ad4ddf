import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import {
  AbortError,
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
  PointAccess,
  ProvisioningError,
  UndiciTransport,
} from '../packages/mqtt-bootstrap/src/index.js'
import { requestConfig } from '../packages/mqtt-bootstrap/src/point-access.js'
import { FakeClock } from './helpers/fake-clock.js'
import { configAnswer, DEVICE, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { type SilentServer, startSilentServer } from './helpers/silent-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

let tls: TlsFixture
let server: TestServer
let undici: UndiciTransport
let silent: SilentServer

/** Answers each device by its data: `{ imei }` -> a configuration whose deviceName is `device-<imei>`. */
const byImei = (body: string) => {
  const { imei } = JSON.parse(body) as { imei: string }
  return configAnswer({ host: `broker-${imei}.example:1883` }, { ...DEVICE, deviceName: `device-${imei}` })
}

beforeAll(async () => {
  tls = await tlsFixture()
  server = await startHttpsServer(tls, (req, res) => json(res, 200, byImei(req.body)))
  undici = new UndiciTransport({ ca: tls.ca })
  silent = await startSilentServer()
})
afterAll(async () => {
  await Promise.all([server.close(), undici.close(), silent.close()])
})
beforeEach(() => {
  server.requests.length = 0
  server.handle((req, res) => json(res, 200, byImei(req.body)))
})

const limits = Object.freeze({ timeoutMs: 2000, maxResponseBytes: 65536 })
const seams = () => ({ transport: undici, clock: new FakeClock() })

/** The transport the caller gave, recording what reaches it. */
class Recording implements HttpTransport {
  readonly requests: HttpRequest[] = []
  async post(request: HttpRequest): Promise<HttpResponse> {
    this.requests.push(request)
    return undici.post(request)
  }
}

describe('requestConfig', () => {
  test('a checked request in, the configuration out (a real HTTPS server)', async () => {
    const config = await requestConfig({ url: server.url, body: '{"imei":"7"}' }, limits, seams())
    expect(config).toEqual({
      device: { ...DEVICE, deviceName: 'device-7', productSecret: null },
      connect: { qos: 1, host: 'broker-7.example:1883', cleanSession: 1 },
    })
    const [request] = server.requests
    expect(request?.method).toBe('POST')
    expect(request?.body).toBe('{"imei":"7"}')
    expect(request?.headers['content-type']).toBe('application/json')
  })

  test('passes what it is given as it is given (no check again below the door), content-type forced', async () => {
    const transport = new Recording()
    const url = new URL(server.url)
    const headers = Object.freeze({ 'x-api-key': 'k-1', 'content-type': 'text/plain' })
    const odd = { timeoutMs: 1999, maxResponseBytes: 65535 }
    await requestConfig({ url, body: '{"imei":"8"}', headers }, odd, { transport, clock: new FakeClock() })
    expect(transport.requests).toHaveLength(1)
    const [sent] = transport.requests
    expect(sent?.url).toBe(url)
    expect(sent).toMatchObject({ body: '{"imei":"8"}', timeoutMs: 1999, maxResponseBytes: 65535 })
    expect(sent?.headers).toEqual({ 'x-api-key': 'k-1', 'content-type': 'application/json' })
    expect(server.requests[0]?.headers['x-api-key']).toBe('k-1')
  })

  test('error in, error out: a refusal is thrown as a ProvisioningError naming the URL, redacted', async () => {
    server.handle((_req, res) => json(res, 200, { code: '10001' }))
    const url = server.url.replace('https://', 'https://user:pw@').concat('?token=t0k3n')
    const error = await requestConfig({ url, body: '{}' }, limits, seams()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProvisioningError)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_REFUSED', resultCode: '10001', transient: false, status: 200 })
    expect((error as ProvisioningError).url).toBe(server.url)
    expect((error as Error).message).toBe(`provisioning server refused the device: "10001", at ${server.url}`)
    expect((error as Error).message).not.toMatch(/pw|t0k3n/)
  })

  test("a 503's HTTP-date Retry-After is measured on the injected clock", async () => {
    const clock = new FakeClock()
    const date = new Date(clock.time + 7000).toUTCString()
    server.handle((_req, res) => json(res, 503, 'busy', { 'retry-after': date }))
    const error = await requestConfig({ url: server.url, body: '{}' }, limits, { transport: undici, clock }).catch(
      (e: unknown) => e,
    )
    expect(error).toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', resultCode: '77777', transient: true })
    // The date has whole seconds: the wait is what is left of the 7 s once the clock's milliseconds are gone.
    expect((error as ProvisioningError).retryAfterMs).toBe(Date.parse(date) - clock.time)
    expect((error as ProvisioningError).retryAfterMs).toBeGreaterThan(6000)
  })

  test("a refusal's message hides the secrets given, its result code stays the server's", async () => {
    const secret = 'echoed-secret-0123456789'
    server.handle((_req, res) => json(res, 200, { code: `no ${secret}` }))
    const error = (await requestConfig({ url: server.url, body: '{}', secrets: [secret, null] }, limits, seams()).catch(
      (e: unknown) => e,
    )) as ProvisioningError
    expect(error.resultCode).toBe(`no ${secret}`)
    expect(error.message).not.toContain(secret.slice(0, 8))
  })

  test('stateless: concurrent requests each get their own configuration', async () => {
    const imeis = ['11', '12', '13', '14', '15', '16']
    const configs = await Promise.all(
      imeis.map((imei) => requestConfig({ url: server.url, body: JSON.stringify({ imei }) }, limits, seams())),
    )
    expect(configs.map((config) => config.device.deviceName)).toEqual(imeis.map((imei) => `device-${imei}`))
    expect(configs.map((config) => config.connect.host)).toEqual(imeis.map((imei) => `broker-${imei}.example:1883`))
  })

  test('the signal stops it with an AbortError, whatever stage the exchange is at', async () => {
    const { port } = silent
    const controller = new AbortController()
    const pending = requestConfig(
      { url: `https://127.0.0.1:${port}/provision`, body: '{}', signal: controller.signal },
      limits,
      seams(),
    ).catch((e: unknown) => e)
    setTimeout(() => controller.abort(new Error('stop')), 50)
    const started = performance.now()
    expect(await pending).toBeInstanceOf(AbortError)
    expect(performance.now() - started).toBeLessThan(1500)
  })
})

describe('PointAccess is a thin layer on requestConfig', () => {
  const answers: Array<[string, (res: Parameters<Parameters<TestServer['handle']>[0]>[1]) => void]> = [
    ['a refusal', (res) => json(res, 200, { code: '10002' })],
    ['not JSON', (res) => json(res, 200, '<html>')],
    ['a 503', (res) => json(res, 503, 'busy', { 'retry-after': '3' })],
    ['a 404', (res) => json(res, 404, { code: '00000' })],
    ['too large', (res) => json(res, 200, { code: 'x'.repeat(70_000) })],
  ]

  test.each(answers)(
    '%s: the code is the thrown error’s resultCode, lastError is that error',
    async (_name, answer) => {
      server.handle((_req, res) => answer(res))
      const thrown = (await requestConfig({ url: server.url, body: '{"imei":"1"}' }, limits, seams()).catch(
        (e: unknown) => e,
      )) as ProvisioningError
      expect(thrown).toBeInstanceOf(ProvisioningError)

      const pa = new PointAccess({ tls: { ca: tls.ca }, timeoutMs: 2000 }, { transport: undici })
      const before = pa.deviceConfig
      const code = await pa.request(server.url, { imei: '1' })
      expect(code).toBe(thrown.resultCode)
      expect(pa.deviceConfig).toBe(before)
      const { code: errorCode, resultCode, transient, status, retryAfterMs, message, url } = thrown
      expect(pa.lastError).toMatchObject({ code: errorCode, resultCode, transient, message, url })
      expect(pa.lastError?.status).toBe(status)
      expect(pa.lastError?.retryAfterMs).toBe(retryAfterMs)
    },
  )

  test('a success replaces deviceConfig with what requestConfig returns, and clears lastError', async () => {
    const pa = new PointAccess({ tls: { ca: tls.ca } }, { transport: undici })
    server.handle((_req, res) => json(res, 200, { code: '10002' }))
    await pa.request(server.url, { imei: '1' })
    expect(pa.lastError).not.toBeNull()
    server.handle((req, res) => json(res, 200, byImei(req.body)))
    expect(await pa.request(server.url, { imei: '21' })).toBe('00000')
    expect(pa.lastError).toBeNull()
    expect(pa.deviceConfig).toEqual(await requestConfig({ url: server.url, body: '{"imei":"21"}' }, limits, seams()))
  })
})
