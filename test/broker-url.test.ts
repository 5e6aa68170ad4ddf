/**
 * broker-url.ts against independent references: Node's own IP parsers, every port, DNS label rules, and what the
 * contract accepts (a host the contract accepts always has a broker URL).
 */
import { isIPv4, isIPv6 } from 'node:net'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import {
  brokerHostProblem,
  brokerUrl,
  isSecureBrokerUrl,
  longerThan,
  MAX_HOST_LENGTH,
  parseBrokerHost,
  upgradeToTls,
} from '../packages/mqtt-bootstrap/src/broker-url.js'
import { parseDeviceConfig } from '../packages/mqtt-bootstrap/src/contract.js'

const valid = (host: string) => brokerHostProblem(host) === undefined

describe('IP literals', () => {
  test('a bracketed literal is valid exactly when net.isIPv6 says so (generated, valid and broken)', () => {
    const literal = fc.oneof(
      fc.ipV6(),
      fc.ipV6().map((ip) => ip.replace(/:/, ':::')),
      fc.ipV6().map((ip) => `${ip}:1`),
      fc.ipV4().map((ip) => `::ffff:${ip}`),
      fc.ipV4Extended().map((ip) => `::${ip}`),
      fc.ipV4().map((ip) => `1:2:3:4:5:6:${ip}`),
      fc.ipV4().map((ip) => `1:2:3:4:5:${ip}`),
      fc.ipV4().map((ip) => `1::${ip}`),
      fc.stringMatching(/^[0-9a-fA-F:.]{0,24}$/),
    )
    fc.assert(
      fc.property(literal, (ip) => {
        expect(valid(`[${ip}]:1883`), ip).toBe(isIPv6(ip))
        expect(valid(`mqtt://[${ip}]`), ip).toBe(isIPv6(ip))
      }),
      { numRuns: 5000 },
    )
  })

  test('the IPv4 in an IPv6 literal is checked as net.isIPv4 does, octet by octet', () => {
    for (let octet = 0; octet <= 300; octet++) {
      for (const text of [String(octet), `0${octet}`]) {
        const v4 = `10.${text}.0.1`
        expect(valid(`[::ffff:${v4}]`), v4).toBe(isIPv4(v4))
        expect(valid(`[::${text}.1.2.3]`), text).toBe(isIPv4(`${text}.1.2.3`))
      }
    }
  })

  test('brackets are removed from the hostname; an IPv6 literal gets them back in the URL', () => {
    expect(parseBrokerHost('[2001:db8::1]:1883')).toEqual({
      protocol: undefined,
      hostname: '2001:db8::1',
      port: 1883,
      path: undefined,
    })
    expect(brokerUrl('[::1]', { protocol: 'ws' }, 1)).toBe('ws://[::1]:80')
    expect(brokerUrl('127.0.0.1', { protocol: 'wss' }, 1)).toBe('wss://127.0.0.1:443')
  })
})

describe('ports', () => {
  test('every port from 0 to 65536, with and without a scheme, with a leading zero', () => {
    for (let port = 0; port <= 65536; port++) {
      const expected = port >= 1 && port <= 65535
      if (valid(`b:${port}`) !== expected || valid(`mqtt://b:${port}/x`) !== expected || valid(`b:0${port}`)) {
        throw new Error(`port ${port}: ${valid(`b:${port}`)} ${valid(`mqtt://b:${port}/x`)} ${valid(`b:0${port}`)}`)
      }
    }
    expect(parseBrokerHost('b:65535')?.port).toBe(65535)
    expect(parseBrokerHost('mqtt://b:1/x')?.port).toBe(1)
    expect(parseBrokerHost('b')?.port).toBeUndefined()
    for (const bad of ['b:', 'b:+1', 'b:1.0', 'b:1e3', 'b: 1', 'b:0x10']) expect(valid(bad), bad).toBe(false)
  })
})

describe('names', () => {
  test('labels of 1 to 63 letters, digits, `_` and inner `-`', () => {
    const label = (n: number) => 'a'.repeat(n)
    expect(valid(`${label(63)}.example`)).toBe(true)
    expect(valid(`${label(64)}.example`)).toBe(false)
    expect(valid(`x.${label(63)}`)).toBe(true)
    expect(valid(`x.${label(64)}`)).toBe(false)
    for (const good of ['a', 'A-1', '_srv', 'a_', 'a--b', '0', 'x.y.z', 'a-b.c_d', 'Z9'])
      expect(valid(good), good).toBe(true)
    for (const bad of ['-a', 'a-', 'a.-b', 'a.b-', '.a', 'a.', 'a..b', 'a b', 'ä', 'a*', 'a%41', 'a\u0000']) {
      expect(valid(bad), bad).toBe(false)
    }
  })

  test('schemes: mqtt, mqtts, ws, wss in any case, nothing else', () => {
    for (const scheme of ['mqtt', 'mqtts', 'ws', 'wss', 'MQTT', 'MqTtS', 'WS', 'wSs']) {
      expect(parseBrokerHost(`${scheme}://b`)?.protocol, scheme).toBe(scheme.toLowerCase())
    }
    for (const scheme of ['mqttss', 'wsss', 'mqt', 'w', 'tcp', 'ssl', 'http', 'mqtt:', 'mqtts:/']) {
      expect(valid(`${scheme}://b`), scheme).toBe(false)
    }
    expect(valid('mqtt:/b')).toBe(false)
    expect(valid('://b')).toBe(false)
  })

  test('a path only after a scheme; no query, fragment, space or control; other characters are fine', () => {
    expect(parseBrokerHost('wss://b.example:443/mqtt/v1')).toEqual({
      protocol: 'wss',
      hostname: 'b.example',
      port: 443,
      path: '/mqtt/v1',
    })
    expect(parseBrokerHost('ws://b/')?.path).toBe('/')
    for (const good of ['ws://b/a/b%20c', 'ws://b/~user', 'ws://b/ä/😀', 'ws://b/a;b=c', 'ws://b//']) {
      expect(valid(good), good).toBe(true)
    }
    for (const bad of ['b/x', 'ws://b/a?b', 'ws://b/a#b', 'ws://b/a b', 'ws://b/a\tb', 'ws://b/\u0085', 'ws://bx?']) {
      expect(valid(bad), bad).toBe(false)
    }
  })
})

describe('lengths count code points, as the contract does', () => {
  test('1024 code points pass and 1025 do not, whatever the UTF-16 length', () => {
    for (const char of ['x', '😀']) {
      for (const [length, ok] of [
        [MAX_HOST_LENGTH, true],
        [MAX_HOST_LENGTH + 1, false],
      ] as const) {
        const host = `wss://b/${char.repeat(length - 8)}`
        expect([...host].length).toBe(length)
        expect(valid(host), `${char} ${length}`).toBe(ok)
        expect(parseBrokerHost(host) !== undefined, `${char} ${length}`).toBe(ok)
        const config = parseDeviceConfig({
          device: { productKey: 'p', deviceName: 'd', deviceSecret: 's' },
          connect: { host },
        })
        expect(config.ok, `${char} ${length}`).toBe(ok)
        if (ok) expect(brokerUrl(host, {}, 1883)).toBe(host)
      }
    }
    expect(brokerHostProblem(`b/${'x'.repeat(MAX_HOST_LENGTH)}`)).toBe('is longer than 1024 characters')
    expect(brokerHostProblem('')).toBe('is empty')
    expect(brokerHostProblem('a b')).toBe('is not an mqtt(s)/ws(s) URL or host[:port]')
  })

  test('longerThan counts code points and stops early', () => {
    expect(longerThan('😀😀', 2)).toBe(false)
    expect(longerThan('😀😀😀', 2)).toBe(true)
    expect(longerThan('abc', 3)).toBe(false)
    expect(longerThan('abcd', 3)).toBe(true)
    expect(longerThan('', 0)).toBe(false)
    expect(longerThan('a', 0)).toBe(true)
  })

  test('generated hosts: valid exactly when they should be; the contract agrees; each valid one has a broker URL', () => {
    const parts = fc.record({
      scheme: fc.option(fc.constantFrom('mqtt', 'MQTTS', 'ws', 'wss')),
      name: fc.oneof(
        fc.domain(),
        fc.ipV4(),
        fc.ipV6().map((ip) => `[${ip}]`),
      ),
      port: fc.option(fc.integer({ min: 0, max: 70_000 })),
      path: fc.option(fc.webPath()),
    })
    fc.assert(
      fc.property(parts, ({ scheme, name, port, path }) => {
        const host = `${scheme === null ? '' : `${scheme}://`}${name}${port === null ? '' : `:${port}`}${path ?? ''}`
        const expected = (port === null || (port >= 1 && port <= 65535)) && (!path || scheme !== null)
        expect(valid(host), host).toBe(expected)
        const config = parseDeviceConfig({
          device: { productKey: 'p', deviceName: 'd', deviceSecret: 's' },
          connect: { host },
        })
        expect(config.ok, host).toBe(expected)
        if (!expected) return
        const url = brokerUrl(host, {}, 1883)
        const parsed = parseBrokerHost(url)
        expect(parsed?.hostname, host).toBe(name.replace(/^\[(.*)\]$/, '$1'))
        expect(parsed?.port, host).toBe(port ?? (scheme === null ? 1883 : undefined))
        expect(parsed?.protocol, host).toBe(scheme?.toLowerCase() ?? 'mqtts')
      }),
      { numRuns: 3000 },
    )
  })
})

describe('parseBrokerHost remembers recent hosts, and only those', () => {
  test('the same frozen object for the same host; right answers past the memo size', () => {
    const first = parseBrokerHost('memo.example:1')
    expect(Object.isFrozen(first)).toBe(true)
    expect(parseBrokerHost('memo.example:1')).toBe(first)
    for (let i = 1; i <= 200; i++) expect(parseBrokerHost(`h${i}.example:${i}`)?.port).toBe(i)
    expect(parseBrokerHost('memo.example:1')).toEqual(first)
    expect(parseBrokerHost('not a host')).toBeUndefined()
    expect(parseBrokerHost('not a host')).toBeUndefined()
  })

  test('bounded: it remembers the most recent hosts, at most 64 of them', () => {
    const asked: string[] = []
    const objects = new Map<string, unknown>()
    const ask = () => {
      const host = `bounded-${asked.length}.example`
      asked.push(host)
      objects.set(host, parseBrokerHost(host))
    }
    /** How many of the latest hosts are still remembered: the same object again, back to the first forgotten one. */
    const remembered = () => {
      let count = 0
      for (const host of asked.slice(-70).reverse()) {
        if (parseBrokerHost(host) !== objects.get(host)) break
        count++
      }
      return count
    }
    for (let i = 0; i < 1000; i++) ask()
    let count = remembered()
    // One if the memo was just cleared to make room for the latest host; then the next one joins it.
    for (let tries = 0; count < 2 && tries < 3; tries++) {
      ask()
      count = remembered()
    }
    expect(count).toBeGreaterThanOrEqual(2)
    expect(count).toBeLessThanOrEqual(64)
  })
})

describe('brokerUrl', () => {
  test('an invalid host is a TypeError (the contract validated it: a bug, not an answer)', () => {
    expect(() => brokerUrl('http://b', {}, 1883)).toThrow(TypeError)
    expect(() => brokerUrl('', {}, 1883)).toThrow('connect.host is not a broker address')
  })

  test('defaults: the strategy port only for mqtts; the host port wins over broker.port', () => {
    expect(brokerUrl('b', {}, 1234)).toBe('mqtts://b:1234')
    expect(brokerUrl('b', { protocol: 'mqtts' }, 1234)).toBe('mqtts://b:1234')
    expect(brokerUrl('b', { protocol: 'mqtt' }, 1234)).toBe('mqtt://b:1883')
    expect(brokerUrl('b', { protocol: 'ws' }, 1234)).toBe('ws://b:80')
    expect(brokerUrl('b:7', { port: 9 }, 1234)).toBe('mqtts://b:7')
    expect(brokerUrl('b', { port: 9, protocol: 'ws' }, 1234)).toBe('ws://b:9')
    expect(brokerUrl('wss://b', { port: 9, protocol: 'mqtt' }, 1234)).toBe('wss://b')
  })
})

describe('TLS', () => {
  test('upgradeToTls: mqtt and ws become mqtts and wss, in any case; the rest is left alone', () => {
    expect(upgradeToTls('mqtt://b:1883')).toBe('mqtts://b:1883')
    expect(upgradeToTls('MQTT://b')).toBe('mqtts://b')
    expect(upgradeToTls('ws://b/mqtt')).toBe('wss://b/mqtt')
    expect(upgradeToTls('Ws://b')).toBe('wss://b')
    for (const url of ['mqtts://b', 'wss://b', 'xmqtt://b', 'a/mqtt://b', 'mqtt:/b'])
      expect(upgradeToTls(url)).toBe(url)
    expect(upgradeToTls('mqtt://ws://b')).toBe('mqtts://ws://b')
  })

  test('isSecureBrokerUrl: the schemes mqtt.js runs over TLS, in any case, at the start only', () => {
    for (const url of ['mqtts://b', 'wss://b', 'ssl://b', 'wxs://b', 'alis://b', 'MQTTS://b', 'Wss://b']) {
      expect(isSecureBrokerUrl(url), url).toBe(true)
    }
    for (const url of ['mqtt://b', 'ws://b', 'tcp://b', 'wx://b', 'ali://b', 'xmqtts://b', 'mqtts:/b', 'b']) {
      expect(isSecureBrokerUrl(url), url).toBe(false)
    }
  })
})
