import { isIPv6 } from 'node:net'
import { inspect } from 'node:util'
import { describe, expect, test } from 'vitest'
import { brokerHostProblem, brokerUrl } from '../packages/mqtt-bootstrap/src/broker-url.js'
import {
  contractSchemas,
  describeIssue,
  expiryTime,
  frozenValidated,
  isValidatedConfig,
  parseAnswer,
  parseDeviceConfig,
} from '../packages/mqtt-bootstrap/src/contract.js'
import { valibot } from '../packages/mqtt-bootstrap/src/lazy.js'

const device = { productKey: 'pk', deviceName: 'dn', deviceSecret: 'ds' }

describe('parseDeviceConfig', () => {
  test('normalises: boolean cleanSession, missing productSecret -> null, defaults for qos/cleanSession, extra fields dropped', () => {
    const parsed = parseDeviceConfig({
      device: { ...device, extra: 1 },
      connect: { host: 'h:1', cleanSession: false, port: 9 },
    })
    expect(parsed).toEqual({
      ok: true,
      value: {
        device: { ...device, productSecret: null },
        connect: { qos: 1, host: 'h:1', cleanSession: 0 },
      },
    })
  })

  const invalid: Array<[string, unknown, RegExp]> = [
    ['not an object', 'x', /expected Object/],
    ['no device', { connect: { host: 'h' } }, /device/],
    ['qos 3', { device, connect: { host: 'h', qos: 3 } }, /connect\.qos/],
    ['qos "1"', { device, connect: { host: 'h', qos: '1' } }, /connect\.qos/],
    ['cleanSession 2', { device, connect: { host: 'h', cleanSession: 2 } }, /cleanSession/],
    ['empty productKey', { device: { ...device, productKey: '' }, connect: { host: 'h' } }, /productKey is empty/],
    [
      'huge deviceName',
      { device: { ...device, deviceName: 'x'.repeat(5000) }, connect: { host: 'h' } },
      /longer than 1024/,
    ],
    ['control characters', { device: { ...device, deviceName: 'a\nb' }, connect: { host: 'h' } }, /control characters/],
    [
      'no secret at all',
      { device: { ...device, deviceSecret: '' }, connect: { host: 'h' } },
      /device\.deviceSecret is empty/,
    ],
    ['a host with a path and no scheme', { device, connect: { host: 'h/x' } }, /host/],
    ['an http host', { device, connect: { host: 'http://h' } }, /host/],
  ]
  test.each(invalid)('%s is rejected with a message naming the field', (_name, value, message) => {
    const parsed = parseDeviceConfig(value)
    expect(parsed.ok).toBe(false)
    if (!parsed.ok) expect(parsed.problem).toMatch(message)
  })

  test('a productSecret without deviceSecret is a valid answer (dynamic registration)', () => {
    const parsed = parseDeviceConfig({
      device: { productKey: 'pk', deviceName: 'dn', productSecret: 'ps' },
      connect: { host: 'h' },
    })
    expect(parsed.ok && parsed.value.device).toEqual({
      productKey: 'pk',
      deviceName: 'dn',
      deviceSecret: '',
      productSecret: 'ps',
    })
  })

  test('__proto__ keys do not pollute anything', () => {
    const value = JSON.parse(
      '{"__proto__":{"polluted":1},"device":{"productKey":"pk","deviceName":"dn","deviceSecret":"s","__proto__":{"x":1}},"connect":{"host":"h"}}',
    )
    const parsed = parseDeviceConfig(value)
    expect(parsed.ok).toBe(true)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(parsed.ok && Object.getPrototypeOf(parsed.value.device)).toBe(Object.prototype)
  })
})

describe('device.expiresAt (a secret with a lifetime, issue 18)', () => {
  const config = (expiresAt: unknown) => parseDeviceConfig({ device: { ...device, expiresAt }, connect: { host: 'h' } })

  test.each([
    '2026-12-02T10:00:00Z',
    '2026-12-02t10:00:00z',
    '2026-12-02T10:00:00.123456789+08:00',
    '2028-02-29T23:59:59-05:30',
  ])('%s is kept as sent, and expiryTime() reads it', (expiresAt) => {
    const parsed = config(expiresAt)
    expect(parsed.ok && parsed.value.device.expiresAt).toBe(expiresAt)
    expect(expiryTime(expiresAt)).toBe(Date.parse(expiresAt.toUpperCase()))
  })

  test('absent stays absent', () => {
    const parsed = parseDeviceConfig({ device, connect: { host: 'h' } })
    expect(parsed.ok && 'expiresAt' in parsed.value.device).toBe(false)
  })

  test.each([
    ['a date only', '2026-12-02'],
    ['no offset', '2026-12-02T10:00:00'],
    ['a space for T', '2026-12-02 10:00:00Z'],
    ['a leap second', '2026-12-31T23:59:60Z'],
    ['hour 24', '2026-12-02T24:00:00Z'],
    ['an epoch number as text', '1796202000'],
    ['a number', 1796202000000],
    ['trailing text', '2026-12-02T10:00:00Z '],
  ])('%s is refused, without quoting the value', (_name, expiresAt) => {
    const parsed = config(expiresAt)
    expect(parsed.ok).toBe(false)
    expect(!parsed.ok && parsed.problem).toMatch(/^device\.expiresAt/)
    expect(!parsed.ok && parsed.problem).not.toContain(String(expiresAt))
  })

  test('a date that does not exist (31 February, 29 February 2027) is refused: Date.parse would roll it over', () => {
    for (const expiresAt of ['2026-02-31T00:00:00Z', '2027-02-29T00:00:00Z', '2026-04-31T12:00:00Z']) {
      expect(expiryTime(expiresAt)).toBeUndefined()
      expect(config(expiresAt)).toEqual({ ok: false, problem: 'device.expiresAt is not a date that exists' })
    }
  })
})

describe('parseAnswer', () => {
  test('needs a non-empty string code of at most 64 printable characters', () => {
    expect(parseAnswer({ code: '10001' })).toEqual({ ok: true, value: { code: '10001', result: undefined } })
    for (const bad of [{}, { code: 1 }, { code: '' }, { code: 'x'.repeat(65) }, { code: 'a\u0000' }, null, []]) {
      expect(parseAnswer(bad).ok).toBe(false)
    }
  })
})

describe('broker URL from connect.host', () => {
  test('a scheme is used as given', () => {
    for (const host of ['mqtt://b:1883', 'mqtts://b', 'ws://b:80/mqtt', 'wss://b/mqtt']) {
      expect(brokerUrl(host, { protocol: 'mqtts' }, 1883)).toBe(host)
    }
  })

  test('a bare host gets mqtts and the strategy port; broker options override', () => {
    expect(brokerUrl('b.example', {}, 1883)).toBe('mqtts://b.example:1883')
    expect(brokerUrl('b.example', {}, 8883)).toBe('mqtts://b.example:8883')
    expect(brokerUrl('b.example:9000', {}, 1883)).toBe('mqtts://b.example:9000')
    expect(brokerUrl('b.example', { port: 4000 }, 1883)).toBe('mqtts://b.example:4000')
    expect(brokerUrl('b.example', { protocol: 'mqtt' }, 8883)).toBe('mqtt://b.example:1883')
    expect(brokerUrl('b.example', { protocol: 'wss' }, 8883)).toBe('wss://b.example:443')
    expect(brokerUrl('[::1]:1883', { protocol: 'mqtt' }, 8883)).toBe('mqtt://[::1]:1883')
  })

  test('IPv6 literals are checked strictly (as net.isIPv6), schemes in any case', () => {
    const literals = [
      '::1',
      '::',
      '2001:db8::1',
      'fe80::1:2:3:4',
      '::ffff:192.0.2.1',
      '1:2:3:4:5:6:7:8',
      ':::',
      '1:2:3',
      '1.2.3.4',
      '.',
      '1::2::3',
      '12345::',
      'g::1',
    ]
    for (const literal of literals) {
      expect(brokerHostProblem(`[${literal}]:1883`) === undefined, literal).toBe(isIPv6(literal))
    }
    expect(brokerHostProblem('MQTTS://Broker.Example:8883')).toBeUndefined()
    expect(brokerUrl('MQTTS://b:1', {}, 1883)).toBe('MQTTS://b:1')
    expect(brokerUrl('[2001:db8::1]', {}, 1883)).toBe('mqtts://[2001:db8::1]:1883')
  })

  test('odd hosts are refused', () => {
    for (const host of [
      '',
      'http://b',
      'javascript:alert(1)',
      'file:///etc/passwd',
      'b:99999',
      'user:pw@b',
      'mqtt://u:p@b',
      'a b',
      'b/path',
      'b?x=1',
      'mqtt://b:1883/?clientId=evil',
      'wss://b/mqtt#fragment',
      '[:::::]:1883',
      'a..b',
      '-b',
      `${'x'.repeat(64)}.example`,
    ]) {
      expect(brokerHostProblem(host), host).toBeDefined()
    }
    for (const host of ['b', 'b.example:1', '127.0.0.1:1883', '[::1]:1883', 'iot_as-mqtt.cn.example', 'mqtts://b/x']) {
      expect(brokerHostProblem(host), host).toBeUndefined()
    }
  })
})

describe('normalisation and messages, exactly', () => {
  const connect = { host: 'h' }
  test('cleanSession true and 1 are 1, false and 0 are 0; an empty productSecret is null', () => {
    for (const [given, expected] of [
      [true, 1],
      [1, 1],
      [false, 0],
      [0, 0],
    ] as const) {
      const parsed = parseDeviceConfig({ device, connect: { ...connect, cleanSession: given } })
      expect(parsed.ok && parsed.value.connect.cleanSession, String(given)).toBe(expected)
    }
    const empty = parseDeviceConfig({ device: { ...device, productSecret: '' }, connect })
    expect(empty.ok && empty.value.device.productSecret).toBeNull()
    const kept = parseDeviceConfig({ device: { ...device, productSecret: 'ps' }, connect })
    expect(kept.ok && kept.value.device.productSecret).toBe('ps')
  })

  test('each problem names its path and rule, from the root down, never the value', () => {
    const problem = (value: unknown) => {
      const parsed = parseDeviceConfig(value)
      return parsed.ok ? undefined : parsed.problem
    }
    expect(problem('secret-looking')).toBe('(root): expected Object')
    expect(problem({ device })).toBe('connect: expected "connect"') // valibot: the key is missing
    expect(problem({ device, connect: { host: 7 } })).toBe('connect.host: expected string')
    expect(problem({ device, connect: { host: 'h', qos: 3 } })).toBe('connect.qos: expected (0 | 1 | 2)')
    expect(problem({ device: { ...device, deviceName: 'x'.repeat(1025) }, connect })).toBe(
      'device.deviceName is longer than 1024 characters',
    )
    expect(problem({ device: { ...device, deviceName: '' }, connect })).toBe('device.deviceName is empty')
    expect(problem({ device, connect: { host: 'a b' } })).toBe(
      'connect.host is not an mqtt(s)/ws(s) URL or host[:port]',
    )
    const answer = parseAnswer({ code: 'x'.repeat(65) })
    expect(answer.ok ? undefined : answer.problem).toBe('code is longer than 64 characters')
  })

  test('describeIssue puts a prefix before the path (the server check says where in the answer)', () => {
    const v = valibot()
    const { Connect, DeviceConfig } = contractSchemas()
    const first = (schema: Parameters<typeof v.safeParse>[0], value: unknown) => {
      const parsed = v.safeParse(schema, value)
      if (parsed.success) throw new Error('expected a problem')
      return parsed.issues[0]
    }
    expect(describeIssue(first(Connect, { host: 1 }), 'result.connect')).toBe('result.connect.host: expected string')
    expect(describeIssue(first(DeviceConfig, null), 'result')).toBe('result: expected Object')
  })

  test('frozenValidated: a frozen deep copy, recognised by isValidatedConfig; nothing else is', () => {
    const parsed = parseDeviceConfig({ device, connect })
    if (!parsed.ok) throw new Error(parsed.problem)
    const frozen = frozenValidated(parsed.value)
    expect(frozen).toEqual(parsed.value)
    expect(frozen).not.toBe(parsed.value)
    expect([Object.isFrozen(frozen), Object.isFrozen(frozen.device), Object.isFrozen(frozen.connect)]).toEqual([
      true,
      true,
      true,
    ])
    expect(isValidatedConfig(frozen)).toBe(true)
    for (const other of [parsed.value, { ...frozen }, null, undefined, 'config', 1]) {
      expect(isValidatedConfig(other), String(other)).toBe(false)
    }
    expect(inspect(frozen)).not.toContain(device.deviceSecret)
  })
})
