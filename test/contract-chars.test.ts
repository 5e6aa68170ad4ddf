/**
 * Issue 11: characters MQTT forbids in a UTF-8 string (C0 and C1 controls, U+007F, lone surrogates, noncharacters)
 * are refused in every string of an answer, as a "99999" that leaves deviceConfig as it was, by the library and the
 * published JSON Schema alike (whose validators compile patterns with the `u` flag, which the library does not use).
 */
import { readFileSync } from 'node:fs'
import { Ajv } from 'ajv'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { brokerHostProblem } from '../packages/mqtt-bootstrap/src/broker-url.js'
import { parseAnswer, parseDeviceConfig } from '../packages/mqtt-bootstrap/src/contract.js'
import { PointAccess, ProvisioningError } from '../packages/mqtt-bootstrap/src/index.js'
import { boot, useTestEnv } from './helpers/env.js'
import { configAnswer, DEVICE, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

/** The rule, from the standards (MQTT 5.0 section 1.5.4, Unicode's noncharacters), one code point at a time. */
function mqttAllows(value: string): boolean {
  for (const char of value) {
    const cp = char.codePointAt(0) as number // a lone surrogate comes alone
    if (cp >= 0xd800 && cp <= 0xdfff) return false
    if (cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)) return false
    if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false
  }
  return true
}

const FORBIDDEN = [
  '\u0000',
  '\u0001',
  '\u001f',
  '\u007f',
  '\u0080',
  '\u0085',
  '\u009b',
  '\u009f',
  '\ud800',
  '\udbff',
  '\udc00',
  '\udfff',
  '\ufdd0',
  '\ufdef',
  '\ufffe',
  '\uffff',
  '\u{1fffe}',
  '\u{1ffff}',
  '\u{10fffe}',
  '\u{10ffff}',
]
const ALLOWED = [' ', '~', '\u00a0', '\ud7ff', '\ue000', '\ufdcf', '\ufdf0', '\ufffd', '\u{10000}', '\u{1fffd}', '😀']

const committed = JSON.parse(
  readFileSync(new URL('../packages/mqtt-bootstrap/schema/provisioning.schema.json', import.meta.url), 'utf8'),
)
const definitions = committed.definitions.deviceConfig.properties
const productKeyPattern: string = definitions.device.anyOf[0].properties.productKey.pattern
const hostPattern: string = definitions.connect.properties.host.pattern
const validResponse = new Ajv().compile(committed)

describe('the pattern means the same with and without the u flag, and says what MQTT says', () => {
  const plain = new RegExp(productKeyPattern)
  const unicode = new RegExp(productKeyPattern, 'u')
  const agree = (value: string) => {
    const expected = mqttAllows(value)
    expect(plain.test(value), JSON.stringify(value)).toBe(expected)
    expect(unicode.test(value), JSON.stringify(value)).toBe(expected)
  }

  test('every code point, alone and between two letters; every lone surrogate', () => {
    let refused = 0
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      const char = String.fromCodePoint(cp)
      const expected = mqttAllows(char)
      if (!expected) refused++
      for (const value of [char, `a${char}b`]) {
        if (plain.test(value) !== expected || unicode.test(value) !== expected) agree(value) // fails, and says why
      }
    }
    // 32 C0, 1 DEL, 32 C1, 2,048 surrogates, 66 noncharacters.
    expect(refused).toBe(32 + 1 + 32 + 2048 + 66)
  })

  test('20,000 generated strings of UTF-16 units (pairs, lone and reversed surrogates, boundaries)', () => {
    const unit = fc.oneof(
      fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)),
      fc.integer({ min: 0xd800, max: 0xdfff }).map((u) => String.fromCharCode(u)),
      fc.integer({ min: 0x10000, max: 0x10ffff }).map((cp) => String.fromCodePoint(cp)),
      fc.constantFrom(...FORBIDDEN, ...ALLOWED, 'a'),
    )
    fc.assert(
      fc.property(fc.array(unit, { maxLength: 12 }), (units) => agree(units.join(''))),
      { numRuns: 20_000 },
    )
  })

  test('the host pattern keeps MQTT strings in a WebSocket path', () => {
    for (const char of [...FORBIDDEN, ...ALLOWED]) {
      const host = `wss://b.example/mqtt${char}x`
      const expected = mqttAllows(char) && char !== ' '
      expect(brokerHostProblem(host) === undefined, JSON.stringify(char)).toBe(expected)
      expect(new RegExp(hostPattern, 'u').test(host), JSON.stringify(char)).toBe(expected)
    }
  })
})

/** Where a character can go in an answer. */
const PLACES: Record<string, (char: string) => unknown> = {
  productKey: (c) => configAnswer({ host: 'b.example:1883' }, { ...DEVICE, productKey: `a1${c}PK` }),
  deviceName: (c) => configAnswer({ host: 'b.example:1883' }, { ...DEVICE, deviceName: `dev${c}001` }),
  deviceSecret: (c) => configAnswer({ host: 'b.example:1883' }, { ...DEVICE, deviceSecret: `s3cr3t-${c}-secret` }),
  productSecret: (c) => configAnswer({ host: 'b.example:1883' }, { ...DEVICE, productSecret: `pr0duct-${c}-secret` }),
  host: (c) => configAnswer({ host: `ws://b.example/mqtt${c}` }),
  code: (c) => ({ code: `E${c}1`, message: 'refused' }),
}

describe('an answer with one is a "99999" over a real HTTPS server; deviceConfig is unchanged', () => {
  let tls: TlsFixture
  let server: TestServer
  let answer: unknown
  beforeAll(async () => {
    tls = await tlsFixture()
    server = await startHttpsServer(tls, (_req, res) => json(res, 200, answer))
  })
  afterAll(() => server.close())

  test.each(Object.keys(PLACES))('in %s', async (place) => {
    const pa = new PointAccess({ tls: { ca: tls.ca }, timeoutMs: 5000 })
    answer = configAnswer({ host: 'good.example:1883' })
    expect(await pa.request(server.url, { imei: '1' })).toBe('00000')
    const before = structuredClone(pa.deviceConfig)
    const field = place === 'code' ? 'code' : place === 'host' ? 'connect.host' : `device.${place}`
    const build = PLACES[place] as (char: string) => unknown
    for (const char of FORBIDDEN) {
      answer = build(char)
      expect(validResponse(answer), JSON.stringify(char)).toBe(false)
      expect(await pa.request(server.url, { imei: '1' }), JSON.stringify(char)).toBe('99999')
      expect(pa.lastError).toBeInstanceOf(ProvisioningError)
      expect(pa.lastError).toMatchObject({ code: 'ERR_PROVISION_INVALID_RESPONSE', transient: false })
      expect(pa.lastError?.message).toContain(field)
      expect(pa.deviceConfig).toEqual(before)
    }
    for (const char of ALLOWED.filter((c) => place !== 'host' || c !== ' ')) {
      answer = build(char)
      const expected = place === 'code' ? 'E' : '00000'
      expect(validResponse(answer), JSON.stringify(char)).toBe(true)
      expect((await pa.request(server.url, { imei: '1' })).startsWith(expected), JSON.stringify(char)).toBe(true)
    }
  })
})

describe('elsewhere the contract applies', () => {
  test('a cached entry with one is not a valid configuration (a miss, then provisioned afresh)', () => {
    const config = { device: { ...DEVICE, deviceName: 'dev\u0085' }, connect: { host: 'b:1', qos: 1, cleanSession: 1 } }
    expect(parseDeviceConfig(config)).toEqual({
      ok: false,
      problem: 'device.deviceName contains control characters, lone surrogates or noncharacters',
    })
    expect(parseAnswer({ code: '1\ud8000' }).ok).toBe(false)
  })

  const env = useTestEnv()
  test('a device given one never reaches the broker and does not retry', async () => {
    env.answerValid({}, { ...DEVICE, deviceName: 'device\u009b001' })
    const error = await boot(env.options())
      .boot.connect()
      .catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(ProvisioningError)
    expect(error).toMatchObject({ resultCode: '99999', transient: false })
    expect(env.server.requests).toHaveLength(1)
    expect(env.broker.connects).toHaveLength(0)
  })
})
