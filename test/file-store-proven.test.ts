/**
 * A plain file's text, once checked in full by this process, is not checked again by a new store over the same file
 * (store/file-format.ts, `provenEntry`): only the very same text counts, so any edit made afterwards is checked in
 * full, recomputed checksum or not.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { FileCredentialStore, type StoredCredentials } from '../packages/mqtt-bootstrap/src/index.js'
import { DEVICE } from './helpers/https-server.js'

let dir: string
let path: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-proven-'))
  path = join(dir, 'credentials.json')
})
afterEach(() => rm(dir, { recursive: true, force: true }))

const entry: StoredCredentials = {
  savedAt: 1234,
  config: {
    device: { ...DEVICE, productSecret: null },
    connect: { qos: 1, host: 'broker.example:1883', cleanSession: 1 },
  },
}

/** The file rewritten by hand, its checksum recomputed: only the entry check can refuse it. */
async function rewrite(change: (entries: Record<string, { config: Record<string, unknown> }>) => void) {
  const content = JSON.parse(await readFile(path, 'utf8'))
  change(content.entries)
  content.checksum = `sha256:${createHash('sha256').update(JSON.stringify(content.entries)).digest('hex')}`
  await writeFile(path, JSON.stringify(content))
}

test('a new store over the same unchanged file reads the same entry', async () => {
  await new FileCredentialStore(path).set('k', entry)
  const first = await new FileCredentialStore(path).get('k')
  const second = await new FileCredentialStore(path).get('k')
  expect(first).toEqual(entry)
  expect(second).toEqual(entry)
  expect(Object.isFrozen(second?.config)).toBe(true)
})

test('an entry read once, then made invalid with a recomputed checksum: ERR_STORE_CORRUPT', async () => {
  await new FileCredentialStore(path).set('k', entry)
  expect(await new FileCredentialStore(path).get('k')).toEqual(entry)
  await rewrite((entries) => {
    ;(entries.k as { config: { connect: unknown } }).config.connect = { qos: 7 }
  })
  await expect(new FileCredentialStore(path).get('k')).rejects.toMatchObject({ code: 'ERR_STORE_CORRUPT' })
})

test('an entry read once, then edited without a new checksum: ERR_STORE_CORRUPT', async () => {
  await new FileCredentialStore(path).set('k', entry)
  expect(await new FileCredentialStore(path).get('k')).toEqual(entry)
  const content = JSON.parse(await readFile(path, 'utf8'))
  content.entries.k.config.connect.host = 'attacker.example:1883'
  await writeFile(path, JSON.stringify(content))
  await expect(new FileCredentialStore(path).get('k')).rejects.toMatchObject({ code: 'ERR_STORE_CORRUPT' })
})

test('an entry read once, then changed validly by hand: the new entry is read', async () => {
  await new FileCredentialStore(path).set('k', entry)
  expect(await new FileCredentialStore(path).get('k')).toEqual(entry)
  await rewrite((entries) => {
    ;(entries.k as { config: { connect: { host: string } } }).config.connect.host = 'other.example:1883'
  })
  const read = await new FileCredentialStore(path).get('k')
  expect(read?.config.connect.host).toBe('other.example:1883')
})
