import { spawn } from 'node:child_process'
import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import fs from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest'
import {
  CredentialStoreError,
  connectProvisioned,
  FileCredentialStore,
  type StoredCredentials,
} from '../packages/mqtt-bootstrap/src/index.js'
import { isTempName } from '../packages/mqtt-bootstrap/src/store/atomic-file.js'
import { FILE_FORMAT, FILE_VERSION } from '../packages/mqtt-bootstrap/src/store/file-store.js'
import { boot, useTestEnv } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { DEVICE } from './helpers/https-server.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-store-'))
})
afterEach(async () => {
  vi.restoreAllMocks()
  await rm(dir, { recursive: true, force: true })
})

const entry = (host = 'broker.example:1883'): StoredCredentials => ({
  savedAt: 1234,
  config: { device: { ...DEVICE, productSecret: null }, connect: { qos: 1, host, cleanSession: 1 } },
})

describe('FileCredentialStore', () => {
  test('round-trips entries in a versioned file, mode 0600, in a directory it creates', async () => {
    const path = join(dir, 'nested', 'credentials.json')
    const store = new FileCredentialStore(path)
    expect(await store.get('k')).toBeUndefined()
    await store.set('k', entry())
    await store.set('other', entry('other:1883'))
    expect(await store.get('k')).toEqual(entry())
    expect((await new FileCredentialStore(path).get('other'))?.config.connect.host).toBe('other:1883')
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const content = JSON.parse(await readFile(path, 'utf8'))
    expect(content).toMatchObject({ format: FILE_FORMAT, version: FILE_VERSION })
    // The on-disk format other versions read: spelled out, not through the constant.
    expect(await readFile(path, 'utf8')).toMatch(/^\{\n {2}"format": "mqtt-bootstrap\/credentials",\n {2}"version": 1,/)
    await store.delete('k')
    await store.delete('missing')
    expect(await store.get('k')).toBeUndefined()
    expect(await store.get('other')).toBeDefined()
  })

  test('a delete of an entry that is not there writes nothing; the file is pretty JSON ending in a newline', async () => {
    const path = join(dir, 'credentials.json')
    const store = new FileCredentialStore(path)
    await store.set('k', entry())
    const before = await stat(path)
    await store.delete('missing')
    expect((await stat(path)).ino).toBe(before.ino) // not replaced
    const text = await readFile(path, 'utf8')
    expect(text.endsWith('}\n')).toBe(true)
    expect(text).toContain('\n  "format": ')
    await store.delete('k')
    expect((await stat(path)).ino).not.toBe(before.ino)
    expect(JSON.parse(await readFile(path, 'utf8')).entries).toEqual({})
  })

  test('each write is traced (DEBUG=mqtt-bootstrap:store): written or unchanged, and whether sealed', async () => {
    const path = join(dir, 'credentials.json')
    suite.exposure.clear()
    await new FileCredentialStore(path, { encryptionKey: randomBytes(32) }).set('k', entry())
    await new FileCredentialStore(path).delete('k').catch(() => undefined) // no key: refused before any trace
    await new FileCredentialStore(join(dir, 'plain.json')).delete('k')
    const traced = suite.exposure.text.split('\n').filter((line) => line.includes('mqtt-bootstrap:store'))
    expect(traced).toHaveLength(2)
    expect(traced[0]).toMatch(/file written .*credentials\.json', encrypted: true/)
    expect(traced[1]).toMatch(/file unchanged .*plain\.json', encrypted: false/)
  })

  test("the store keeps its own copy of the key: the caller's buffer may be wiped", async () => {
    const path = join(dir, 'credentials.json')
    const key = randomBytes(32)
    const copy = Buffer.from(key)
    const store = new FileCredentialStore(path, { encryptionKey: key })
    key.fill(0)
    await store.set('k', entry())
    expect(await new FileCredentialStore(path, { encryptionKey: copy }).get('k')).toEqual(entry())
  })

  test('an existing file with looser permissions is tightened to 0600 on write', async () => {
    const path = join(dir, 'credentials.json')
    const store = new FileCredentialStore(path)
    await store.set('k', entry())
    await chmod(path, 0o644)
    await store.set('k', entry('b:1'))
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  const file = (content: object) => JSON.stringify({ format: FILE_FORMAT, ...content })
  const sealedShape = { alg: 'aes-256-gcm', iv: 'AAAAAAAAAAAAAAAA', tag: 'AAAAAAAAAAAAAAAAAAAAAA==', data: 'AAAA' }
  const unusable: Array<[string, string, string, string]> = [
    ['truncated', '{"format":"mqtt-bootstrap/credentials","version":1,"entr', 'ERR_STORE_CORRUPT', 'is not JSON'],
    ['garbage', '\u0000\u0001garbage\u00ff', 'ERR_STORE_CORRUPT', 'is not JSON'],
    ['foreign JSON', '{"hello":"world"}', 'ERR_STORE_CORRUPT', 'not an mqtt-bootstrap credential file'],
    ['null', 'null', 'ERR_STORE_CORRUPT', 'not an mqtt-bootstrap credential file'],
    ['an array', '[]', 'ERR_STORE_CORRUPT', 'not an mqtt-bootstrap credential file'],
    ['a string', '"mqtt-bootstrap/credentials"', 'ERR_STORE_CORRUPT', 'not an mqtt-bootstrap credential file'],
    ['no version', file({ entries: {} }), 'ERR_STORE_CORRUPT', 'no valid version'],
    ['a version that is a string', file({ version: '1', entries: {} }), 'ERR_STORE_CORRUPT', 'no valid version'],
    ['a fractional version', file({ version: 1.5, entries: {} }), 'ERR_STORE_CORRUPT', 'no valid version'],
    ['version 0', file({ version: 0, entries: {} }), 'ERR_STORE_CORRUPT', 'no valid version'],
    ['a newer version', file({ version: 99, entries: {} }), 'ERR_STORE_VERSION', 'format version 99, newer than 1'],
    ['no entries', file({ version: 1 }), 'ERR_STORE_CORRUPT', 'has no entries'],
    ['entries that are an array', file({ version: 1, entries: [] }), 'ERR_STORE_CORRUPT', 'has no entries'],
    ['entries that are null', file({ version: 1, entries: null }), 'ERR_STORE_CORRUPT', 'has no entries'],
    ['a wrong checksum', file({ version: 1, checksum: 'sha256:00', entries: {} }), 'ERR_STORE_CORRUPT', 'integrity'],
    ['a sealed part that is null', file({ version: 1, sealed: null }), 'ERR_STORE_CORRUPT', 'malformed sealed part'],
    [
      'a sealed part with a number for data',
      file({ version: 1, sealed: { ...sealedShape, data: 1 } }),
      'ERR_STORE_CORRUPT',
      'malformed sealed part',
    ],
    [
      'a sealed file, and no key',
      file({ version: 1, sealed: sealedShape }),
      'ERR_STORE_KEY',
      'no encryptionKey was given',
    ],
  ]
  test.each(unusable)('%s: get() throws a CredentialStoreError with a stable code', async (_name, text, code, says) => {
    const path = join(dir, 'credentials.json')
    await writeFile(path, text)
    const error = await new FileCredentialStore(path).get('k').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CredentialStoreError)
    expect(error).toMatchObject({ code, message: expect.stringContaining(says) })
    expect((error as Error).message).toContain(path)
  })

  /** A file sealed with `key` around `plaintext`, as the store seals (AES-256-GCM, the format as associated data). */
  function sealedFile(key: Buffer, plaintext: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', key, iv)
    cipher.setAAD(Buffer.from(`${FILE_FORMAT}/${FILE_VERSION}`))
    const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    const sealed = { alg: 'aes-256-gcm', iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64') }
    return file({ version: FILE_VERSION, sealed: { ...sealed, data: data.toString('base64') } })
  }

  test.each(['null', '[]', '"entries"', '{"k":'])(
    'sealed entries that decrypt to %s: ERR_STORE_CORRUPT (never a TypeError), healed by the next write',
    async (plaintext) => {
      const path = join(dir, 'credentials.json')
      const key = randomBytes(32)
      await writeFile(path, sealedFile(key, plaintext))
      const store = new FileCredentialStore(path, { encryptionKey: key })
      const error = await store.get('k').catch((e: unknown) => e)
      // The tag held: this key sealed it, so it is corrupt (moved aside at the next write), not another key's data.
      const says = plaintext === '{"k":' ? 'sealed entries that are not JSON' : 'has no entries'
      expect(error).toMatchObject({ name: 'CredentialStoreError', code: 'ERR_STORE_CORRUPT' })
      expect((error as Error).message).toContain(says)
      await store.set('k', entry())
      expect(await new FileCredentialStore(path, { encryptionKey: key }).get('k')).toEqual(entry())
    },
  )

  test('the file as the test seals it is what the store reads (the helper above is right)', async () => {
    const path = join(dir, 'credentials.json')
    const key = randomBytes(32)
    await writeFile(path, sealedFile(key, JSON.stringify({ k: entry() })))
    expect(await new FileCredentialStore(path, { encryptionKey: key }).get('k')).toEqual(entry())
  })

  /** A plain file with a valid checksum: only the entry check of get() can refuse these. */
  const withChecksum = (entries: object) =>
    JSON.stringify({
      format: FILE_FORMAT,
      version: FILE_VERSION,
      checksum: `sha256:${createHash('sha256').update(JSON.stringify(entries)).digest('hex')}`,
      entries,
    })
  const good = entry().config
  const invalidEntries: Array<[string, unknown]> = [
    ['null', null],
    ['an array', []],
    ['a config without fields', { savedAt: 1, config: { device: {} } }],
    ['no savedAt', { config: good }],
    ['a savedAt that is not a number', { savedAt: '1', config: good }],
  ]
  test.each(invalidEntries)(
    'an entry that is %s: ERR_STORE_CORRUPT for it, other entries still read',
    async (_name, bad) => {
      const path = join(dir, 'credentials.json')
      await writeFile(path, withChecksum({ k: bad, other: { savedAt: 7, config: good } }))
      const store = new FileCredentialStore(path)
      await expect(store.get('k')).rejects.toMatchObject({
        name: 'CredentialStoreError',
        code: 'ERR_STORE_CORRUPT',
        message: expect.stringContaining('entry is invalid'),
      })
      expect(await store.get('other')).toEqual({ savedAt: 7, config: good })
      // The next write of that entry heals it (the bootstrap writes it after provisioning afresh).
      await store.set('k', entry())
      expect(await store.get('k')).toEqual(entry())
    },
  )

  test('a sealed file with an invalid entry: the entry check of get() refuses it (ERR_STORE_CORRUPT)', async () => {
    const path = join(dir, 'credentials.json')
    const store = new FileCredentialStore(path, { encryptionKey: randomBytes(32) })
    await store.set('k', { savedAt: 1, config: { device: {}, connect: {} } as unknown as StoredCredentials['config'] })
    expect(JSON.parse(await readFile(path, 'utf8')).sealed).toBeDefined()
    await expect(store.get('k')).rejects.toMatchObject({
      code: 'ERR_STORE_CORRUPT',
      message: expect.stringContaining('entry is invalid'),
    })
  })

  test("names of the entries' prototype are no entries", async () => {
    const path = join(dir, 'credentials.json')
    const store = new FileCredentialStore(path)
    await store.set('k', entry())
    for (const key of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      expect(await store.get(key), key).toBeUndefined()
    }
  })

  const heals: Array<[string, string, Buffer | undefined]> = [
    ['null', 'null', undefined],
    ['an array', '[]', undefined],
    ['no entries', JSON.stringify({ format: FILE_FORMAT, version: 1 }), undefined],
    ['a sealed part that is null', JSON.stringify({ format: FILE_FORMAT, version: 1, sealed: null }), randomBytes(32)],
    [
      'a sealed part that is an array',
      JSON.stringify({ format: FILE_FORMAT, version: 1, sealed: [] }),
      randomBytes(32),
    ],
    [
      'a sealed part without its tag',
      JSON.stringify({ format: FILE_FORMAT, version: 1, sealed: { alg: 'aes-256-gcm', iv: 'AAAA', data: 'AAAA' } }),
      randomBytes(32),
    ],
  ]
  test.each(heals)(
    'a file holding %s is moved aside by the next write, and the cache heals',
    async (_name, text, key) => {
      const path = join(dir, 'credentials.json')
      await writeFile(path, text)
      const store = new FileCredentialStore(path, { encryptionKey: key })
      await expect(store.get('k')).rejects.toMatchObject({ code: 'ERR_STORE_CORRUPT' })
      await store.set('k', entry())
      expect(await readFile(`${path}.corrupt`, 'utf8')).toBe(text)
      expect(await store.get('k')).toEqual(entry())
      expect(await new FileCredentialStore(path, { encryptionKey: key }).get('k')).toEqual(entry())
    },
  )

  test('a corrupt file is moved aside on the next write; a newer version is left untouched', async () => {
    const path = join(dir, 'credentials.json')
    await writeFile(path, 'garbage')
    await new FileCredentialStore(path).set('k', entry())
    expect(await readFile(`${path}.corrupt`, 'utf8')).toBe('garbage')
    expect(await new FileCredentialStore(path).get('k')).toEqual(entry())

    const newer = JSON.stringify({ format: FILE_FORMAT, version: 2, entries: {} })
    await writeFile(path, newer)
    await expect(new FileCredentialStore(path).set('k', entry())).rejects.toMatchObject({ code: 'ERR_STORE_VERSION' })
    expect(await readFile(path, 'utf8')).toBe(newer)
  })

  test('a directory that cannot be made (a file in the way): set() rejects with ERR_STORE_IO', async () => {
    await writeFile(join(dir, 'file'), 'x')
    const error = await new FileCredentialStore(join(dir, 'file', 'credentials.json')).set('k', entry()).catch((e) => e)
    expect(error).toMatchObject({
      code: 'ERR_STORE_IO',
      message: expect.stringContaining('cannot create the directory'),
    })
    expect(error.cause).toMatchObject({ code: 'EEXIST', syscall: 'mkdir' })
  })

  test('a lock that cannot be made (its name too long): set() rejects with ERR_STORE_IO, nothing written', async () => {
    const path = join(dir, 'c'.repeat(252)) // a valid name; `<name>.lock` is 257 bytes, over the 255 allowed
    const error = await new FileCredentialStore(path).set('k', entry()).catch((e) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO', message: expect.stringContaining('cannot lock') })
    expect(error.cause).toMatchObject({ code: 'ENAMETOOLONG' })
    expect(await readdir(dir)).toEqual([])
  })

  test('as root, a rewrite keeps the owner of the file (a service must still read it) and its mode 0600', async (ctx) => {
    if (process.getuid?.() !== 0) {
      if (process.env.CI) throw new Error('CI is set: this test needs root (chown)')
      console.warn('skipping the owner test: not root')
      ctx.skip()
    }
    const path = join(dir, 'credentials.json')
    const store = new FileCredentialStore(path)
    await store.set('k', entry())
    await chown(path, 4321, 4322)
    await store.set('k', entry('b:1'))
    expect(await stat(path)).toMatchObject({ uid: 4321, gid: 4322 })
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    await rm(path)
    await store.set('k', entry('c:1')) // a new file belongs to whoever writes it
    expect(await stat(path)).toMatchObject({ uid: 0 })
  })

  test('the mode option is the exact mode of the file, whatever the umask', async () => {
    const path = join(dir, 'credentials.json')
    // Any usual umask (022, 002, 077) strips the write bit of others: only an explicit chmod gives 0666.
    await new FileCredentialStore(path, { mode: 0o666 }).set('k', entry())
    expect((await stat(path)).mode & 0o777).toBe(0o666)
  })

  test('an unreadable path is ERR_STORE_IO (a directory: root can read any file)', async () => {
    const path = join(dir, 'credentials.json')
    await mkdir(path)
    await expect(new FileCredentialStore(path).get('k')).rejects.toMatchObject({
      code: 'ERR_STORE_IO',
      message: expect.stringContaining('cannot read credential file'),
      cause: { code: 'EISDIR' },
    })
  })

  /** Run the writer child; resolve with its stdout lines when it prints `stopAt` (then kill it) or exits. */
  async function runWriter(
    path: string,
    first: number,
    stopAt: (line: string) => boolean,
    env: NodeJS.ProcessEnv = {},
  ) {
    const args = ['--require', './test/fixtures/pause-mid-write.cjs', '--import', 'tsx']
    const child = spawn(process.execPath, [...args, 'test/fixtures/store-writer.ts', path, '300', String(first)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    })
    const lines: string[] = []
    let pending = ''
    child.stdout.setEncoding('utf8')
    const stopped = new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: string) => {
        const parts = (pending + chunk).split('\n')
        pending = parts.pop() ?? ''
        lines.push(...parts)
        if (parts.some(stopAt)) resolve()
      })
      child.on('close', () => resolve())
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    await stopped
    child.kill('SIGKILL')
    if (child.exitCode === null && child.signalCode === null) await once(child, 'close')
    clearTimeout(timer)
    return lines
  }

  test('a process killed in the middle of writing the file leaves the previous file intact', async () => {
    const path = join(dir, 'credentials.json')
    // Two complete writes, then the third write stops halfway through its bytes and the process is killed there.
    const lines = await runWriter(path, 1, (line) => line === 'mid-write', { PAUSE_AT_WRITE: '3' })
    expect(lines).toEqual(['gen 1', 'gen 2', 'mid-write'])
    const content = JSON.parse(await readFile(path, 'utf8'))
    expect(Object.values(content.entries as Record<string, { savedAt: number }>).map((e) => e.savedAt)).toEqual([1, 2])
    expect(await new FileCredentialStore(path).get('k2')).toMatchObject({ savedAt: 2 })
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  }, 30_000)

  test('killed at random moments, every completed write survives and the file always parses', async () => {
    const path = join(dir, 'credentials.json')
    let next = 1
    for (let round = 0; round < 4; round++) {
      const target = next + 5 + Math.floor(Math.random() * 20)
      const lines = await runWriter(path, next, (line) => line === `gen ${target}`)
      const completed = Number(
        lines
          .filter((line) => line.startsWith('gen '))
          .at(-1)
          ?.slice(4),
      )
      expect(completed).toBeGreaterThanOrEqual(target)
      const content = JSON.parse(await readFile(path, 'utf8'))
      const newest = Math.max(
        ...Object.values(content.entries as Record<string, { savedAt: number }>).map((e) => e.savedAt),
      )
      // Every reported write is on disk; at most the write in progress is on top of it.
      expect(newest - completed).toBeGreaterThanOrEqual(0)
      expect(newest - completed).toBeLessThanOrEqual(1)
      next = newest + 1
    }
  }, 60_000)
})

describe('durability, through the fs module the store calls (node:fs, looked up at each call)', () => {
  type Callback = (error: NodeJS.ErrnoException | null, value?: unknown) => void
  /** Record the store's writes, fsyncs and renames, by what they touch: the temp file, the file, the directory. */
  function recordCalls(path: string): string[] {
    const log: string[] = []
    const fds = new Map<number, string>()
    const what = (p: unknown) => {
      const name = String(p)
      if (name === dir) return 'dir'
      if (name === path) return 'file'
      return basename(name).startsWith(`${basename(path)}.tmp-`) ? 'temp' : name
    }
    const { open, write, fsync, rename } = fs
    const spy = (name: string, body: (...args: never[]) => unknown) =>
      vi.spyOn(fs as unknown as Record<string, (...args: never[]) => unknown>, name).mockImplementation(body)
    spy('open', (...args: never[]) => {
      const done = (args as unknown[]).pop() as Callback
      const opened = what(args[0])
      return (open as (...a: unknown[]) => void)(...args, (error: NodeJS.ErrnoException | null, fd: number) => {
        if (!error) fds.set(fd, opened)
        done(error, fd)
      })
    })
    spy('write', (fd: never, ...rest: never[]) => {
      log.push(`write ${fds.get(fd)}`)
      return (write as (...a: unknown[]) => void)(fd, ...rest)
    })
    spy('fsync', (fd: never, done: never) => {
      log.push(`fsync ${fds.get(fd)}`)
      return fsync(fd, done)
    })
    spy('rename', (from: never, to: never, done: never) => {
      log.push(`rename ${what(from)} -> ${what(to)}`)
      return rename(from, to, done)
    })
    return log
  }

  test('the temp file is written and fsynced before the rename, the directory fsynced after it', async () => {
    const path = join(dir, 'credentials.json')
    await new FileCredentialStore(path).set('a', entry())
    const log = recordCalls(path)
    await new FileCredentialStore(path).set('k', entry())
    expect(log).toEqual(['write temp', 'fsync temp', 'rename temp -> file', 'fsync dir'])
  })

  /** Make the next call of `name` fail with `code` (a disk error no real disk here produces on demand). */
  function failNext(name: 'fsync' | 'write' | 'rename', code: string) {
    const original = fs[name] as (...args: unknown[]) => void
    let failed = false
    vi.spyOn(fs as unknown as Record<string, (...args: unknown[]) => void>, name).mockImplementation((...args) => {
      if (failed) return original(...args)
      failed = true
      const done = args.at(-1) as Callback
      process.nextTick(() => done(Object.assign(new Error(`${code} (injected)`), { code })))
    })
  }

  test('a failing fsync of the file (EIO): ERR_STORE_IO, the old file intact, no temp file', async () => {
    const path = join(dir, 'credentials.json')
    await new FileCredentialStore(path).set('a', entry())
    const before = await readFile(path)
    failNext('fsync', 'EIO')
    await expect(new FileCredentialStore(path).set('k', entry())).rejects.toMatchObject({ code: 'ERR_STORE_IO' })
    expect(await readFile(path)).toEqual(before)
    expect(await readdir(dir)).toEqual(['credentials.json'])
  })

  test('a write that reports more bytes than reached the file: the size check refuses it before the rename', async () => {
    const path = join(dir, 'credentials.json')
    await new FileCredentialStore(path).set('a', entry())
    const before = await readFile(path)
    const { write } = fs
    vi.spyOn(fs, 'write').mockImplementation(((
      fd: number,
      data: Buffer,
      offset: number,
      length: number,
      ...rest: unknown[]
    ) => {
      const done = rest.pop() as (error: Error | null, written: number) => void
      write(fd, data, offset, Math.floor(length / 2), rest[0] as number, (error) => done(error, length))
    }) as unknown as typeof fs.write)
    const error = await new FileCredentialStore(path).set('k', entry()).catch((e) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO' })
    expect(error.cause.message).toMatch(/short write/)
    expect(await readFile(path)).toEqual(before)
    expect(await readdir(dir)).toEqual(['credentials.json'])
  })

  test('short writes (a signal, a pipe-like device) are continued until every byte is written', async () => {
    const path = join(dir, 'credentials.json')
    const { write } = fs
    const spy = vi
      .spyOn(fs, 'write')
      .mockImplementation(((fd: number, data: Buffer, offset: number, length: number, ...rest: unknown[]) =>
        write(
          fd,
          data,
          offset,
          Math.min(length, 100),
          ...(rest as [number, () => void]),
        )) as unknown as typeof fs.write)
    await new FileCredentialStore(path).set('k', entry())
    expect(spy.mock.calls.length).toBeGreaterThan(3)
    expect(await new FileCredentialStore(path).get('k')).toEqual(entry())
  })

  test('a write that makes no progress is ENOSPC, not an endless loop', async () => {
    const path = join(dir, 'credentials.json')
    vi.spyOn(fs, 'write').mockImplementation(((...args: unknown[]) => {
      const done = args.at(-1) as (error: null, written: number) => void
      process.nextTick(() => done(null, 0))
    }) as unknown as typeof fs.write)
    const error = await new FileCredentialStore(path).set('k', entry()).catch((e) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO' })
    expect(error.cause).toMatchObject({ code: 'ENOSPC', message: 'no space left to write' })
    expect(await readdir(dir)).toEqual([])
  })

  test.each([
    ['EIO', 'rejects: the new file may not survive a power cut', true],
    ['EINVAL', 'resolves: the filesystem cannot fsync a directory (the rename is atomic still)', false],
    ['ENOTSUP', 'resolves: the filesystem cannot fsync a directory', false],
    ['EISDIR', 'resolves: the platform cannot fsync a directory', false],
  ])('a failing fsync of the directory, %s, %s', async (code, _what, rejects) => {
    const path = join(dir, 'credentials.json')
    await new FileCredentialStore(path).set('a', entry())
    const { fsync, fstat } = fs
    // The second fsync of the write is the directory's.
    let calls = 0
    vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, done: (error: Error | null) => void) => {
      if (++calls !== 2) return fsync(fd, done)
      fstat(fd, (_e, stats) => {
        expect(stats.isDirectory()).toBe(true)
        done(Object.assign(new Error(`${code} (injected)`), { code }))
      })
    }) as unknown as typeof fs.fsync)
    const result = await new FileCredentialStore(path).set('k', entry()).then(
      () => 'resolved',
      (e) => e.code,
    )
    expect(result).toBe(rejects ? 'ERR_STORE_IO' : 'resolved')
    expect(await new FileCredentialStore(path).get('k')).toEqual(entry()) // renamed in either case
  })

  test('a directory that cannot be opened for fsync (as on Windows): the write still succeeds', async () => {
    const path = join(dir, 'credentials.json')
    const { open } = fs
    vi.spyOn(fs, 'open').mockImplementation(((p: string, ...rest: unknown[]) => {
      const done = rest.at(-1) as (error: Error) => void
      if (p === dir)
        return process.nextTick(() => done(Object.assign(new Error('EISDIR (injected)'), { code: 'EISDIR' })))
      return (open as (...a: unknown[]) => void)(p, ...rest)
    }) as unknown as typeof fs.open)
    await new FileCredentialStore(path).set('k', entry())
    expect(await new FileCredentialStore(path).get('k')).toEqual(entry())
  })

  test('a directory that cannot be listed: no temp file removed, the write still succeeds', async () => {
    const path = join(dir, 'credentials.json')
    await writeFile(`${path}.tmp-1-ab`, 'stale')
    vi.spyOn(fs, 'readdir').mockImplementation(((_p: string, done: (error: Error) => void) =>
      process.nextTick(() =>
        done(Object.assign(new Error('EACCES (injected)'), { code: 'EACCES' })),
      )) as unknown as typeof fs.readdir)
    await new FileCredentialStore(path).set('k', entry())
    vi.restoreAllMocks()
    expect((await readdir(dir)).sort()).toEqual(['credentials.json', 'credentials.json.tmp-1-ab'])
  })
})

describe('the names of temp files', () => {
  test.each([
    ['credentials.json.tmp-123-0a1b2c', true],
    ['credentials.json.3735928559', true],
    ['credentials.json.7', true],
    ['credentials.json.corrupt', false],
    ['credentials.json.lock', false],
    ['credentials.json.tmp-123-0a1b2c.bak', false],
    ['credentials.json.x12', false],
    ['credentials.json.tmp-12-', false],
    ['credentials.json.tmp--ab', false],
    ['credentials.json.tmp-12-XY', false],
    ['credentials.jsonx12', false],
    ['other.json.tmp-1-ab', false],
    ['xcredentials.json.12', false],
    ['credentials.json.4294967295', true], // the largest uint32
    ['credentials.json.20240101120000', false], // a dated backup: longer than any uint32
    ['credentials.json', false],
  ])('%s: %s', (name, temp) => {
    expect(isTempName('credentials.json', name)).toBe(temp)
  })
})

describe('the bootstrap and an unusable cache file', () => {
  const env = useTestEnv()

  test('a corrupt file is a reported miss, then replaced by good credentials', async () => {
    const path = join(dir, 'credentials.json')
    await writeFile(path, '{"format":"mqtt-bootstrap/credentials","version":1,"entries":{"x":')
    const { boot: bootstrap, events } = boot(env.options({ cache: new FileCredentialStore(path) }))
    env.track(await bootstrap.connect())
    const miss = events.find(([name]) => name === 'cache')?.[1]
    expect(miss).toMatchObject({ action: 'miss', reason: 'corrupt' })
    expect((miss as { error: CredentialStoreError }).error.code).toBe('ERR_STORE_CORRUPT')
    env.track(await connectProvisioned(env.options({ cache: new FileCredentialStore(path) })))
    expect(env.server.requests).toHaveLength(1)
  })

  test('a newer-format file: the device still connects and the file is kept', async () => {
    const path = join(dir, 'credentials.json')
    const newer = JSON.stringify({ format: FILE_FORMAT, version: 7, entries: {} })
    await writeFile(path, newer)
    const { boot: bootstrap, events } = boot(env.options({ cache: new FileCredentialStore(path) }))
    const client = env.track(await bootstrap.connect())
    expect(client.connected).toBe(true)
    expect(events.find(([name]) => name === 'cache')?.[1]).toMatchObject({ action: 'miss', reason: 'version' })
    expect(events.find(([name]) => name === 'error')?.[1]).toMatchObject({ fatal: false })
    expect(await readFile(path, 'utf8')).toBe(newer)
  })
})
