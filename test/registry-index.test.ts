// DeviceRegistry finds a device through an index (same answers as the scan it replaced, first match wins), and a
// registry file that is not JSON is reported by line and column, never by its content.
import { writeFileSync } from 'node:fs'
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import fc from 'fast-check'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import { DeviceRegistry } from '../packages/mqtt-bootstrap-server/src/index.js'
import { lineAndColumn, syntaxErrorOffset } from '../packages/mqtt-bootstrap-server/src/registry.js'
import { rawJson } from './helpers/exposure.js'
import { DEVICE } from './helpers/https-server.js'
import { KNOWN, startReferenceServer, writeRegistry } from './helpers/reference-server.js'
import { tlsFixture } from './helpers/tls.js'

let dir: string
let path: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-registry-index-'))
  path = join(dir, 'devices.json')
})
afterEach(() => rm(dir, { recursive: true, force: true }))

type Match = Record<string, string | number | boolean>
const HOST = 'broker.example:8883'
const device = (name: string) => ({ productKey: 'pk', deviceName: name, deviceSecret: `secret-of-${name}` })

function write(entries: Array<{ match: Match; refuse?: string; name?: string }>, file = path): void {
  const devices = entries.map(({ match, refuse, name }, i) =>
    refuse === undefined ? { match, device: device(name ?? `d${i}`) } : { match, refuse },
  )
  writeFileSync(file, JSON.stringify({ version: 1, defaults: { connect: { host: HOST } }, devices }))
}

/** The scan the index replaced: the reference for what a lookup must answer. */
function scan(entries: Array<{ match: Match }>, data: Record<string, unknown>): number | undefined {
  const index = entries.findIndex(({ match }) =>
    Object.entries(match).every(([key, value]) => Object.hasOwn(data, key) && data[key] === value),
  )
  return index === -1 ? undefined : index
}

const nameOf = (registry: DeviceRegistry, data: unknown) => {
  const found = registry.resolve(data)
  return found === undefined ? undefined : 'code' in found ? `refused ${found.code}` : found.device.deviceName
}

describe('the index', () => {
  test('first match in file order across key sets; types, lengths and own fields count; refusals too', () => {
    write([
      { match: { imei: '1', slot: 2 }, name: 'imei+slot' },
      { match: { imei: '1' }, name: 'imei' },
      { match: { serial: 'a,b' }, name: 'comma' },
      { match: { serial: 'a', other: 'b' }, name: 'two' },
      { match: { imei: '1', slot: 2 }, name: 'shadowed' },
      { match: { flag: true }, refuse: '10003' },
      { match: { n: 0 }, name: 'zero' },
    ])
    const registry = new DeviceRegistry(path)
    expect(nameOf(registry, { imei: '1', slot: 2 })).toBe('imei+slot')
    expect(nameOf(registry, { slot: 2, imei: '1', extra: {} })).toBe('imei+slot')
    expect(nameOf(registry, { imei: '1', slot: '2' })).toBe('imei') // "2" is not 2
    expect(nameOf(registry, { imei: 1 })).toBeUndefined()
    expect(nameOf(registry, { serial: 'a,b' })).toBe('comma')
    expect(nameOf(registry, { serial: 'a', other: 'b' })).toBe('two')
    expect(nameOf(registry, { serial: 'a' })).toBeUndefined()
    expect(nameOf(registry, { flag: true })).toBe('refused 10003')
    expect(nameOf(registry, { flag: 'true' })).toBeUndefined()
    expect(nameOf(registry, { n: -0 })).toBe('zero') // -0 === 0
    expect(nameOf(registry, { imei: null })).toBeUndefined()
    expect(nameOf(registry, Object.create({ imei: '1' }))).toBeUndefined() // inherited fields are not the data's
    expect(registry.resolve({ imei: '1' })).toEqual({ device: device('imei'), connect: { host: HOST } })
  })

  test('answers as the scan did, for random registries and requests', () => {
    const key = fc.constantFrom('imei', 'slot', 'serial', 'a,b', '1:s')
    const scalar = fc.oneof(fc.constantFrom('1', '2', 'a,b', '1:s', ''), fc.constantFrom(1, 2, 0), fc.boolean())
    const match = fc.dictionary(key, scalar, { minKeys: 1, maxKeys: 3 })
    let file = 0
    fc.assert(
      fc.property(
        fc.array(match, { minLength: 1, maxLength: 30 }),
        fc.array(fc.dictionary(key, scalar, { maxKeys: 5 }), { minLength: 1, maxLength: 20 }),
        (matches, requests) => {
          const entries = matches.map((m) => ({ match: m }))
          const at = join(dir, `r${++file}.json`)
          write(entries, at)
          const registry = new DeviceRegistry(at)
          for (const data of requests) {
            const expected = scan(entries, data)
            expect(nameOf(registry, data)).toBe(expected === undefined ? undefined : `d${expected}`)
          }
        },
      ),
      { numRuns: 150 },
    )
  })

  test('100,000 entries: a lookup takes under 0.1 ms (median), hit or miss', () => {
    const entries = Array.from({ length: 100_000 }, (_, i) => ({ match: { imei: `86${String(i).padStart(13, '0')}` } }))
    write(entries)
    const registry = new DeviceRegistry(path)
    expect(registry.size).toBe(100_000)
    const times: number[] = []
    for (let i = 0; i < 2000; i++) {
      const n = (i * 7919) % 120_000 // a sixth of them unknown
      const data = { imei: `86${String(n).padStart(13, '0')}` }
      const started = performance.now()
      const found = nameOf(registry, data)
      times.push(performance.now() - started)
      expect(found).toBe(n < 100_000 ? `d${n}` : undefined)
    }
    times.sort((a, b) => a - b)
    expect(times[times.length >> 1]).toBeLessThan(0.1)
  }, 60_000)

  test('an edit is reloaded (mtime), and the index with it', async () => {
    write([{ match: { imei: '1' }, name: 'first' }])
    const registry = new DeviceRegistry(path)
    expect(nameOf(registry, { imei: '1' })).toBe('first')
    write([
      { match: { imei: '2' }, name: 'second' },
      { match: { imei: '1' }, refuse: '10009' },
    ])
    await utimes(path, new Date(), new Date(Date.now() + 5000))
    expect(nameOf(registry, { imei: '2' })).toBe('second')
    expect(nameOf(registry, { imei: '1' })).toBe('refused 10009')
    expect(registry.size).toBe(2)
  })
})

describe('a registry that is not JSON', () => {
  const SECRET = 'SeCrEt-0123456789-zyxwvu'

  // Each case and where the error is: the offset V8 blames (for a cut file, the end).
  test.each([
    [
      'a missing value',
      `{"version":1,"devices":[\n  {"match":{"imei":"1"},\n   "device":{"deviceSecret":"${SECRET}", }}]}`,
      ', }}',
      2,
    ],
    [
      'a trailing comma',
      `{"version":1,"devices":[{"match":{"imei":"1"},"device":{"deviceSecret":"${SECRET}"}},]}`,
      ',]}',
      1,
    ],
    ['a cut file', `{"version":1,\r\n"devices":[{"match":{"x":"${SECRET}`, undefined, 0],
    ['a control character', `{"a":\n"${SECRET}\u0001"}`, '\u0001', 0],
    ['a Python repr', `{'deviceSecret': '${SECRET}'}`, "'", 0],
  ])('%s: line and column, no content, no cause', async (_, content, marker, past) => {
    const offset = marker === undefined ? content.length : content.indexOf(marker) + past
    const line = content.slice(0, offset).split('\n').length
    const column = offset - content.lastIndexOf('\n', offset - 1)
    await writeFile(path, content)
    expect(() => JSON.parse(content)).toThrow() // what V8 would have quoted
    let error: unknown
    try {
      new DeviceRegistry(path)
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(TypeError)
    expect((error as Error).message).toBe(
      `device registry ${path} is not readable JSON: syntax error at line ${line}, column ${column}`,
    )
    expect((error as Error).cause).toBeUndefined()
    for (const shown of [inspect(error), rawJson(error), String((error as Error).stack)]) {
      expect(shown).not.toContain(SECRET.slice(0, 8))
      expect(shown).not.toContain(SECRET.slice(-8))
    }
  })

  test('the locator: the offset V8 would blame, or the end; deep nesting does not overflow', () => {
    expect(syntaxErrorOffset('[1,2,')).toBe(5)
    expect(syntaxErrorOffset('{"a" 1}')).toBe(5)
    expect(syntaxErrorOffset('[01]')).toBe(2)
    expect(syntaxErrorOffset('"\\x"')).toBe(1)
    expect(syntaxErrorOffset('{"a":[1,{"b":tru}]}')).toBe(13)
    expect(syntaxErrorOffset('{"a":1}\n}')).toBe(8)
    expect(syntaxErrorOffset('[{}, [], "\\u00e9", -1.5e+3, true, null] x')).toBe(40)
    expect(syntaxErrorOffset('['.repeat(200_000))).toBe(200_000)
    expect(syntaxErrorOffset('')).toBe(0)
    expect(lineAndColumn('ab\ncd\n', 4)).toEqual({ line: 2, column: 2 })
    expect(lineAndColumn('ab\ncd\n', 6)).toEqual({ line: 3, column: 1 })
  })

  test('a bad edit of a running server: onError gets the line and column, never the content', async () => {
    const tls = await tlsFixture()
    writeRegistry(path, HOST)
    const errors: unknown[] = []
    const server = await startReferenceServer(tls, path, (error) => errors.push(error))
    try {
      const pa = new PointAccess({ tls: { ca: tls.ca } })
      expect(await pa.request(server.url, KNOWN)).toBe('00000')
      await writeFile(
        path,
        `{"version":1,"devices":[{"match":{"imei":"1"},"device":{"deviceSecret":"${DEVICE.deviceSecret}"`,
      )
      await utimes(path, new Date(), new Date(Date.now() + 5000))
      expect(await pa.request(server.url, KNOWN)).toBe('77777')
      expect(errors).toHaveLength(1)
      expect((errors[0] as Error).message).toMatch(/syntax error at line 1, column \d+$/)
      expect((errors[0] as Error).cause).toBeUndefined()
      expect(inspect(errors[0]) + rawJson(errors[0])).not.toContain(DEVICE.deviceSecret.slice(0, 8))
    } finally {
      await server.close()
    }
  })
})
