/**
 * FileMessageStore on its own (issue 20): mqtt.js's store interface on real files in a temp dir. What a store holds
 * when it is opened again by a new instance (a restart), the order, the files it sets aside, its options, and the
 * message-id provider that keeps a restarted client from reusing a stored packet's id.
 */

import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import type { IStore } from 'mqtt'
import { afterAll, describe, expect, test } from 'vitest'
import { FileMessageStore, InvalidOptionError, MessageStoreError } from '../packages/mqtt-bootstrap/src/index.js'

const root = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-messages-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let n = 0
const freshDir = () => join(root, `store-${++n}`)

type Packet = Parameters<IStore['put']>[0]
const publish = (messageId: number, payload: string | Buffer = `message ${messageId}`, extra = {}): Packet =>
  ({ cmd: 'publish', messageId, qos: 1, dup: false, retain: false, topic: 'dur/t', payload, ...extra }) as Packet

const put = (store: IStore, packet: Packet) =>
  new Promise<void>((resolve, reject) => store.put(packet, (error?: Error) => (error ? reject(error) : resolve())))
const del = (store: IStore, messageId: number) =>
  new Promise<Packet | undefined>((resolve, reject) =>
    store.del({ messageId }, (error, packet) => (error ? reject(error) : resolve(packet))),
  )
const get = (store: IStore, messageId: number) =>
  new Promise<Packet | undefined>((resolve, reject) =>
    store.get({ messageId }, (error, packet) => (error ? reject(error) : resolve(packet))),
  )
async function streamed(store: IStore): Promise<Packet[]> {
  const packets: Packet[] = []
  for await (const packet of store.createStream()) packets.push(packet as Packet)
  return packets
}
const files = (dir: string) => readdirSync(join(dir, 'outgoing')).sort()

describe('what a new instance on the same directory finds (a restart)', () => {
  test('every packet put and not deleted, whole, in the order put; strings stay strings, bytes stay bytes', async () => {
    const dir = freshDir()
    const first = new FileMessageStore(dir)
    const mqtt5 = publish(7, Buffer.from([0, 1, 2, 255]), {
      properties: { correlationData: Buffer.from('corr'), userProperties: { a: 'b', list: ['x', 'y'] } },
    })
    await put(first.outgoing, publish(9))
    await put(first.outgoing, mqtt5)
    await put(first.outgoing, publish(3, ''))
    await put(first.outgoing, publish(4))
    expect(await del(first.outgoing, 4)).toMatchObject({ messageId: 4 })
    await put(first.incoming, publish(11, 'incoming QoS 2', { qos: 2 }))
    const second = new FileMessageStore(dir)
    const again = await streamed(second.outgoing)
    expect(again).toEqual([publish(9), mqtt5, publish(3, '')])
    expect(Buffer.isBuffer(again[1]?.cmd === 'publish' && again[1].payload)).toBe(true)
    expect(typeof (again[0]?.cmd === 'publish' && again[0].payload)).toBe('string')
    expect(await get(second.incoming, 11)).toEqual(publish(11, 'incoming QoS 2', { qos: 2 }))
    expect(second.pending).toBe(3)
  })

  test('a pubrel that replaced its publish (QoS 2, a shorter record over a longer one) is what comes back', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    await put(store.outgoing, publish(5, 'a QoS 2 message, longer than its pubrel', { qos: 2 }))
    await put(store.outgoing, { cmd: 'pubrel', messageId: 5 } as Packet)
    expect(await streamed(new FileMessageStore(dir).outgoing)).toEqual([{ cmd: 'pubrel', messageId: 5 }])
  })

  test('deleted packets do not come back; their slots are marked so, and reused', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    for (let id = 1; id <= 20; id++) await put(store.outgoing, publish(id))
    for (let id = 1; id <= 20; id += 2) await del(store.outgoing, id)
    const again = await streamed(new FileMessageStore(dir).outgoing)
    expect(again.map((p) => p.messageId)).toEqual([2, 4, 6, 8, 10, 12, 14, 16, 18, 20])
    expect(files(dir)).toHaveLength(20)
    expect(
      readFileSync(join(dir, 'outgoing', '1.mqp'))
        .subarray(0, 4)
        .toString(),
    ).toBe('MQBX')
  })

  test('a client publishing 1,000 messages, a few in flight at a time, uses a few slot files', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    const ids = store.messageIdProvider
    const inFlight: number[] = []
    for (let i = 0; i < 1000; i++) {
      const id = ids.allocate() as number
      await put(store.outgoing, publish(id))
      inFlight.push(id)
      if (inFlight.length === 8) {
        const acked = inFlight.splice(Math.floor(i % 8), 1)[0] as number // acknowledged in any order
        await del(store.outgoing, acked)
        ids.deallocate(acked)
      }
    }
    expect(files(dir).length).toBeLessThanOrEqual(9)
    expect(store.pending).toBe(7)
  })

  test('the directory and its two subdirectories are made 0700, each packet file 0600', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    await put(store.outgoing, publish(1))
    await put(store.incoming, publish(1, 'in', { qos: 2 }))
    for (const path of [dir, join(dir, 'outgoing'), join(dir, 'incoming')]) {
      expect(statSync(path).mode & 0o777).toBe(0o700)
    }
    expect(statSync(join(dir, 'outgoing', '1.mqp')).mode & 0o777).toBe(0o600)
  })

  test('mqtt.js semantics kept: a missing packet is an error for get and del; close keeps the store usable', async () => {
    const store = new FileMessageStore(freshDir())
    await expect(get(store.outgoing, 42)).rejects.toThrow('missing packet')
    await expect(del(store.outgoing, 42)).rejects.toThrow('missing packet')
    await new Promise<void>((resolve) => store.outgoing.close(() => resolve()))
    await put(store.outgoing, publish(1))
    expect(await get(store.outgoing, 1)).toEqual(publish(1))
  })
})

describe('files that are not whole are set aside, never handed to mqtt.js, and reported', () => {
  test.each([
    ['cut short', (bytes: Buffer) => bytes.subarray(0, bytes.length - 5)],
    ['a byte flipped', (bytes: Buffer) => Buffer.from(bytes.map((b, i) => (i === 20 ? b ^ 1 : b)))],
    ['another format', () => Buffer.from('{"cmd":"publish","messageId":2}')],
  ])(
    '%s: the others load; the file becomes <name>.corrupt; an ERR_MESSAGE_STORE_CORRUPT error event',
    async (_name, damage) => {
      const dir = freshDir()
      const store = new FileMessageStore(dir)
      await put(store.outgoing, publish(1))
      await put(store.outgoing, publish(2))
      const second = join(dir, 'outgoing', '2.mqp')
      writeFileSync(second, damage(readFileSync(second)))
      const reopened = new FileMessageStore(dir)
      const errors: MessageStoreError[] = []
      reopened.on('error', (error) => errors.push(error))
      expect((await streamed(reopened.outgoing)).map((p) => p.messageId)).toEqual([1])
      expect(errors).toHaveLength(1)
      expect(errors[0]).toBeInstanceOf(MessageStoreError)
      expect(errors[0]).toMatchObject({ code: 'ERR_MESSAGE_STORE_CORRUPT', path: second })
      expect(existsSync(`${second}.corrupt`)).toBe(true)
      expect(existsSync(second)).toBe(false)
    },
  )

  test('an empty slot (a kill between making it and writing it) holds nothing, and is not reported', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    await put(store.outgoing, publish(1))
    writeFileSync(join(dir, 'outgoing', '2.mqp'), '')
    const reopened = new FileMessageStore(dir)
    const errors: MessageStoreError[] = []
    reopened.on('error', (error) => errors.push(error))
    expect((await streamed(reopened.outgoing)).map((p) => p.messageId)).toEqual([1])
    expect(errors).toEqual([])
  })

  test('the tail of an older, longer record after a shorter one is ignored', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    await put(store.outgoing, publish(1, 'x'.repeat(500)))
    const slot = join(dir, 'outgoing', '1.mqp')
    const long = readFileSync(slot)
    await del(store.outgoing, 1)
    await put(store.outgoing, publish(1, 'short'))
    const short = readFileSync(slot)
    writeFileSync(slot, Buffer.concat([short, long.subarray(short.length)])) // as an overwrite in place leaves it
    expect(await streamed(new FileMessageStore(dir).outgoing)).toEqual([publish(1, 'short')])
  })

  test('a symlink planted in a slot is never followed: set aside, its target untouched, the slot made anew', async () => {
    const dir = freshDir()
    mkdirSync(join(dir, 'outgoing'), { recursive: true, mode: 0o700 })
    const target = join(root, `precious-${n}`)
    writeFileSync(target, 'precious')
    symlinkSync(target, join(dir, 'outgoing', '1.mqp'))
    const store = new FileMessageStore(dir)
    const errors: MessageStoreError[] = []
    store.on('error', (error) => errors.push(error))
    await put(store.outgoing, publish(1))
    expect(errors.map((e) => e.code)).toEqual(['ERR_MESSAGE_STORE_CORRUPT'])
    expect(readFileSync(target, 'utf8')).toBe('precious')
    expect(lstatSync(join(dir, 'outgoing', '1.mqp')).isFile()).toBe(true)
    expect(await streamed(new FileMessageStore(dir).outgoing)).toEqual([publish(1)])
  })

  test("a FIFO or a directory in a slot's place: set aside at boot without blocking, the other packets load", async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    await put(store.outgoing, publish(1))
    execFileSync('mkfifo', [join(dir, 'outgoing', '2.mqp')])
    mkdirSync(join(dir, 'outgoing', '3.mqp'))
    const reopened = new FileMessageStore(dir)
    const errors: MessageStoreError[] = []
    reopened.on('error', (error) => errors.push(error))
    expect((await streamed(reopened.outgoing)).map((p) => p.messageId)).toEqual([1])
    expect(errors.map((e) => e.code)).toEqual(['ERR_MESSAGE_STORE_CORRUPT', 'ERR_MESSAGE_STORE_CORRUPT'])
    await put(reopened.outgoing, publish(2)) // the slot made anew, a regular file
    expect(lstatSync(join(dir, 'outgoing', '2.mqp')).isFile()).toBe(true)
  })

  test('a whole record of a packet mqtt.js never stores (a pubrec, a QoS 0 publish) is no record: set aside', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    await put(store.outgoing, { cmd: 'pubrec', messageId: 1 } as Packet)
    await put(store.outgoing, publish(2, 'qos 0', { qos: 0 }))
    await put(store.outgoing, publish(3))
    const reopened = new FileMessageStore(dir)
    const errors: MessageStoreError[] = []
    reopened.on('error', (error) => errors.push(error))
    expect((await streamed(reopened.outgoing)).map((p) => p.messageId)).toEqual([3])
    expect(errors).toHaveLength(2)
  })

  test('names that are not packet files are left alone', async () => {
    const dir = freshDir()
    await put(new FileMessageStore(dir).outgoing, publish(1))
    writeFileSync(join(dir, 'outgoing', 'notes.txt'), 'mine')
    writeFileSync(join(dir, 'outgoing', '70000.mqp'), 'an id out of range')
    expect((await streamed(new FileMessageStore(dir).outgoing)).map((p) => p.messageId)).toEqual([1])
    expect(files(dir)).toContain('notes.txt')
  })
})

describe('a directory that cannot be used: every put fails with ERR_MESSAGE_STORE_IO, and an error event', () => {
  test('the path is a file', async () => {
    const path = join(root, `a-file-${++n}`)
    writeFileSync(path, 'not a directory')
    const store = new FileMessageStore(path)
    const errors: MessageStoreError[] = []
    store.on('error', (error) => errors.push(error))
    const failed = await put(store.outgoing, publish(1)).catch((error: unknown) => error)
    expect(failed).toBeInstanceOf(MessageStoreError)
    expect(failed).toMatchObject({ code: 'ERR_MESSAGE_STORE_IO' })
    expect(errors).toEqual([failed])
    expect(await streamed(store.outgoing)).toEqual([])
    expect(readFileSync(path, 'utf8')).toBe('not a directory')
  })

  test.skipIf(process.getuid?.() === 0)('a directory without write permission (not as root)', async () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    await put(store.outgoing, publish(1))
    chmodSync(join(dir, 'outgoing'), 0o500)
    try {
      await expect(put(store.outgoing, publish(2))).rejects.toMatchObject({ code: 'ERR_MESSAGE_STORE_IO' })
    } finally {
      chmodSync(join(dir, 'outgoing'), 0o700)
    }
  })
})

describe('options, checked when the store is made', () => {
  test.each([
    ['no dir', () => new FileMessageStore(undefined as never), 'dir'],
    ['an empty dir', () => new FileMessageStore(''), 'dir'],
    ['syncMs over a second', () => new FileMessageStore(freshDir(), { syncMs: 1001 }), 'syncMs'],
    ['syncMs negative', () => new FileMessageStore(freshDir(), { syncMs: -1 }), 'syncMs'],
    ['syncMs not an integer', () => new FileMessageStore(freshDir(), { syncMs: 1.5 }), 'syncMs'],
    ['a misspelt option', () => new FileMessageStore(freshDir(), { syncMS: 10 } as never), 'syncMS'],
    [
      'syncMs null (left out takes the default)',
      () => new FileMessageStore(freshDir(), { syncMs: null as never }),
      'syncMs',
    ],
    ['options not an object', () => new FileMessageStore(freshDir(), 5 as never), 'options'],
  ])('%s', (_name, make, option) => {
    expect(make).toThrow(InvalidOptionError)
    expect(make).toThrow(expect.objectContaining({ option }))
  })

  test('the default syncMs is at most a second; the store makes its directory 0700 at once', () => {
    const dir = freshDir()
    const store = new FileMessageStore(dir)
    expect(store.syncMs).toBeGreaterThan(0)
    expect(store.syncMs).toBeLessThanOrEqual(1000)
    expect(statSync(dir).mode & 0o777).toBe(0o700)
  })

  test('inspect and JSON show where the store is, not what it holds', async () => {
    const store = new FileMessageStore(freshDir())
    await put(store.outgoing, publish(1, 'payload-that-must-not-show'))
    expect(inspect(store, { depth: 8 })).not.toContain('payload-that-must-not-show')
    expect(JSON.stringify(store)).not.toContain('payload-that-must-not-show')
    expect(JSON.parse(JSON.stringify(store))).toEqual({ dir: store.dir, syncMs: store.syncMs })
  })
})

describe('sync()', () => {
  test('resolves once what was put is durable; many at once each resolve', async () => {
    const store = new FileMessageStore(freshDir(), { syncMs: 1000 })
    for (let id = 1; id <= 50; id++) await put(store.outgoing, publish(id))
    await Promise.all([store.sync(), store.sync(), store.sync()])
    await store.sync() // nothing new: still resolves
  })
})

describe('the message-id provider: a restarted client never reuses the id of a stored packet', () => {
  test('ids held by the store are skipped; freed ones come back; all 65,535 held is null', async () => {
    const dir = freshDir()
    const before = new FileMessageStore(dir)
    for (let id = 1; id <= 100; id++) await put(before.outgoing, publish(id))
    const after = new FileMessageStore(dir) // the next boot: mqtt.js's default provider could hand out 1..100 again
    const ids = after.messageIdProvider
    const allocated = Array.from({ length: 5 }, () => ids.allocate())
    expect(allocated).toEqual([101, 102, 103, 104, 105])
    expect(ids.getLastAllocated()).toBe(105)
    expect(ids.register(101)).toBe(false) // in use
    ids.clear() // a CONNACK: mqtt.js registers the stored packets again as it resends them
    expect(ids.register(50)).toBe(true)
    expect(ids.register(50)).toBe(false)
    ids.deallocate(50)
    expect(ids.register(50)).toBe(true)
    ids.clear()
    const seen = new Set<number>()
    for (let i = 0; i < 65_535 - 100; i++) seen.add(ids.allocate() as number)
    expect(seen.size).toBe(65_535 - 100)
    for (let id = 1; id <= 100; id++) expect(seen.has(id)).toBe(false)
    expect(ids.allocate()).toBeNull()
  })
})
