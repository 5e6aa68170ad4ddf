/**
 * The `messageStore` option with the bootstrap (issue 20), in process: a real aedes broker, a real HTTPS provisioning
 * server, real mqtt.js clients, real files. What is sent after a restart with the same store, a re-provisioning in
 * the middle of a stream, a cleanSession changed by a re-provisioning, a disk that fills up (a real tmpfs), and the
 * option's checks. The crash cases (SIGKILL, mosquitto with persistence) are in durable-crash.slow.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store } from 'mqtt'
import { afterAll, afterEach, describe, expect, test } from 'vitest'
import {
  FileCredentialStore,
  FileMessageStore,
  InvalidOptionError,
  MessageStoreError,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot, nextEvent, payloads, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'
import { fillLeaving, mountRefused, mountTmpfs, unmount } from './helpers/tmpfs.js'
import { until } from './helpers/until.js'

const env = useTestEnv()
const KEY = `${DEVICE.productKey}.${DEVICE.deviceName}`
const ROTATED = { ...DEVICE, deviceSecret: 'rotated-durable-secret-3333333333' }
const reconnect = { minDelay: 20, maxDelay: 100, factor: 2, stableAfter: 150 }
const root = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-durable-'))
let n = 0
afterEach(() => {
  env.broker.secrets.set(KEY, DEVICE.deviceSecret)
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

function paths() {
  const dir = join(root, `device-${++n}`)
  return { credentials: join(dir, 'credentials.json'), messages: join(dir, 'messages') }
}

/** The payloads the broker received on `topic`, each once. */
const receivedOn = (topic: string) =>
  new Set(env.broker.published.filter((p) => p.topic === topic).map((p) => p.payload))

/** The broker down for the client: its connection cut, and every reconnect refused (CONNACK 3) until `up()`. */
function brokerDown(): { up(): void } {
  env.broker.refuse.push(...Array.from({ length: 500 }, () => 3))
  env.broker.drop()
  return {
    up: () => {
      env.broker.refuse.length = 0
    },
  }
}

describe.each([0, 1])('cleanSession %i: offline messages are sent by the next boot with the same store', (clean) => {
  test('200 QoS 1 messages published while the broker is down, the client gone: the broker gets all 200', async () => {
    env.answerValid({ qos: 1, cleanSession: clean })
    const { credentials, messages } = paths()
    const first = boot(
      env.options({
        cache: new FileCredentialStore(credentials),
        reconnect,
        messageStore: new FileMessageStore(messages),
      }),
    )
    const client = env.track(await first.boot.connect())
    const broker = brokerDown()
    await until(() => !client.connected, 2000, 'the client offline')
    for (let i = 1; i <= 200; i++) client.publish('dur/offline', `m${i}`, { qos: 1 })
    expect(new FileMessageStore(messages).pending).toBe(200) // on disk already: another instance reads them
    await client.endAsync(true) // the app (or the process) goes; its messages stay behind on disk
    broker.up()

    const store = new FileMessageStore(messages)
    const second = boot(env.options({ cache: new FileCredentialStore(credentials), reconnect, messageStore: store }))
    env.track(await second.boot.connect())
    await until(() => receivedOn('dur/offline').size === 200, 5000, 'all 200 at the broker')
    await until(() => store.pending === 0, 2000, 'the store emptied by the acknowledgements')
    expect(env.server.requests).toHaveLength(1) // the second boot used the cached credentials
  })
})

describe('the same store across a re-provisioning', () => {
  test('credentials refused in the middle of a stream: re-provisioned, and every message of the stream arrives', async () => {
    const { credentials, messages } = paths()
    env.answerValid({ qos: 1, cleanSession: 0 })
    const store = new FileMessageStore(messages)
    const { boot: bootstrap, events } = boot(
      env.options({ cache: new FileCredentialStore(credentials), reconnect, messageStore: store }),
    )
    const client = env.track(await bootstrap.connect())
    const sent: Promise<unknown>[] = []
    for (let i = 1; i <= 100; i++)
      sent.push(client.publishAsync('dur/stream', `s${i}`, { qos: 1 }).catch(() => 'retried'))
    // The cloud rotates the secret: the cached credentials are refused at the next connect, the server has new ones.
    env.broker.secrets.set(KEY, ROTATED.deviceSecret)
    env.answerValid({ qos: 1, cleanSession: 1 }, ROTATED)
    env.broker.drop()
    for (let i = 101; i <= 200; i++)
      sent.push(client.publishAsync('dur/stream', `s${i}`, { qos: 1 }).catch(() => 'retried'))
    await nextEvent(bootstrap, 'connected', () => true, 5000)
    await until(() => receivedOn('dur/stream').size === 200, 5000, 'all 200 at the broker')
    expect(payloads(events, 'auth-rejected')).toEqual([{ returnCode: 4, source: 'server', reprovision: true }])
    // The answer changed cleanSession to 1: the reconnect said so, with the same store behind the same client.
    expect(env.broker.connects.at(-1)?.clean).toBe(true)
    expect(env.broker.connects[0]?.clean).toBe(false)
    expect(client.outgoingStore).toBe(store.outgoing)
    await until(() => store.pending === 0, 2000, 'the store emptied')
  })
})

describe('the option', () => {
  test('the client uses the store and its message-id provider; connectOptions() hands them on', async () => {
    const store = new FileMessageStore(paths().messages)
    const { boot: bootstrap } = boot(env.options({ messageStore: store }))
    const client = env.track(await bootstrap.connect())
    expect(client.outgoingStore).toBe(store.outgoing)
    expect(client.incomingStore).toBe(store.incoming)
    expect(client.messageIdProvider).toBe(store.messageIdProvider)
    const options = await bootstrap.connectOptions()
    expect(options).toMatchObject({ outgoingStore: store.outgoing, incomingStore: store.incoming })
  })

  test("without it, mqtt.js's in-memory stores, as before", async () => {
    const client = env.track(await boot(env.options()).boot.connect())
    expect(client.outgoingStore).toBeInstanceOf(Store)
  })

  test.each([
    ['not a FileMessageStore', { messageStore: { put() {} } as never }, 'messageStore'],
    ['beside mqtt.outgoingStore', { mqtt: { outgoingStore: new Store() } }, 'mqtt.outgoingStore'],
    ['beside mqtt.messageIdProvider', { mqtt: { messageIdProvider: {} as never } }, 'mqtt.messageIdProvider'],
  ])('%s: an InvalidOptionError before any I/O', (_name, overrides, option) => {
    const messageStore = new FileMessageStore(paths().messages)
    const make = () => boot(env.options({ messageStore, ...overrides }))
    expect(make).toThrow(InvalidOptionError)
    expect(make).toThrow(expect.objectContaining({ option }))
    expect(env.server.requests).toHaveLength(0)
  })
})

const diskSkip = mountRefused('the durable store disk tests')

describe.skipIf(diskSkip)('a disk that fills up (a real tmpfs)', () => {
  const mounts: string[] = []
  afterEach(() => {
    for (const dir of mounts.splice(0)) unmount(dir)
  })

  test.each(['connected', 'offline'])(
    '%s: what does not fit rejects with ERR_MESSAGE_STORE_IO and an error event; the rest arrives; with room again all does',
    async (state) => {
      const disk = mountTmpfs('size=256k')
      mounts.push(disk)
      const store = new FileMessageStore(join(disk, 'messages'))
      const { boot: bootstrap, events } = boot(env.options({ reconnect, messageStore: store }))
      const client = env.track(await bootstrap.connect())
      await client.publishAsync('dur/disk', 'before', { qos: 1 }) // its slot exists now, blocks and all
      const broker = state === 'offline' ? brokerDown() : { up() {} }
      if (state === 'offline') await until(() => !client.connected, 2000, 'offline')
      fillLeaving(disk, 0)
      // 20 at once: the one slot there is takes one of them; the others need new slots, and there is no room.
      const publishing = Array.from({ length: 20 }, (_, i) => client.publishAsync('dur/disk', `full ${i}`, { qos: 1 }))
      broker.up() // the one kept offline is acknowledged once the broker is back
      const outcomes = await Promise.allSettled(publishing)
      const refused = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [[`full ${i}`, o.reason] as const] : []))
      const kept = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [`full ${i}`] : []))
      expect(refused.length).toBeGreaterThanOrEqual(18)
      for (const [, error] of refused) {
        expect(error).toBeInstanceOf(MessageStoreError)
        expect(error).toMatchObject({ code: 'ERR_MESSAGE_STORE_IO' })
        expect((error as Error).message).toContain('ENOSPC')
        expect(payloads(events, 'error')).toContainEqual({ error, fatal: false })
      }
      await until(() => kept.every((p) => receivedOn('dur/disk').has(p)), 3000, 'what was kept, at the broker')
      for (const [payload] of refused) expect(receivedOn('dur/disk').has(payload)).toBe(false) // refused: not sent
      await until(() => store.pending === 0, 3000, 'nothing left pending')
      // QoS 0 does not touch the store: it still goes.
      await client.publishAsync('dur/disk', 'qos 0', { qos: 0 })

      await rm(join(disk, 'filler'))
      await Promise.all(Array.from({ length: 20 }, (_, i) => client.publishAsync('dur/disk', `room ${i}`, { qos: 1 })))
      await until(() => receivedOn('dur/disk').has('room 19'), 3000, 'the messages after the disk was freed')
      await client.endAsync() // its stores closed: no file of the disk is left open, and it can be unmounted
    },
  )
})
