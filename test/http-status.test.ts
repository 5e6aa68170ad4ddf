/**
 * The contract's HTTP statuses, over real HTTPS: 200 with any code; 401 only with a claim refusal ("10004"/"10005");
 * 408, 429 and 5xx transient. Anything else (404, 403, 400, a redirect) is no refusal whatever its body says:
 * ERR_PROVISION_HTTP_STATUS, "99999", not transient, its message naming the status.
 */
import type { ServerResponse } from 'node:http'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { PointAccess, ProvisioningError } from '../packages/mqtt-bootstrap/src/index.js'
import { checkProvisioningServer } from '../packages/mqtt-bootstrap-server/src/index.js'
import { configAnswer, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { KNOWN } from './helpers/reference-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

let tls: TlsFixture
let server: TestServer
/** Where redirects point: it would hand out a configuration, were a redirect followed. */
let elsewhere: TestServer

beforeAll(async () => {
  tls = await tlsFixture()
  server = await startHttpsServer(tls, (_req, res) => json(res, 200, { code: '10001' }))
  elsewhere = await startHttpsServer(tls, (_req, res) => json(res, 200, configAnswer({ host: 'broker.example:1883' })))
})
afterAll(async () => {
  await server.close()
  await elsewhere.close()
})
beforeEach(() => {
  server.requests.length = 0
  elsewhere.requests.length = 0
})

async function ask(answer: (res: ServerResponse) => void) {
  server.handle((_req, res) => answer(res))
  const pa = new PointAccess({ tls: { ca: tls.ca }, timeoutMs: 3000 })
  const before = structuredClone(pa.deviceConfig)
  const code = await pa.request(server.url, KNOWN)
  expect(pa.deviceConfig).toEqual(before)
  expect(server.requests).toHaveLength(1)
  const error = pa.lastError
  expect(error).toBeInstanceOf(ProvisioningError)
  return { code, error: error as ProvisioningError }
}

describe('statuses outside the contract are not refusals, whatever the body', () => {
  const refusal = { code: '10001', message: 'unknown device' }
  const cases: Array<[string, number, (res: ServerResponse) => void]> = [
    ['404 with a refusal code', 404, (res) => json(res, 404, refusal)],
    ['404 with a claim refusal code', 404, (res) => json(res, 404, { code: '10004' })],
    ['404 with HTML', 404, (res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>Not Found</h1>')],
    ['403 with a refusal code', 403, (res) => json(res, 403, refusal)],
    ['400 with a refusal code', 400, (res) => json(res, 400, { code: '10002' })],
    ['405 with a refusal code', 405, (res) => json(res, 405, { code: '10002' })],
    ['410 with "00000" and a configuration', 410, (res) => json(res, 410, configAnswer({ host: 'b:1' }))],
    ['401 with another refusal code', 401, (res) => json(res, 401, refusal)],
    ['401 with "00000" and a configuration', 401, (res) => json(res, 401, configAnswer({ host: 'b:1' }))],
    ['401 with "77777"', 401, (res) => json(res, 401, { code: '77777' })],
    ['401 with no body', 401, (res) => res.writeHead(401, { 'www-authenticate': 'Basic' }).end()],
    ['401 with HTML', 401, (res) => res.writeHead(401).end('<h1>Unauthorized</h1>')],
  ]
  test.each(cases)('%s: ERR_PROVISION_HTTP_STATUS, "99999", not transient', async (_name, status, answer) => {
    const { code, error } = await ask(answer)
    expect(code).toBe('99999')
    expect(error).toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', resultCode: '99999', transient: false, status })
    expect(error.message).toContain(`HTTP ${status}`)
  })

  test.each([301, 302, 303, 307, 308])('a %i redirect is not followed and is no refusal', async (status) => {
    const { code, error } = await ask((res) =>
      res.writeHead(status, { location: elsewhere.url, 'content-type': 'application/json' }).end('{"code":"10001"}'),
    )
    expect(code).toBe('99999')
    expect(error).toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', transient: false, status })
    expect(error.message).toContain(`HTTP ${status}`)
    expect(elsewhere.requests).toHaveLength(0)
  })
})

describe("the contract's statuses", () => {
  test.each(['10004', '10005'])('401 with the claim refusal "%s" is a refusal', async (claim) => {
    const { code, error } = await ask((res) => json(res, 401, { code: claim, message: 'bad signature' }))
    expect(code).toBe(claim)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_REFUSED', resultCode: claim, transient: false, status: 401 })
  })

  test('200 with a refusal code is a refusal', async () => {
    const { code, error } = await ask((res) => json(res, 200, { code: '10003' }))
    expect(code).toBe('10003')
    expect(error).toMatchObject({ code: 'ERR_PROVISION_REFUSED', status: 200 })
  })

  test.each([201, 202, 204, 206])('%i is outside the contract (200 only), whatever the body', async (status) => {
    const answer = status === 204 ? undefined : { code: '10003' }
    const { code, error } = await ask((res) =>
      answer === undefined ? res.writeHead(204).end() : json(res, status, answer),
    )
    expect(code).toBe('99999')
    expect(error).toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', resultCode: '99999', transient: false, status })
    expect(String((error as Error).message)).toContain(`HTTP ${status}`)
  })

  test.each([408, 429, 500, 502, 503, 504])('%i is transient, whatever the body', async (status) => {
    const { code, error } = await ask((res) => json(res, status, { code: '10001' }))
    expect(code).toBe('77777')
    expect(error).toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', resultCode: '77777', transient: true, status })
  })
})

describe('the conformance checker agrees', () => {
  test('a refusal sent with HTTP 404 fails the unknown-device check, naming the status', async () => {
    server.handle((req, res) =>
      JSON.parse(req.body).imei === KNOWN.imei
        ? json(res, 200, configAnswer({ host: 'broker.example:8883' }), { 'cache-control': 'no-store' })
        : json(res, 404, { code: '10001' }),
    )
    const report = await checkProvisioningServer({ url: server.url, data: KNOWN, tls: { ca: tls.ca } })
    const unknown = report.checks.find((c) => c.id === 'unknownDevice')
    expect(unknown?.status).toBe('fail')
    expect(unknown?.detail).toMatch(/HTTP 404/)
    expect(report.ok).toBe(false)
  })

  test('a claim refusal with HTTP 401 passes the unknown-device check', async () => {
    server.handle((req, res) =>
      JSON.parse(req.body).imei === KNOWN.imei
        ? json(res, 200, configAnswer({ host: 'broker.example:8883' }), { 'cache-control': 'no-store' })
        : json(res, 401, { code: '10004' }),
    )
    const report = await checkProvisioningServer({ url: server.url, data: KNOWN, tls: { ca: tls.ca } })
    expect(report.checks.find((c) => c.id === 'unknownDevice')).toMatchObject({ status: 'pass' })
    expect(report.ok).toBe(true)
  })

  test('the known device answered with a redirect fails the status check', async () => {
    server.handle((_req, res) => res.writeHead(302, { location: elsewhere.url }).end())
    const report = await checkProvisioningServer({ url: server.url, data: KNOWN, tls: { ca: tls.ca } })
    expect(report.checks.find((c) => c.id === 'status')).toMatchObject({ status: 'fail', detail: 'HTTP 302' })
    expect(elsewhere.requests).toHaveLength(0)
  })
})
