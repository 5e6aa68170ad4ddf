import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { credentialKey, FileCredentialStore } from '../../packages/mqtt-bootstrap/src/index.js'
import { FILE_FORMAT } from '../../packages/mqtt-bootstrap/src/store/file-store.js'
import { runTs } from '../helpers/child.js'
import { payloads } from '../helpers/env.js'
import { DEVICE } from '../helpers/https-server.js'
import { until } from '../helpers/until.js'
import { useFaultEnv } from './fault-env.js'

const fault = useFaultEnv()
let dir: string
let path: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-faults-'))
  path = join(dir, 'credentials.json')
})
afterEach(() => rm(dir, { recursive: true, force: true }))

/** A good cache file for this environment. */
async function goodFile(): Promise<string> {
  fault.env.track(await fault.boot({ cache: new FileCredentialStore(path) }).boot.connect())
  fault.env.server.requests.length = 0
  return readFile(path, 'utf8')
}

/** Boot with the file; expect connected, a miss for `reason`, and a usable file afterwards (healed). */
async function bootsDespite(reason: string) {
  const { boot, events } = fault.boot({ cache: new FileCredentialStore(path) })
  const client = fault.env.track(await boot.connect())
  expect(client.connected).toBe(true)
  expect(payloads(events, 'cache')[0]).toMatchObject({ action: 'miss', reason })
  expect(fault.env.server.requests).toHaveLength(1)
  return events
}

async function cachedSecret(): Promise<string | undefined> {
  const { url, data } = fault.env.options()
  return (await new FileCredentialStore(path).get(credentialKey(url, data)))?.config.device.deviceSecret
}

describe('the credential file', () => {
  test('truncated: a miss, provisioned again, the file healed', async () => {
    const good = await goodFile()
    await writeFile(path, good.slice(0, good.length / 2))
    await bootsDespite('corrupt')
    expect(await cachedSecret()).toBe(DEVICE.deviceSecret)
    expect(await readFile(`${path}.corrupt`, 'utf8')).toBe(good.slice(0, good.length / 2))
  })

  test('filled with garbage: a miss, provisioned again, the file healed', async () => {
    await writeFile(path, Buffer.from([0, 255, 1, 254, 0x7b, 0x22]))
    await bootsDespite('corrupt')
    expect(await cachedSecret()).toBe(DEVICE.deviceSecret)
  })

  test('unreadable: a miss, the device connects, the path is left alone', async () => {
    if (process.getuid?.() === 0) {
      await mkdir(path) // root reads any file whatever its mode: make the path unreadable as a file instead
    } else {
      await writeFile(path, await goodFile())
      await chmod(path, 0o000)
    }
    const events = await bootsDespite('io')
    expect(payloads(events, 'error')).toMatchObject([{ fatal: false, error: { code: 'ERR_STORE_IO' } }])
    expect(await stat(path)).toBeDefined()
  })

  test('written by a newer format version: a miss, the device connects, the file kept as it is', async () => {
    const newer = JSON.stringify({ format: FILE_FORMAT, version: 2, entries: {}, future: true })
    await writeFile(path, newer)
    const events = await bootsDespite('version')
    expect(payloads(events, 'error')).toMatchObject([{ fatal: false, error: { code: 'ERR_STORE_VERSION' } }])
    expect(await readFile(path, 'utf8')).toBe(newer)
  })

  test('a lock left by a process killed mid-write: the boot connects within its deadline, the write follows', async () => {
    await mkdir(`${path}.lock`) // as proper-lockfile leaves it when its process dies
    const started = performance.now()
    const { boot, events } = fault.boot({
      cache: new FileCredentialStore(path, { lockStaleMs: 2000 }),
      deadlineMs: 1000,
    })
    const client = fault.env.track(await boot.connect())
    expect(client.connected).toBe(true)
    expect(performance.now() - started).toBeLessThan(1500)
    // Once the lock has gone stale, it is taken over and the credentials are written.
    await until(() => payloads(events, 'cache').some((e) => e.action === 'write'), 8000, 'the cache write')
    expect(await cachedSecret()).toBe(DEVICE.deviceSecret)
  }, 15_000)

  test('process killed during the cache write: the file is the old one or none, and the next boot connects', async () => {
    const old = await goodFile()
    await writeFile(path, old)
    // A device with other data boots in a child process, which is killed halfway through writing its credentials.
    await writeFile(join(dir, 'ca.pem'), fault.env.tls.ca)
    const { output } = await runTs('test/fixtures/device-boot.ts', [], {
      nodeArgs: ['--require', './test/fixtures/pause-mid-write.cjs'],
      env: {
        PAUSE_AT_WRITE: '1',
        PROVISION_URL: fault.env.server.url.replace('/provision', '/other'),
        CA_FILE: join(dir, 'ca.pem'),
        CREDENTIALS: path,
      },
      onOutput: (sofar, child) => {
        if (sofar.includes('mid-write')) child.kill('SIGKILL')
      },
    })
    expect(output).toContain('mid-write')
    expect(output).not.toContain('connected')
    expect(await readFile(path, 'utf8')).toBe(old) // the old file, whole

    // The next boot (the original device) still finds its credentials and connects without a request.
    const { boot } = fault.boot({ cache: new FileCredentialStore(path) })
    fault.env.track(await boot.connect())
    expect(fault.env.server.requests.filter((r) => r.path === '/provision')).toHaveLength(0)
  }, 30_000)
})
