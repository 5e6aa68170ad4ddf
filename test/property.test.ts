/**
 * Property-based: generated provisioning answers (wrong types, missing and extra fields, huge strings, __proto__ and
 * constructor keys, qos 7, hosts with odd schemes) never make the validation or PointAccess.request throw, hang or
 * pollute a prototype; each gives "00000" with a valid configuration or a documented code.
 */
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { brokerHostProblem } from '../src/broker-url.js'
import { parseDeviceConfig } from '../src/contract.js'
import {
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
  PointAccess,
  ProvisioningError,
} from '../src/index.js'
import { interpretAnswer } from '../src/point-access.js'
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

// Building blocks: values of every JSON type, some of them near misses of the real thing.
const oddString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('', ' ', '\u0000', 'a\nb', '__proto__', 'constructor', 'toString', '\uFEFF', '\uD800'),
  fc.nat({ max: 70_000 }).map((n) => 'x'.repeat(n)), // huge strings
)
const scalar = fc.oneof(oddString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null))
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, scalar, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(fc.oneof(oddString, fc.constantFrom('__proto__', 'constructor', 'prototype')), tie('value'), {
    maxKeys: 4,
  }),
})).value

/** Mostly the valid value, sometimes something odd, sometimes missing (undefined: JSON.stringify drops the key). */
const field = <T>(valid: fc.Arbitrary<T>, odd: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 8, arbitrary: valid },
    { weight: 1, arbitrary: odd },
    { weight: 1, arbitrary: fc.constant(undefined) },
  )

const host = fc.oneof(
  fc.constantFrom('broker.example:1883', 'mqtts://broker.example:8883', 'ws://broker.example/mqtt', '[::1]:1883', 'b'),
  fc.constantFrom(
    'ftp://broker.example',
    'javascript:alert(1)',
    'file:///etc/passwd',
    'mqtt://user:pw@broker.example',
    'mqtt://broker.example/?clientId=evil',
    'http://broker.example',
    'MQTTS://UPPER.example',
    'broker.example:99999',
    'bröker.example',
    '',
  ),
)
const device = fc.record({
  productKey: field(fc.constantFrom('a1PK', 'pk-2'), fc.oneof(oddString, scalar)),
  deviceName: field(fc.constantFrom('dev-1', 'meter_0002'), fc.oneof(oddString, scalar)),
  deviceSecret: field(fc.constantFrom('s3cret', 'x'.repeat(64)), fc.oneof(oddString, scalar)),
  productSecret: fc.oneof(fc.constant(undefined), fc.constant(null), fc.constant('ps'), oddString, scalar),
  __proto__: fc.oneof(fc.constant(undefined), fc.constant({ polluted: true })),
  constructor: fc.oneof(fc.constant(undefined), jsonValue),
})
const connect = fc.record({
  qos: field(fc.constantFrom(0, 1, 2), fc.oneof(fc.constantFrom(7, -1, 1.5, '1', true, null), scalar)),
  host: field(host, scalar),
  cleanSession: field(fc.constantFrom(0, 1, true, false), fc.oneof(fc.constantFrom(2, '1', null), scalar)),
  extra: fc.oneof(fc.constant(undefined), jsonValue),
})
const answer = fc.oneof(
  {
    weight: 9,
    arbitrary: fc.record({
      code: field(fc.constantFrom('00000', '00000', '00000', '77777', '10001'), fc.oneof(oddString, scalar)),
      result: field(fc.record({ device: field(device, jsonValue), connect: field(connect, jsonValue) }), jsonValue),
      message: fc.oneof(fc.constant(undefined), jsonValue),
    }),
  },
  { weight: 1, arbitrary: jsonValue },
)

/** The body as the server would send it: JSON text with __proto__ keys kept as real keys, or not JSON at all. */
const body = fc.oneof(
  { weight: 8, arbitrary: answer.map((value) => JSON.stringify(value, protoAsKey)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: answer.map((value) => JSON.stringify(value, protoAsKey).slice(0, -3)) },
)
const status = fc.oneof(
  { weight: 4, arbitrary: fc.constant(200) },
  { weight: 1, arbitrary: fc.constantFrom(201, 204, 301, 400, 401, 404, 408, 429, 500, 503) },
)

/** fc.record's __proto__ becomes an own data property; make sure JSON.stringify keeps it as one. */
function protoAsKey(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
  return Object.fromEntries(Object.entries(Object.getOwnPropertyDescriptors(value)).map(([k, d]) => [k, d.value]))
}

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
      const { tooLargeError } = await import('../src/transport/http-transport.js')
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
