/**
 * What mqtt.js holds in memory however durable its stores (issue 20, queued-publishes.ts): after a CONNACK it resends
 * its outgoing store one packet at a time, each awaiting its PUBACK, and queues every publish() made meanwhile. A broker
 * of the test's own (mqtt-packet on 127.0.0.1) sends the CONNACK and holds the PUBACKs back until told, so that the
 * resend lasts as long as the test wants. A new FileMessageStore on the same directory stands for the next boot.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import net, { type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type MqttClient, Store } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { afterAll, afterEach, describe, expect, test } from 'vitest'
import { FileMessageStore } from '../packages/mqtt-bootstrap/src/index.js'
import { KEEP_QUEUED } from '../packages/mqtt-bootstrap/src/store/message-store.js'
import { guardQueuedPublishes } from '../packages/mqtt-bootstrap/src/store/queued-publishes.js'
import { until } from './helpers/until.js'

const root = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-queue-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
let n = 0
const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** A broker that accepts every CONNECT and acknowledges publishes only once `release()` is called. */
async function slowBroker() {
  const received: string[] = []
  const held: Array<() => void> = []
  let released = false
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    const parser = mqttPacket.parser()
    parser.on('packet', (packet) => {
      if (packet.cmd === 'connect')
        socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }))
      if (packet.cmd !== 'publish') return
      received.push(String(packet.payload))
      const ack = () => socket.write(mqttPacket.generate({ cmd: 'puback', messageId: packet.messageId ?? 0 }))
      if (released) ack()
      else held.push(ack)
    })
    socket.on('data', (chunk) => parser.parse(chunk))
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as AddressInfo
  cleanups.push(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    url: `mqtt://127.0.0.1:${port}`,
    received,
    release: () => {
      released = true
      for (const ack of held.splice(0)) ack()
    },
    drop: () => {
      for (const socket of sockets) socket.destroy()
    },
  }
}

function client(url: string, store: FileMessageStore): MqttClient {
  const c = mqtt.connect(url, { ...store.clientOptions(), reconnectPeriod: 0, clientId: `queue-${n}` })
  c.on('error', () => {})
  cleanups.push(() => c.endAsync(true).then(() => undefined))
  return c
}

/** A directory whose store holds `count` messages published offline (`stored 1` …). */
async function storeHolding(count: number): Promise<string> {
  const dir = join(root, `device-${++n}`)
  const store = new FileMessageStore(dir)
  const offline = mqtt.connect('mqtt://127.0.0.1:1', { ...store.clientOptions(), reconnectPeriod: 0 })
  offline.on('error', () => {})
  for (let i = 1; i <= count; i++) offline.publish('q', `stored ${i}`, { qos: 1 })
  await offline.endAsync(true)
  return dir
}

/** A guarded client on a store holding `count` messages, its resend under way (the first resent, unacknowledged). */
async function resending(count: number) {
  const dir = await storeHolding(count)
  const broker = await slowBroker()
  const store = new FileMessageStore(dir)
  const c = client(broker.url, store)
  guardQueuedPublishes(c, store[KEEP_QUEUED])
  await until(() => broker.received.length === 1, 3000, 'the resend under way')
  return { dir, broker, store, c }
}

/** What a store's outgoing side holds, in order (PacketDir.packets(), beside mqtt.js's IStore). */
const held = (store: FileMessageStore) =>
  (store.outgoing as unknown as { packets(): Array<{ payload: string; messageId: number }> }).packets()

describe('publishes made while mqtt.js resends its store', () => {
  test('guarded: on disk before publish() returns; the next store on the directory sends them after the stored ones', async () => {
    const { dir, c } = await resending(3) // "stored 1" resent, not acknowledged
    for (let i = 1; i <= 5; i++) c.publish('q', `during ${i}`, { qos: 1 })
    expect((c as unknown as { _storeProcessingQueue: unknown[] })._storeProcessingQueue).toHaveLength(5)

    // The process dies here: a new store on the directory has them all, the resend's first, in order.
    const next = new FileMessageStore(dir)
    const payloads = held(next).map((p) => p.payload)
    expect(payloads).toEqual([
      'stored 1',
      'stored 2',
      'stored 3',
      'during 1',
      'during 2',
      'during 3',
      'during 4',
      'during 5',
    ])
    const ids = held(next).map((p) => p.messageId)
    expect(new Set(ids).size).toBe(8)
  })

  test('once mqtt.js has put them in its store, the queued records go; nothing is sent twice by the next boot', async () => {
    const { dir, broker, store, c } = await resending(2)
    const sent = [1, 2, 3].map((i) => c.publishAsync('q', `during ${i}`, { qos: 1 }))
    broker.release()
    await Promise.all(sent)
    expect(broker.received).toEqual(['stored 1', 'stored 2', 'during 1', 'during 2', 'during 3'])
    expect(store.pending).toBe(0)
    await store.sync() // the queued records go once their outgoing copies are synced (a kill before: a duplicate)
    expect(new FileMessageStore(dir).pending).toBe(0)
  })

  test('the connection closes during the resend: mqtt.js would drop them; they go to the store, and are sent later', async () => {
    const { dir, broker, store, c } = await resending(2)
    let settled: unknown
    c.publishAsync('q', 'with a callback', { qos: 1 }).then(
      () => (settled = 'acknowledged'),
      (error: Error) => (settled = error.message),
    )
    c.publish('q', 'without one', { qos: 1 })
    broker.drop()
    await until(() => store.pending === 4, 3000, 'both in the outgoing store, offline')
    expect(settled).toBeUndefined() // not failed: waiting for its PUBACK, as an offline publish does
    const payloads = held(store).map((p) => p.payload)
    expect(payloads).toEqual(['stored 1', 'stored 2', 'with a callback', 'without one'])
    await store.sync() // the queued records go once the outgoing copies are synced
    const next = new FileMessageStore(dir)
    expect(next.pending).toBe(4) // each once: no queued record adds a copy
  })

  test('unguarded (a raw mqtt.js client): they are in memory only, as mqtt.js has them', async () => {
    const dir = await storeHolding(1)
    const broker = await slowBroker()
    const store = new FileMessageStore(dir)
    const c = client(broker.url, store)
    await until(() => broker.received.length === 1, 3000, 'the resend under way')
    c.publish('q', 'during', { qos: 1 })
    expect(new FileMessageStore(dir).pending).toBe(1) // "stored 1" alone: what the guard is for
  })

  test("the guard keeps the stores on the app's own reconnect() (mqtt.js would swap in memory ones)", async () => {
    const dir = await storeHolding(0)
    const broker = await slowBroker()
    broker.release()
    const store = new FileMessageStore(dir)
    const c = client(broker.url, store)
    guardQueuedPublishes(c, store[KEEP_QUEUED])
    await until(() => c.connected, 3000, 'connected')
    c.reconnect()
    await until(() => c.connected, 3000, 'reconnected')
    expect(c.outgoingStore).toBe(store.outgoing)
    expect(c.outgoingStore).not.toBeInstanceOf(Store)
  })
})
