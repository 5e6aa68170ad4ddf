// A cache directory other users can read or change is reported (ERR_STORE_PERMISSIONS, a non-fatal `error` event
// and a log line, once per bootstrap), never chmod-ed: the store did not make it.
import { chmod, mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import {
  type CredentialStore,
  FileCredentialStore,
  MemoryCredentialStore,
  type StoredCredentials,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot, payloads, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'
import { pinoLines } from './helpers/pino.js'

let root: string
let dir: string
let path: string
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-audit-'))
  dir = join(root, 'cache')
  path = join(dir, 'credentials.json')
})
afterEach(() => rm(root, { recursive: true, force: true }))

const entry = (): StoredCredentials => ({
  savedAt: 1,
  config: { device: { ...DEVICE, productSecret: null }, connect: { qos: 1, host: 'b.example:1883', cleanSession: 1 } },
})

describe('FileCredentialStore.audit()', () => {
  test.each([
    [0o700, false],
    [0o711, false], // others may pass through, not list: the files are 0600
    [0o740, true],
    [0o704, true],
    [0o755, true],
    [0o720, true], // the group may replace the file
    [0o702, true],
    [0o1777, true],
  ])('a directory of mode %o: reported %s', async (mode, reported) => {
    await mkdir(dir)
    await chmod(dir, mode)
    const findings = await new FileCredentialStore(path).audit()
    if (!reported) {
      expect(findings).toEqual([])
      return
    }
    expect(findings).toHaveLength(1)
    expect(findings[0]).toMatchObject({ name: 'CredentialStoreError', code: 'ERR_STORE_PERMISSIONS' })
    expect(findings[0]?.message).toContain(`mode ${(mode & 0o777).toString(8).padStart(4, '0')}`)
    expect(findings[0]?.message).toContain(dir)
  })

  test('on Windows nothing is reported: mode bits there do not show the ACLs', async () => {
    await mkdir(dir)
    await chmod(dir, 0o777)
    const platform = Object.getOwnPropertyDescriptor(process, 'platform') as PropertyDescriptor
    Object.defineProperty(process, 'platform', { ...platform, value: 'win32' })
    try {
      expect(await new FileCredentialStore(path).audit()).toEqual([])
    } finally {
      Object.defineProperty(process, 'platform', platform)
    }
    expect(await new FileCredentialStore(path).audit()).toHaveLength(1)
  })

  test('no directory yet: nothing to report (the store makes it 0700)', async () => {
    const store = new FileCredentialStore(path)
    expect(await store.audit()).toEqual([])
    await store.set('k', entry())
    expect((await stat(dir)).mode & 0o777).toBe(0o700)
    expect(await store.audit()).toEqual([])
  })

  test('a directory it did not make is never chmod-ed, however open', async () => {
    await mkdir(dir)
    await chmod(dir, 0o755)
    const store = new FileCredentialStore(path)
    await store.set('k', entry())
    await store.delete('k')
    expect((await stat(dir)).mode & 0o777).toBe(0o755)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })
})

describe('the bootstrap reports an open cache directory', () => {
  const env = useTestEnv()

  test('once per bootstrap: a non-fatal error event and a log line, and the device connects', async () => {
    await mkdir(dir)
    await chmod(dir, 0o755)
    const { logger, lines } = pinoLines()
    const { boot: bootstrap, events } = boot(env.options({ cache: new FileCredentialStore(path), logger }))
    env.track(await bootstrap.connect())
    await bootstrap.provision() // a second cache read: no second report
    const errors = payloads(events, 'error')
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ fatal: false, error: { code: 'ERR_STORE_PERMISSIONS' } })
    const logged = lines.filter((line) => line.code === 'ERR_STORE_PERMISSIONS')
    expect(logged).toHaveLength(1)
    expect(logged[0]).toMatchObject({ level: 40, message: expect.stringContaining(dir) })
    expect((await stat(dir)).mode & 0o777).toBe(0o755)

    // A new bootstrap reports it again (booting from the cache this time).
    const second = boot(env.options({ cache: new FileCredentialStore(path) }))
    env.track(await second.boot.connect())
    expect(payloads(second.events, 'cache')[0]).toMatchObject({ action: 'hit' })
    expect(payloads(second.events, 'error')).toMatchObject([{ fatal: false, error: { code: 'ERR_STORE_PERMISSIONS' } }])
  })

  test('a private directory: no report', async () => {
    await mkdir(dir, { mode: 0o700 })
    const { boot: bootstrap, events } = boot(env.options({ cache: new FileCredentialStore(path) }))
    env.track(await bootstrap.connect())
    expect(payloads(events, 'error')).toEqual([])
  })

  test("a store's audit that fails is no report and no failure; a store without audit is fine", async () => {
    const broken: CredentialStore = Object.assign(new MemoryCredentialStore(), {
      audit: () => Promise.reject(new Error('audit failed')),
    })
    const { boot: bootstrap, events } = boot(env.options({ cache: broken }))
    expect(env.track(await bootstrap.connect()).connected).toBe(true)
    expect(payloads(events, 'error')).toEqual([])
  })
})
