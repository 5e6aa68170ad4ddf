/**
 * Property-based: generated provisioning answers (wrong types, missing and extra fields, huge strings, __proto__ and
 * constructor keys, qos 7, hosts with odd schemes) never make the validation or PointAccess.request throw, hang or
 * pollute a prototype; each gives "00000" with a valid configuration or a documented code.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { brokerHostProblem } from '../packages/mqtt-bootstrap/src/broker-url.js'
import { parseDeviceConfig } from '../packages/mqtt-bootstrap/src/contract.js'
import {
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
  PointAccess,
  ProvisioningError,
} from '../packages/mqtt-bootstrap/src/index.js'
import { interpretAnswer } from '../packages/mqtt-bootstrap/src/point-access.js'
import { body, status } from './helpers/answers.js'
import { startHttpsServer, type TestServer } from './helpers/https-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

const RUNS = 10_000
const DOCUMENTED_CODES = new Set([
  'ERR_PROVISION_HTTP_STATUS',
  'ERR_PROVISION_SERVER_BUSY',
  'ERR_PROVISION_INVALID_RESPONSE',
  'ERR_PROVISION_RESPONSE_TOO_LARGE',
  'ERR_PROVISION_REFUSED',
])

function assertOutcome(code: string, pa: PointAccess): void {
  if (code === '00000') {
    expect(pa.lastError).toBeNull()
    const again = parseDeviceConfig(pa.deviceConfig)
    expect(again.ok).toBe(true)
    expect([0, 1, 2]).toContain(pa.deviceConfig.connect.qos)
    expect([0, 1]).toContain(pa.deviceConfig.connect.cleanSession)
    expect(brokerHostProblem(pa.deviceConfig.connect.host)).toBeUndefined()
    expect(Object.getPrototypeOf(pa.deviceConfig.device)).toBe(Object.prototype)
  } else {
    expect(pa.lastError).toBeInstanceOf(ProvisioningError)
    expect(DOCUMENTED_CODES).toContain(pa.lastError?.code)
    expect(pa.lastError?.resultCode).toBe(code)
    expect(code.length).toBeGreaterThan(0)
  }
}

/** A transport that answers from memory: the whole request path runs, minus the socket. */
class MemoryTransport implements HttpTransport {
  response: HttpResponse = { status: 200, headers: {}, body: '' }
  async post(request: HttpRequest): Promise<HttpResponse> {
    if (Buffer.byteLength(this.response.body) > request.maxResponseBytes) {
      const { tooLargeError } = await import('../packages/mqtt-bootstrap/src/transport/transport-error.js')
      throw tooLargeError(request.maxResponseBytes, this.response.status)
    }
    return this.response
  }
}

const prototypeKeys = () => Object.getOwnPropertyNames(Object.prototype).sort()
let before: string[]
beforeAll(() => {
  before = prototypeKeys()
})
afterAll(() => {
  expect(prototypeKeys()).toEqual(before)
  expect(({} as Record<string, unknown>).polluted).toBeUndefined()
})

describe(`${RUNS} generated answers`, () => {
  test('response validation never throws, and says what it accepts', () => {
    const seen = new Map<string, number>()
    fc.assert(
      fc.property(status, body, (httpStatus, text) => {
        const outcome = interpretAnswer({ status: httpStatus, headers: {}, body: text }, Date.now())
        const kind = outcome instanceof ProvisioningError ? outcome.code : 'valid'
        seen.set(kind, (seen.get(kind) ?? 0) + 1)
        if (outcome instanceof ProvisioningError) expect(DOCUMENTED_CODES).toContain(outcome.code)
        else expect(parseDeviceConfig(outcome).ok).toBe(true)
      }),
      { numRuns: RUNS },
    )
    // The generator reaches every outcome, the valid one included, often enough to mean something.
    for (const kind of ['valid', ...DOCUMENTED_CODES].filter((k) => k !== 'ERR_PROVISION_RESPONSE_TOO_LARGE')) {
      expect(seen.get(kind) ?? 0, kind).toBeGreaterThan(RUNS / 200)
    }
  })

  test('PointAccess.request (whole path, in-memory transport) returns a code and never throws', async () => {
    const transport = new MemoryTransport()
    const pa = new PointAccess({}, { transport })
    await fc.assert(
      fc.asyncProperty(status, body, async (httpStatus, text) => {
        transport.response = { status: httpStatus, headers: { 'retry-after': '1' }, body: text }
        const code = await pa.request('https://provision.example/bootstrap', { imei: '1' })
        expect(typeof code).toBe('string')
        assertOutcome(code, pa)
      }),
      { numRuns: RUNS },
    )
  })
})

describe('generated answers over a real HTTPS server', () => {
  let tls: TlsFixture
  let server: TestServer
  let next = { status: 200, body: '' }
  beforeAll(async () => {
    tls = await tlsFixture()
    server = await startHttpsServer(tls, (_req, res) => {
      res.writeHead(next.status, { 'content-type': 'application/json' })
      res.end(next.body)
    })
  })
  afterAll(() => server.close())

  test('300 answers through undici, TLS and all', async () => {
    const pa = new PointAccess({ tls: { ca: tls.ca }, timeoutMs: 5000 })
    await fc.assert(
      fc.asyncProperty(status, body, async (httpStatus, text) => {
        next = { status: httpStatus, body: httpStatus === 204 || httpStatus === 301 ? '' : text }
        const code = await pa.request(server.url, { imei: '1' })
        assertOutcome(code, pa)
      }),
      { numRuns: 300 },
    )
  }, 60_000)
})
