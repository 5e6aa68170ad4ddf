/**
 * Writers killed by SIGKILL mid-write, in a row (a power cut at the worst moment, again and again). Real child
 * processes: a `.slow` suite, run on the machine's Node by `npm test` and left out of the other majors
 * (scripts/node-matrix.sh).
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { FileCredentialStore, type StoredCredentials } from '../packages/mqtt-bootstrap/src/index.js'
import { runTs } from './helpers/child.js'
import { DEVICE } from './helpers/https-server.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-store-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const entry = (host = 'broker.example:1883'): StoredCredentials => ({
  savedAt: 1234,
  config: { device: { ...DEVICE, productSecret: null }, connect: { qos: 1, host, cleanSession: 1 } },
})

describe('temp files left by killed writers', () => {
  test('after 15 writers killed mid-write in a row and one successful write, none is left', async () => {
    const path = join(dir, 'credentials.json')
    const store = new FileCredentialStore(path)
    for (let i = 0; i < 20; i++) await store.set(`before-${i}`, entry(`h${i}:1`))
    const before = await readFile(path, 'utf8')
    // Left by write-file-atomic in earlier versions of this library, and others that are not the store's.
    await writeFile(`${path}.3735928559`, before)
    const kept = ['credentials.json.corrupt', 'credentials.json.bak', 'credentials.json.tmp-x', 'other.json.tmp-1-ab']
    for (const name of kept) await writeFile(join(dir, name), 'keep')
    const temps = async () =>
      (await readdir(dir)).filter((name) => /^credentials\.json\.(tmp-\d+-[0-9a-f]+|\d+)$/.test(name))
    for (let kill = 1; kill <= 15; kill++) {
      const { output } = await runTs('test/fixtures/store-writer.ts', [path, '300', String(1000 + kill)], {
        nodeArgs: ['--require', './test/fixtures/pause-mid-write.cjs'],
        env: { PAUSE_AT_WRITE: '1', LOCK_STALE_MS: '200' },
        onOutput: (sofar, child) => {
          if (sofar.includes('mid-write')) child.kill('SIGKILL')
        },
        timeoutMs: 20_000,
      })
      expect(output, `writer ${kill}`).toContain('mid-write')
      // Each writer removed its predecessors' temp files under the lock: only its own is there.
      expect(await temps(), `after kill ${kill}`).toHaveLength(1)
      expect(await readFile(path, 'utf8')).toBe(before)
    }
    await new FileCredentialStore(path, { lockStaleMs: 200 }).set('after', entry())
    expect(await temps()).toEqual([])
    expect((await readdir(dir)).sort()).toEqual(['credentials.json', ...kept].sort())
    expect(await store.get('before-19')).toEqual(entry('h19:1'))
  }, 120_000)
})
