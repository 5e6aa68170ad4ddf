import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { CredentialStoreError, connectProvisioned, FileCredentialStore, type StoredCredentials } from '../src/index.js'
import { FILE_FORMAT, FILE_VERSION } from '../src/store/file-store.js'
import { boot, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-store-'))
})
afterEach(() => rm(dir, { recursive: true, force: true }))

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
    await store.delete('k')
    await store.delete('missing')
    expect(await store.get('k')).toBeUndefined()
    expect(await store.get('other')).toBeDefined()
  })

  test('an existing file with looser permissions is tightened to 0600 on write', async () => {
    const path = join(dir, 'credentials.json')
    const store = new FileCredentialStore(path)
    await store.set('k', entry())
    await chmod(path, 0o644)
    await store.set('k', entry('b:1'))
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  const unusable: Array<[string, string, string]> = [
    ['truncated', '{"format":"mqtt-bootstrap/credentials","version":1,"entr', 'ERR_STORE_CORRUPT'],
    ['garbage', '\u0000\u0001garbage\u00ff', 'ERR_STORE_CORRUPT'],
    ['foreign JSON', '{"hello":"world"}', 'ERR_STORE_CORRUPT'],
    ['a newer version', JSON.stringify({ format: FILE_FORMAT, version: 99, entries: {} }), 'ERR_STORE_VERSION'],
    [
      'an invalid entry',
      JSON.stringify({ format: FILE_FORMAT, version: 1, entries: { k: { savedAt: 1, config: { device: {} } } } }),
      'ERR_STORE_CORRUPT',
    ],
  ]
  test.each(unusable)('%s: get() throws a CredentialStoreError with a stable code', async (_name, text, code) => {
    const path = join(dir, 'credentials.json')
    await writeFile(path, text)
    const error = await new FileCredentialStore(path).get('k').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(CredentialStoreError)
    expect(error).toMatchObject({ code })
  })

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

  test('an unreadable path is ERR_STORE_IO (a directory: root can read any file)', async () => {
    const path = join(dir, 'credentials.json')
    await mkdir(path)
    await expect(new FileCredentialStore(path).get('k')).rejects.toMatchObject({ code: 'ERR_STORE_IO' })
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
