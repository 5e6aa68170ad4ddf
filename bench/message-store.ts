/**
 * The durable message store (issue 20), side by side with mqtt.js's in-memory store in one run:
 *
 * - Sustained QoS 1 publish rate: one connected mqtt.js client per store against aedes in its own process, each round
 *   publishing MESSAGES messages of 100 bytes with at most WINDOW unacknowledged, in a random order of variants per
 *   round (bench/lib/stats.ts `rounds`). Variants: mqtt.js's in-memory Store, FileMessageStore with the default
 *   syncMs, and with syncMs 0 (an fsync batch after every change). Medians of messages per second, and the paired ratio.
 * - Boot cost: opening a store that holds 10,000 pending messages (reading and checking every file) against an empty
 *   one, as the first use after a restart does; medians over OPENS opens.
 *
 * `BENCH_ONLY=store npm run bench` (the other sections are kept from bench/results/latest.json).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt, { type IClientOptions, type MqttClient, Store } from 'mqtt'
import { FileMessageStore } from 'mqtt-bootstrap'
import { deviceName, signedFor } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'
import { median, paired, round, rounds } from './lib/stats.js'

const MESSAGES = 2000
const WINDOW = 64
const PENDING = 10_000
const OPENS = 7
const PAYLOAD = Buffer.alloc(100, 'x')

/** Publish `count` QoS 1 messages, at most `window` awaiting their PUBACK; the elapsed ms. */
async function publishBurst(client: MqttClient, count: number, window: number): Promise<number> {
  const started = performance.now()
  let sent = 0
  const worker = async () => {
    while (sent < count) {
      sent++
      await client.publishAsync('bench/store', PAYLOAD, { qos: 1 })
    }
  }
  await Promise.all(Array.from({ length: window }, worker))
  return performance.now() - started
}

async function openTime(dir: string): Promise<number> {
  const started = performance.now()
  const pending = new FileMessageStore(dir).pending // the first use reads the directory
  const ms = performance.now() - started
  if (pending < 0) throw new Error('unreachable')
  return ms
}

export async function benchMessageStore(iterations = 15) {
  const broker = await startProcess('bench/broker-process.ts')
  const root = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-bench-store-'))
  const clients: MqttClient[] = []
  try {
    const host = `127.0.0.1:${broker.port}`
    const connect = async (index: number, options: IClientOptions) => {
      const client = await mqtt.connectAsync(`mqtt://${host}`, {
        ...signedFor(deviceName(index)),
        reconnectPeriod: 0,
        ...options,
      })
      clients.push(client)
      return client
    }
    const memory = await connect(1, { outgoingStore: new Store(), incomingStore: new Store() })
    const file = await connect(2, new FileMessageStore(join(root, 'default')).clientOptions())
    const fileSync0 = await connect(3, new FileMessageStore(join(root, 'sync0'), { syncMs: 0 }).clientOptions())
    const ms = await rounds(
      {
        memory: () => publishBurst(memory, MESSAGES, WINDOW),
        file: () => publishBurst(file, MESSAGES, WINDOW),
        fileSync0: () => publishBurst(fileSync0, MESSAGES, WINDOW),
      },
      { iterations, warmup: 2, maxMs: 180_000 },
    )
    const rate = (samples: number[]) => round((MESSAGES * 1000) / median(samples), 0)
    // paired(a, b) is median(a)/median(b) of times: the rate ratio is its inverse.
    const ratioOf = (samples: number[]) => round(1 / paired(samples, ms.memory).ratio, 2)

    // 10,000 pending: put while offline (no broker), as a device that lost its network would.
    const full = join(root, 'pending')
    const offline = new FileMessageStore(full)
    for (let id = 1; id <= PENDING; id++) {
      const packet = { cmd: 'publish', messageId: id, qos: 1, dup: false, retain: false, topic: 'bench/store' } as const
      offline.outgoing.put({ ...packet, payload: PAYLOAD }, () => {})
    }
    await offline.sync()
    const empty = join(root, 'empty')
    await openTime(empty)
    const opens = { pending: [] as number[], empty: [] as number[] }
    for (let i = 0; i < OPENS; i++) {
      opens.pending.push(await openTime(full))
      opens.empty.push(await openTime(empty))
    }
    return {
      messages: MESSAGES,
      window: WINDOW,
      payloadBytes: PAYLOAD.length,
      rounds: ms.memory.length,
      memoryPerSecond: rate(ms.memory),
      filePerSecond: rate(ms.file),
      fileSync0PerSecond: rate(ms.fileSync0),
      fileRatio: ratioOf(ms.file),
      fileSync0Ratio: ratioOf(ms.fileSync0),
      openPendingMs: round(median(opens.pending), 1),
      openEmptyMs: round(median(opens.empty), 2),
      pending: PENDING,
    }
  } finally {
    await Promise.all(clients.map((client) => client.endAsync(true)))
    await broker.stop()
    await rm(root, { recursive: true, force: true })
  }
}

export type MessageStoreResults = Awaited<ReturnType<typeof benchMessageStore>>

export function messageStoreRows(r: MessageStoreResults): string[][] {
  const per = (n: number) => `${n} msg/s`
  return [
    [
      'QoS 1 publish rate, FileMessageStore (syncMs 200) vs in-memory',
      per(r.filePerSecond),
      per(r.memoryPerSecond),
      `${r.fileRatio}`,
      '>= 0.5',
    ],
    [
      'QoS 1 publish rate, FileMessageStore (syncMs 0) vs in-memory',
      per(r.fileSync0PerSecond),
      per(r.memoryPerSecond),
      `${r.fileSync0Ratio}`,
      '',
    ],
    [
      `opening a store of ${r.pending} pending messages vs an empty one`,
      `${r.openPendingMs} ms`,
      `${r.openEmptyMs} ms`,
      '',
      '',
    ],
  ]
}
