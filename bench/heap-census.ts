/**
 * `tsx bench/heap-census.ts`: what each connected client keeps on the heap, by kind of object (V8 heap snapshots
 * before and after connecting `HEAP_CENSUS_CLIENTS` (200) clients), for raw mqtt.js, connectProvisioned() and
 * connectProvisioned() with `reconnect: false`: the rows where ours differs from raw, bytes per client. Each kind in
 * a fresh process (--expose-gc), the broker in another (BROKER_AUTH=plain). Needs the build, like the other benches:
 * `TSX_TSCONFIG_PATH=bench/tsconfig.json tsx bench/heap-census.ts`.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeHeapSnapshot } from 'node:v8'
import mqtt, { type MqttClient } from 'mqtt'
import { connectProvisioned } from 'mqtt-bootstrap'
import { deviceName, deviceSecret, PRODUCT_KEY, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'

const KINDS = ['raw', 'ours', 'ours-no-session'] as const
type Census = Record<string, [count: number, bytes: number]>

const [kind, port] = process.argv.slice(2)
if (kind === undefined) {
  const broker = await startProcess('bench/broker-process.ts', { BROKER_AUTH: 'plain' })
  const census: Record<string, Census> = {}
  try {
    for (const k of KINDS) {
      const args = ['--expose-gc', '--import', 'tsx', 'bench/heap-census.ts', k, String(broker.port)]
      census[k] = JSON.parse(execFileSync(process.execPath, args, { encoding: 'utf8', env: process.env }))
    }
  } finally {
    await broker.stop()
  }
  const [raw, ours, noSession] = KINDS.map((k) => census[k] ?? {})
  const total = (c: Census = {}) => Object.values(c).reduce((n, [, bytes]) => n + bytes, 0)
  console.log(
    `snapshot bytes per client: raw ${total(raw).toFixed(0)}, ours ${total(ours).toFixed(0)}, no session ${total(noSession).toFixed(0)}`,
  )
  const names = new Set([...Object.keys(raw ?? {}), ...Object.keys(ours ?? {})])
  const rows = [...names]
    .map((name) => ({
      name,
      raw: raw?.[name] ?? [0, 0],
      ours: ours?.[name] ?? [0, 0],
      noSession: noSession?.[name] ?? [0, 0],
    }))
    .map((row) => ({ ...row, delta: row.ours[1] - row.raw[1] }))
    .filter((row) => Math.abs(row.delta) >= 16)
    .sort((a, b) => b.delta - a.delta)
  const cell = ([count, bytes]: [number, number]) =>
    `${count.toFixed(1).padStart(5)} × ${bytes.toFixed(0).padStart(5)} B`
  console.log('ours − raw   object (count × bytes per client: raw | ours | no session)')
  for (const row of rows.slice(0, 30)) {
    console.log(
      `${row.delta.toFixed(0).padStart(6)} B   ${row.name.padEnd(44)} ${cell(row.raw)} | ${cell(row.ours)} | ${cell(row.noSession)}`,
    )
  }
  process.exit(0)
}

const clients = Number(process.env.HEAP_CENSUS_CLIENTS ?? 200)
const host = `127.0.0.1:${port}`
const gc = globalThis.gc as () => void

async function connect(i: number): Promise<MqttClient> {
  const name = deviceName(i)
  if (kind === 'raw') {
    const credentials = { clientId: `${PRODUCT_KEY}.${name}`, username: name, password: deviceSecret(name) }
    return mqtt.connectAsync(`mqtt://${host}`, { ...credentials, reconnectPeriod: 1000 })
  }
  const { cache, data } = await warmCache(name, host)
  const session = kind === 'ours-no-session' ? { reconnect: false as const } : {}
  return connectProvisioned({ url, data, cache, auth: 'plain', broker: { protocol: 'mqtt' }, ...session })
}

/** Objects on the heap by type and constructor (strings together): count and self bytes. */
function census(): Census {
  gc()
  const file = writeHeapSnapshot(join(tmpdir(), `heap-census-${process.pid}.heapsnapshot`))
  const snapshot = JSON.parse(readFileSync(file, 'utf8'))
  rmSync(file)
  const fields: string[] = snapshot.snapshot.meta.node_fields
  const types: string[] = snapshot.snapshot.meta.node_types[0]
  const [type, name, size] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [number, number, number]
  const counts: Census = {}
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    const t = types[snapshot.nodes[i + type]] as string
    const key = t.includes('string') ? t : `${t}:${String(snapshot.strings[snapshot.nodes[i + name]]).slice(0, 40)}`
    const [count, bytes] = counts[key] ?? [0, 0]
    counts[key] = [count + 1, bytes + snapshot.nodes[i + size]]
  }
  return counts
}

for (const client of await Promise.all(Array.from({ length: 20 }, (_, i) => connect(100_000 + i)))) {
  await client.endAsync(true)
}
const before = census()
const connected = await Promise.all(Array.from({ length: clients }, (_, i) => connect(i)))
const after = census()
const perClient: Census = {}
for (const [key, [count, bytes]] of Object.entries(after)) {
  const [count0, bytes0] = before[key] ?? [0, 0]
  if (bytes !== bytes0) perClient[key] = [(count - count0) / clients, (bytes - bytes0) / clients]
}
writeSync(1, JSON.stringify(perClient)) // whole before the exit below (a pipe's write would be cut)
await Promise.all(connected.map((client) => client.endAsync(true)))
process.exit(0)
