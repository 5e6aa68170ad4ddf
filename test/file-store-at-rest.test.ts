import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { FileCredentialStore, type StoredCredentials } from '../packages/mqtt-bootstrap/src/index.js'
import { runTs } from './helpers/child.js'
import { boot, payloads, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'

let dir: string
let path: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-rest-'))
  path = join(dir, 'credentials.json')
})
afterEach(() => rm(dir, { recursive: true, force: true }))

const entry = (host = 'broker.example:1883'): StoredCredentials => ({
  savedAt: 1234,
  config: { device: { ...DEVICE, productSecret: 'PS-rest-secret' }, connect: { qos: 1, host, cleanSession: 1 } },
})
const KEY = randomBytes(32)

describe('integrity', () => {
  test('a plain file carries a checksum; an edited entry fails it (ERR_STORE_CORRUPT)', async () => {
    await new FileCredentialStore(path).set('k', entry())
    const content = JSON.parse(await readFile(path, 'utf8'))
    expect(content.checksum).toMatch(/^sha256:[0-9a-f]{64}$/)
    content.entries.k.config.connect.host = 'attacker.example:1883'
    await writeFile(path, JSON.stringify(content))
    await expect(new FileCredentialStore(path).get('k')).rejects.toMatchObject({ code: 'ERR_STORE_CORRUPT' })
  })
})

describe('encryption at rest (AES-256-GCM)', () => {
  test('round-trips, and the file holds no secret in clear', async () => {
    const store = new FileCredentialStore(path, { encryptionKey: KEY })
    await store.set('k', entry())
    expect(await new FileCredentialStore(path, { encryptionKey: KEY }).get('k')).toEqual(entry())
    const text = await readFile(path, 'utf8')
    expect(text).not.toContain(DEVICE.deviceSecret)
    expect(text).not.toContain('PS-rest-secret')
    expect(text).not.toContain(DEVICE.deviceName)
    expect(JSON.parse(text).sealed).toMatchObject({ alg: 'aes-256-gcm' })
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  test('a sealed file keeps every entry across writes', async () => {
    const store = new FileCredentialStore(path, { encryptionKey: KEY })
    await store.set('a', entry('a:1'))
    await store.set('b', entry('b:1'))
    await store.delete('missing')
    const reread = new FileCredentialStore(path, { encryptionKey: KEY })
    expect(await reread.get('a')).toEqual(entry('a:1'))
    expect(await reread.get('b')).toEqual(entry('b:1'))
  })

  test('a wrong key is ERR_STORE_KEY on read, and a write with it leaves the file untouched', async () => {
    await new FileCredentialStore(path, { encryptionKey: KEY }).set('k', entry())
    const before = await readFile(path, 'utf8')
    const wrong = new FileCredentialStore(path, { encryptionKey: randomBytes(32) })
    await expect(wrong.get('k')).rejects.toMatchObject({
      code: 'ERR_STORE_KEY',
      message: expect.stringContaining('cannot decrypt the credential file (wrong key, or altered)'),
    })
    await expect(wrong.set('k', entry('other:1'))).rejects.toMatchObject({ code: 'ERR_STORE_KEY' })
    expect(await readFile(path, 'utf8')).toBe(before)
    await expect(new FileCredentialStore(path).get('k')).rejects.toMatchObject({ code: 'ERR_STORE_KEY' })
  })

  test('altered ciphertext fails the tag: never garbage credentials', async () => {
    await new FileCredentialStore(path, { encryptionKey: KEY }).set('k', entry())
    const content = JSON.parse(await readFile(path, 'utf8'))
    const data = Buffer.from(content.sealed.data, 'base64')
    data[5] = (data[5] ?? 0) ^ 0x01
    content.sealed.data = data.toString('base64')
    await writeFile(path, JSON.stringify(content))
    await expect(new FileCredentialStore(path, { encryptionKey: KEY }).get('k')).rejects.toMatchObject({
      code: 'ERR_STORE_KEY',
    })
  })

  test('with a key, a plain file is not trusted (anyone can forge a checksum): a miss, set aside at the next write', async () => {
    await new FileCredentialStore(path).set('k', entry('forged.example:1883'))
    const store = new FileCredentialStore(path, { encryptionKey: KEY })
    await expect(store.get('k')).rejects.toMatchObject({
      code: 'ERR_STORE_CORRUPT',
      message: expect.stringContaining('not sealed, but an encryptionKey is set'),
    })
    await store.set('k', entry())
    expect(JSON.parse(await readFile(path, 'utf8')).sealed).toBeDefined()
    expect(await store.get('k')).toEqual(entry())
    expect(JSON.parse(await readFile(`${path}.corrupt`, 'utf8')).entries.k.config.connect.host).toBe(
      'forged.example:1883',
    )
  })

  test('a key that is not 32 bytes is a TypeError; a Uint8Array of 32 is a key', async () => {
    expect(() => new FileCredentialStore(path, { encryptionKey: randomBytes(16) })).toThrow(TypeError)
    expect(() => new FileCredentialStore(path, { encryptionKey: 'k'.repeat(32) as unknown as Buffer })).toThrow(
      /32 bytes/,
    )
    const key = new Uint8Array(randomBytes(32))
    await new FileCredentialStore(path, { encryptionKey: key }).set('k', entry())
    expect(await new FileCredentialStore(path, { encryptionKey: Buffer.from(key) }).get('k')).toEqual(entry())
  })

  test('a path that is not a non-empty string is a TypeError', () => {
    for (const bad of ['', undefined, 1]) {
      expect(() => new FileCredentialStore(bad as unknown as string), String(bad)).toThrow(/non-empty string/)
    }
  })
})

describe('two processes sharing one file', () => {
  async function sharer(prefix: string, count: number): Promise<number | null> {
    const { code, output } = await runTs('test/fixtures/store-sharer.ts', [path, prefix, String(count)], {
      timeoutMs: 30_000,
    })
    if (code !== 0) console.error(output)
    return code
  }

  test("never lose each other's entries, and the file is never corrupt", async () => {
    const codes = await Promise.all([sharer('a', 40), sharer('b', 40), sharer('c', 40)])
    expect(codes).toEqual([0, 0, 0])
    const store = new FileCredentialStore(path)
    for (const prefix of ['a', 'b', 'c']) {
      for (let i = 0; i < 40; i++) expect(await store.get(`${prefix}-${i}`), `${prefix}-${i}`).toBeDefined()
    }
    const entries = JSON.parse(await readFile(path, 'utf8')).entries
    expect(Object.keys(entries)).toHaveLength(120)
  }, 60_000)
})

describe('the bootstrap with an encrypted store', () => {
  const env = useTestEnv()

  test('boots offline from the sealed file; a wrong key is a reported miss and the device still connects', async () => {
    env.track(await boot(env.options({ cache: new FileCredentialStore(path, { encryptionKey: KEY }) })).boot.connect())
    env.track(await boot(env.options({ cache: new FileCredentialStore(path, { encryptionKey: KEY }) })).boot.connect())
    expect(env.server.requests).toHaveLength(1)

    const { boot: bootstrap, events } = boot(
      env.options({ cache: new FileCredentialStore(path, { encryptionKey: randomBytes(32) }) }),
    )
    const client = env.track(await bootstrap.connect())
    expect(client.connected).toBe(true)
    expect(payloads(events, 'cache')[0]).toMatchObject({ action: 'miss', reason: 'key' })
    expect(payloads(events, 'error')[0]).toMatchObject({ fatal: false, error: { code: 'ERR_STORE_KEY' } })
    expect(env.server.requests).toHaveLength(2)
  })
})
