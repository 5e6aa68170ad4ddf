import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import { DeviceRegistry, SERVER_CODES } from '../packages/mqtt-bootstrap-server/src/index.js'
import { DEVICE } from './helpers/https-server.js'
import { BLOCKED, KNOWN, startReferenceServer, writeRegistry } from './helpers/reference-server.js'
import { tlsFixture } from './helpers/tls.js'

let dir: string
let path: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-registry-'))
  path = join(dir, 'devices.json')
})
afterEach(() => rm(dir, { recursive: true, force: true }))

describe('DeviceRegistry', () => {
  test('matches every field of `match`, merges the default connect, refuses, and knows no one else', () => {
    writeRegistry(path, 'broker.example:8883')
    const registry = new DeviceRegistry(path)
    expect(registry.size).toBe(2)
    expect(registry.resolve({ ...KNOWN, extra: 1 })).toEqual({
      device: DEVICE,
      connect: { host: 'broker.example:8883', qos: 1, cleanSession: 1 },
    })
    expect(registry.resolve(BLOCKED)).toEqual({ code: '10003' })
    expect(registry.resolve({ imei: 'nobody' })).toBeUndefined()
    expect(registry.resolve({ imei: Number(KNOWN.imei) })).toBeUndefined() // types must match too
    expect(registry.resolve('860000000000001')).toBeUndefined()
    expect(registry.resolve(null)).toBeUndefined()
  })

  test('a bad registry is a TypeError at start-up that names the place, never a secret', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ version: 2, devices: [] }, /version/],
      [{ version: 1, devices: [{ match: {}, device: DEVICE }] }, /devices\.0\.match/],
      [
        { version: 1, devices: [{ match: KNOWN, device: { ...DEVICE, deviceName: '' } }] },
        /devices\.0 .*deviceName is empty/,
      ],
      [{ version: 1, devices: [{ match: KNOWN, device: DEVICE, connect: { host: 'ftp://x' } }] }, /devices\.0 .*host/],
      [{ version: 1, devices: [{ match: KNOWN, refuse: '00000' }] }, /devices\.0\.refuse must not be "00000"/],
      [
        { version: 1, devices: [{ match: KNOWN, refuse: 'x'.repeat(65) }] },
        /devices\.0\.refuse must be a string of 1 to 64/,
      ],
      [
        JSON.parse('{"version":1,"devices":[{"match":{"imei":"1","__proto__":"gate"},"refuse":"10003"}]}'),
        /cannot be matched/,
      ],
    ]
    for (const [content, message] of cases) {
      await writeFile(path, JSON.stringify(content))
      expect(() => new DeviceRegistry(path)).toThrow(message)
      expect(() => new DeviceRegistry(path)).toThrow(
        expect.objectContaining({ message: expect.not.stringContaining(DEVICE.deviceSecret) }),
      )
    }
    await writeFile(path, '{ not json')
    expect(() => new DeviceRegistry(path)).toThrow(/not readable JSON/)
  })

  test('an edited file is reloaded; a bad edit answers "77777" and the server keeps running', async () => {
    const tls = await tlsFixture()
    writeRegistry(path, 'first.example:8883')
    const errors: unknown[] = []
    const server = await startReferenceServer(tls, path, (error) => errors.push(error))
    try {
      const pa = new PointAccess({ tls: { ca: tls.ca } })
      expect(await pa.request(server.url, KNOWN)).toBe('00000')
      expect(await pa.request(server.url, BLOCKED)).toBe('10003')
      expect(await pa.request(server.url, { imei: 'nobody' })).toBe(SERVER_CODES.UNKNOWN_DEVICE)
      await sleep(20) // a later mtime
      writeRegistry(path, 'second.example:8883')
      expect(await pa.request(server.url, KNOWN)).toBe('00000')
      expect(pa.deviceConfig.connect.host).toBe('second.example:8883')
      await sleep(20)
      await writeFile(path, '{ broken')
      expect(await pa.request(server.url, KNOWN)).toBe('77777')
      expect(errors).toHaveLength(1)
      await sleep(20)
      writeRegistry(path, 'third.example:8883')
      expect(await pa.request(server.url, KNOWN)).toBe('00000')
    } finally {
      await server.close()
    }
  })
})
