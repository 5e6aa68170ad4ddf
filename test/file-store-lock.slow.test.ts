// The store's cross-process lock (`<path>.lock`) with real files: a lock that can never go stale by its mtime (set
// in the future, as after the clock stepped back; a stray regular file) is taken over within lockStaleMs, a live
// holder is never robbed, and no write waits longer than lockStaleMs + 1 s. Real waits of seconds: a `.slow` suite, run
// on the machine's Node by `npm test` and left out of the other majors (scripts/node-matrix.sh).
import fsp, { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest'
import { credentialKey, FileCredentialStore, type StoredCredentials } from '../packages/mqtt-bootstrap/src/index.js'
import { lockFile } from '../packages/mqtt-bootstrap/src/store/file-lock.js'
import { boot, payloads, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'
import { until } from './helpers/until.js'

let dir: string
let path: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-lock-'))
  path = join(dir, 'credentials.json')
})
afterEach(async () => {
  vi.restoreAllMocks()
  await rm(dir, { recursive: true, force: true })
})

const STALE = 600
const entry = (host = 'broker.example:1883'): StoredCredentials => ({
  savedAt: 1234,
  config: { device: { ...DEVICE, productSecret: null }, connect: { qos: 1, host, cleanSession: 1 } },
})
const HOUR = 3600

/** How long `set()` takes (ms), and what it settled with. */
async function timedSet(store: FileCredentialStore): Promise<{ ms: number; error?: unknown }> {
  const started = performance.now()
  const error = await store.set('k', entry()).then(
    () => undefined,
    (e: unknown) => e,
  )
  return { ms: performance.now() - started, error }
}

describe('a lock that can never go stale by its mtime is taken over', () => {
  test.each([
    ['a lock directory with its mtime an hour ahead (the clock stepped back)', 'dir'],
    ['a stray regular file named like the lock', 'file'],
  ])('%s: set() succeeds after lockStaleMs, well before lockStaleMs + 1 s', async (_name, kind) => {
    const lock = `${path}.lock`
    if (kind === 'dir') await mkdir(lock)
    else await writeFile(lock, 'not a lock')
    const future = Date.now() / 1000 + HOUR
    await utimes(lock, future, future)
    const { ms, error } = await timedSet(new FileCredentialStore(path, { lockStaleMs: STALE }))
    expect(error).toBeUndefined()
    expect(ms).toBeGreaterThanOrEqual(STALE - 50) // observed unchanged for lockStaleMs, not taken at once
    expect(ms).toBeLessThan(STALE + 1000)
    expect(await new FileCredentialStore(path).get('k')).toEqual(entry())
    await expect(stat(lock)).rejects.toMatchObject({ code: 'ENOENT' }) // released
  })

  test('a lock older than lockStaleMs by the clock (a holder died long ago) is taken at once', async () => {
    await mkdir(`${path}.lock`)
    const past = Date.now() / 1000 - HOUR
    await utimes(`${path}.lock`, past, past)
    const { ms, error } = await timedSet(new FileCredentialStore(path, { lockStaleMs: STALE }))
    expect(error).toBeUndefined()
    expect(ms).toBeLessThan(STALE / 2)
  })
})

describe('a live holder', () => {
  test('keeps its lock past lockStaleMs by touching it; the waiter writes after the release', async () => {
    const release = await lockFile(path, STALE)
    const mtime = (await stat(`${path}.lock`)).mtimeMs
    const waiter = timedSet(new FileCredentialStore(path, { lockStaleMs: STALE }))
    await new Promise((resolve) => setTimeout(resolve, STALE + 200)) // longer than lockStaleMs
    expect((await stat(`${path}.lock`)).mtimeMs).toBeGreaterThan(mtime) // touched while held
    expect(await readFile(path).catch(() => 'none')).toBe('none') // the waiter has not taken the lock
    await release()
    const { ms, error } = await waiter
    expect(error).toBeUndefined()
    expect(ms).toBeGreaterThanOrEqual(STALE + 200)
    expect(await new FileCredentialStore(path).get('k')).toEqual(entry())
  })

  test('that never lets go: set() rejects with ERR_STORE_IO within lockStaleMs + 1 s, the file untouched', async () => {
    await new FileCredentialStore(path).set('old', entry('old:1'))
    const before = await readFile(path, 'utf8')
    await mkdir(`${path}.lock`)
    const touch = setInterval(() => {
      const now = new Date()
      utimes(`${path}.lock`, now, now).catch(() => undefined)
    }, STALE / 4)
    try {
      const { ms, error } = await timedSet(new FileCredentialStore(path, { lockStaleMs: STALE }))
      expect(error).toMatchObject({ name: 'CredentialStoreError', code: 'ERR_STORE_IO' })
      expect((error as Error).message).toContain('cannot lock')
      const { cause } = error as Error & { cause: Error & { code: string } }
      expect(cause.code).toBe('ELOCKED')
      const waited = Number(/is held by a live process \(waited (\d+) ms\)$/.exec(cause.message)?.[1])
      expect(cause.message).toContain(`${path}.lock`)
      expect(waited).toBeGreaterThanOrEqual(STALE)
      expect(waited).toBeLessThanOrEqual(ms + 1)
      expect(ms).toBeGreaterThanOrEqual(STALE)
      expect(ms).toBeLessThan(STALE + 1000)
    } finally {
      clearInterval(touch)
    }
    expect(await readFile(path, 'utf8')).toBe(before)
  })

  test('writers of one file in one process queue, not race: every entry kept', async () => {
    const stores = [1, 2, 3].map(() => new FileCredentialStore(path, { lockStaleMs: STALE }))
    await Promise.all(stores.flatMap((store, s) => [0, 1, 2].map((i) => store.set(`${s}-${i}`, entry(`h${i}:1`)))))
    const reread = new FileCredentialStore(path)
    for (const s of [0, 1, 2]) for (const i of [0, 1, 2]) expect(await reread.get(`${s}-${i}`)).toBeDefined()
  })

  test('a lock released between our mkdir and our look at it: taken at the next round', async () => {
    await mkdir(`${path}.lock`)
    const { lstat } = fsp
    // The holder lets go just as we look (lstat finds nothing): the mkdir of the next round succeeds.
    const spy = vi.spyOn(fsp, 'lstat').mockImplementationOnce(async (p) => {
      await rm(String(p), { recursive: true })
      return lstat(p)
    })
    const { ms, error } = await timedSet(new FileCredentialStore(path, { lockStaleMs: STALE }))
    expect(error).toBeUndefined()
    expect(spy).toHaveBeenCalled() // the store looked through the seam
    expect(ms).toBeLessThan(STALE / 2)
  })

  test('a dead lock another waiter removes first: no error, this one takes the next round', async () => {
    await mkdir(`${path}.lock`)
    const past = Date.now() / 1000 - HOUR
    await utimes(`${path}.lock`, past, past)
    const { lstat } = fsp
    // We find it stale; before our rm, the other waiter has removed it already.
    const spy = vi.spyOn(fsp, 'lstat').mockImplementationOnce(async (p) => {
      const stats = await lstat(p)
      await rm(String(p), { recursive: true })
      return stats
    })
    const { error } = await timedSet(new FileCredentialStore(path, { lockStaleMs: STALE }))
    expect(error).toBeUndefined()
    expect(spy).toHaveBeenCalled()
    expect(await new FileCredentialStore(path).get('k')).toEqual(entry())
  })

  test('lockStaleMs must be a positive number', () => {
    for (const lockStaleMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '10' as unknown as number]) {
      expect(() => new FileCredentialStore(path, { lockStaleMs }), String(lockStaleMs)).toThrow(
        new TypeError('Expected `lockStaleMs` to be a positive number of milliseconds'),
      )
    }
  })
})

describe('the bootstrap with a cache whose lock cannot go stale', () => {
  const env = useTestEnv()

  test('connects within lockStaleMs + 1 s, and the credentials are written', async () => {
    await mkdir(`${path}.lock`)
    const future = Date.now() / 1000 + HOUR
    await utimes(`${path}.lock`, future, future)
    const started = performance.now()
    const { boot: bootstrap, events } = boot(
      env.options({ cache: new FileCredentialStore(path, { lockStaleMs: STALE }) }),
    )
    const client = env.track(await bootstrap.connect())
    expect(client.connected).toBe(true)
    expect(performance.now() - started).toBeLessThan(STALE + 1000)
    await until(() => payloads(events, 'cache').some((e) => e.action === 'write'), STALE + 1000, 'the cache write')
    const { url, data } = env.options()
    const stored = await new FileCredentialStore(path).get(credentialKey(url, data))
    expect(stored?.config.device.deviceSecret).toBe(DEVICE.deviceSecret)
  })
})
