// The store on a real small disk (a tmpfs this test mounts, as root): a write that does not fit, a disk out of
// inodes, a file that cannot be replaced. Every failed write rejects with ERR_STORE_IO and leaves the previous file
// byte for byte, and no temp file. Where mounting is refused the tests are skipped with the reason, except in CI.
import { execFileSync } from 'node:child_process'
import { readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, test } from 'vitest'
import { FileCredentialStore, type StoredCredentials } from '../packages/mqtt-bootstrap/src/index.js'
import { fillLeaving, free, mountRefused, mountTmpfs, unmount } from './helpers/tmpfs.js'

const skipReason = mountRefused('the disk tests')

const mounts: string[] = []
afterEach(() => {
  for (const dir of mounts.splice(0)) unmount(dir) // immutable files or not, a tmpfs goes with its mount
})

function disk(options: string): { dir: string; path: string } {
  const dir = mountTmpfs(options)
  mounts.push(dir)
  return { dir, path: join(dir, 'credentials.json') }
}

const entry = (i: number): StoredCredentials => ({
  savedAt: i,
  config: {
    device: {
      productKey: 'pk',
      deviceName: `dev-${i}`,
      deviceSecret: `secret-${i}`.padEnd(200, '.'),
      productSecret: null,
    },
    connect: { qos: 1, host: `host-${i}.example:1883`, cleanSession: 1 },
  },
})

/** A file of `count` entries, about 11 KB: three pages of the tmpfs. */
async function filled(store: FileCredentialStore, count = 30): Promise<void> {
  for (let i = 0; i < count; i++) await store.set(`k${i}`, entry(i))
}

async function temps(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.startsWith('credentials.json.'))
}

describe.skipIf(skipReason)('the file store on a small real disk', () => {
  test.each([
    ['nearly full (less room than the new file)', 8192],
    ['completely full', 0],
  ])('%s: set() rejects with ERR_STORE_IO and the previous file stays byte for byte', async (_name, room) => {
    const { dir, path } = disk('size=64k')
    const store = new FileCredentialStore(path)
    await filled(store)
    const before = await readFile(path)
    expect(before.length).toBeGreaterThan(room) // the new file is larger still: it cannot fit
    fillLeaving(dir, room)
    expect(free(dir)).toBe(room)

    const error = await store.set('new', entry(99)).catch((e: unknown) => e)
    expect(error).toMatchObject({ name: 'CredentialStoreError', code: 'ERR_STORE_IO' })
    expect((error as Error & { cause: NodeJS.ErrnoException }).cause.code).toBe('ENOSPC')
    expect(await readFile(path)).toEqual(before)
    expect(await temps(dir)).toEqual([])
    expect(free(dir)).toBe(room) // nothing of the failed write is left taking up room
    // Every entry is still there, and the next write, once there is room, keeps them all.
    await rm(join(dir, 'filler'))
    await store.set('new', entry(99))
    const reread = new FileCredentialStore(path)
    for (let i = 0; i < 30; i++) expect(await reread.get(`k${i}`), `k${i}`).toEqual(entry(i))
    expect(await reread.get('new')).toEqual(entry(99))
  })

  test('no inode left for the temp file: ERR_STORE_IO, the file unchanged', async () => {
    // Inodes: the root directory, the file, the lock directory; none left for the temp file.
    const { dir, path } = disk('size=64k,nr_inodes=3')
    const store = new FileCredentialStore(path)
    await store.set('k0', entry(0))
    const before = await readFile(path)
    const error = await store.set('k1', entry(1)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO', message: expect.stringContaining('cannot write') })
    expect((error as Error & { cause: NodeJS.ErrnoException }).cause.code).toBe('ENOSPC')
    expect(await readFile(path)).toEqual(before)
    expect(await temps(dir)).toEqual([])
  })

  test('a read-only disk: ERR_STORE_IO (the lock cannot be made), the file unchanged', async () => {
    const { dir, path } = disk('size=64k')
    const store = new FileCredentialStore(path)
    await store.set('k0', entry(0))
    const before = await readFile(path)
    execFileSync('mount', ['-o', 'remount,ro', dir], { stdio: 'pipe' })
    const error = await store.set('k1', entry(1)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO', message: expect.stringContaining('cannot lock') })
    expect((error as Error & { cause: NodeJS.ErrnoException }).cause.code).toBe('EROFS')
    expect(await readFile(path)).toEqual(before)
    expect(await store.get('k0')).toEqual(entry(0)) // reads still work
  })

  test('a file that cannot be replaced (immutable): the rename fails, ERR_STORE_IO, no temp file left', async () => {
    const { dir, path } = disk('size=64k')
    const store = new FileCredentialStore(path)
    await store.set('k0', entry(0))
    const before = await readFile(path)
    execFileSync('chattr', ['+i', path], { stdio: 'pipe' })
    const error = await store.set('k1', entry(1)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO', message: expect.stringContaining('cannot write') })
    expect((error as Error & { cause: NodeJS.ErrnoException }).cause).toMatchObject({
      code: 'EPERM',
      syscall: 'rename',
    })
    expect(await readFile(path)).toEqual(before)
    expect(await temps(dir)).toEqual([])
  })

  test('a corrupt file that cannot be moved aside: ERR_STORE_IO, the file left as it is', async () => {
    const { path } = disk('size=64k')
    await writeFile(path, 'garbage')
    execFileSync('chattr', ['+i', path], { stdio: 'pipe' })
    const error = await new FileCredentialStore(path).set('k1', entry(1)).catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO', message: expect.stringContaining('cannot move corrupt') })
    expect((error as Error).cause).toMatchObject({ code: 'EPERM', syscall: 'rename' })
    expect(await readFile(path, 'utf8')).toBe('garbage')
  })
})
