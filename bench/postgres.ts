/**
 * The registry at fleet scale (issue 16), from the build, on loopback only: claims per second and claim latency
 * (p50/p99) at 100,000 registered identities, side by side in one run:
 * - `json`: the JSON registry (a file of 100,000 devices, its group key declared), one server process;
 * - `one`: the PostgreSQL registry (100,000 triplets imported, 100,000 identities on the allow-list), one process;
 * - `two`: the same database behind two server processes, each claim to one of them in turn.
 * Each as first claims (an identity never served: an assignment from the pool in PostgreSQL) and as re-claims (an
 * identity served before). The load generator is a process of its own (bench/postgres-process.ts): CONCURRENCY
 * claims in flight over keep-alive HTTPS, a batch of a fixed count per sample, every variant once per round in a
 * random order. Around each batch the CPU of every process (the servers, PostgreSQL's, the load generator's) is read
 * from /proc/<pid>/stat, and the machine's from /proc/stat: where a claim's CPU goes, and what limits the rate.
 */
import { randomBytes, randomInt } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PostgresRegistry } from 'mqtt-bootstrap-server'
import { generateCertificates } from '../packages/mqtt-bootstrap-server/src/cli/certificates.js'
import { postgresSkipReason, startPostgres } from '../test/helpers/postgres.js'
import { type ServerProcess, startProcess } from './lib/processes.js'
import { paired, percentile, round, rounds } from './lib/stats.js'

const VARIANTS = ['json-first', 'json-reclaim', 'one-first', 'one-reclaim', 'two-first', 'two-reclaim'] as const
type Variant = (typeof VARIANTS)[number]

export interface PostgresRow {
  /** Median over the rounds of claims / batch time. */
  claimsPerSecond: number
  /** Over every measured claim of the variant. */
  p50Ms: number
  p99Ms: number
  claims: number
  /** CPU per claim, µs (medians over the rounds): the server processes, PostgreSQL's, the load generator, others. */
  cpuUs: { servers: number; postgres: number; load: number; other: number }
  /** How busy the machine was during the batches (median): 100 when every core was. */
  busyPercent: number
}

export interface PostgresBench {
  identities: number
  batch: number
  rounds: number
  concurrency: number
  /** The stores the PostgreSQL registry used (its nonces and claim log: in memory or in PostgreSQL). */
  stores: Record<string, string>
  rows: Record<Variant, PostgresRow>
  /** Two processes' claims per second over one's: medians', and the quartiles of the rounds' own ratios. */
  twoOverOne: Record<'first' | 'reclaim', ReturnType<typeof paired>>
  /** Answers other than "00000" and failures, summed over every batch (warm-up included); none expected. */
  failures: Record<string, number>
}

const imei = (n: number) => `86${String(n).padStart(13, '0')}`
const HOST = 'mqtts://broker.example:8883'

interface BatchResult {
  ms: number
  latencies: number[]
  failures: Record<string, number>
  error?: string
}

export async function benchPostgres({
  identities = 100_000,
  batch = 1000,
  count = 8,
  concurrency = 32,
} = {}): Promise<PostgresBench | { skipped: string }> {
  // Missing PostgreSQL: a row saying so (in CI the reason is an error: it is said too).
  const skipped = await Promise.resolve()
    .then(postgresSkipReason)
    .catch((error: Error) => error.message)
  if (skipped !== undefined) return { skipped }
  const [db, dir] = await Promise.all([startPostgres(), mkdtemp(join(tmpdir(), 'mqtt-bootstrap-bench-pg-'))])
  const processes: ServerProcess[] = []
  try {
    const setup = await prepare(dir, await db.database(), identities)
    const start = async (env: Record<string, string>) => {
      processes.push(await startProcess('bench/postgres-process.ts', { ...setup.env, ...env }))
      return processes.at(-1) as ServerProcess
    }
    const json = await start({ ROLE: 'json', REGISTRY: setup.registryFile })
    const a = await start({ ROLE: 'postgres' })
    const b = await start({ ROLE: 'postgres' })
    const load = await start({ ROLE: 'load', CONCURRENCY: String(concurrency) })
    const cpu = cpuSampler({ servers: [json, a, b], load, postmaster: setup.postmaster })
    const servers = { json: [json], one: [a], two: [a, b] }
    const { rows, failures, measured } = await measure({ servers, load, cpu, imeis: setup.imeis, batch, count })
    let told = 0
    for (const server of [json, a, b]) told += (await server.ask<{ failures: number }>('failures')).failures
    return {
      identities,
      batch,
      rounds: count,
      concurrency,
      stores: await a.ask<Record<string, string>>('stores'),
      rows,
      // Batch times: one's over two's is two's rate over one's, round by round.
      twoOverOne: {
        first: paired(measured['one-first'], measured['two-first']),
        reclaim: paired(measured['one-reclaim'], measured['two-reclaim']),
      },
      failures: told === 0 ? failures : { ...failures, 'told to onError': told },
    }
  } finally {
    for (const p of processes.reverse()) await p.stop().catch(() => {})
    await db.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

type Kind = 'json' | 'one' | 'two'

/** Every variant once per round in a random order (bench/lib/stats.ts), after a warm-up round; a batch each. */
async function measure(o: {
  servers: Record<Kind, ServerProcess[]>
  load: ServerProcess
  cpu: ReturnType<typeof cpuSampler>
  imeis: string[]
  batch: number
  count: number
}) {
  const { batch } = o
  const failures: Record<string, number> = {}
  const send = async (servers: ServerProcess[], imeis: string[]) => {
    const urls = servers.map((p) => `https://127.0.0.1:${p.port}/bootstrap`)
    const result = await o.load.ask<BatchResult>(JSON.stringify({ urls, imeis }))
    if (result.error !== undefined) throw new Error(`the load generator failed: ${result.error}`)
    for (const [what, n] of Object.entries(result.failures)) failures[what] = (failures[what] ?? 0) + n
    return result
  }
  // First claims take identities never served, from a cursor per registry (the two PostgreSQL rows share one);
  // re-claims, identities served before, drawn at random.
  const cursor = { json: 0, pg: 0 }
  const served: Record<'json' | 'pg', string[]> = { json: [], pg: [] }
  const take = (kind: Kind, first: boolean): string[] => {
    const registry = kind === 'json' ? 'json' : 'pg'
    const pool = served[registry]
    if (!first) return Array.from({ length: batch }, () => pool[randomInt(pool.length)] as string)
    const ids = o.imeis.slice(cursor[registry], cursor[registry] + batch)
    if (ids.length < batch) throw new Error(`fewer than ${batch} identities left for first claims`)
    cursor[registry] += batch
    pool.push(...ids)
    return ids
  }
  // Unmeasured: connections opened, code warm, and identities served for the first re-claims.
  for (const kind of ['json', 'one', 'two'] as const) await send(o.servers[kind], take(kind, true))
  const samples = Object.fromEntries(VARIANTS.map((v) => [v, [] as Sample[]])) as Record<Variant, Sample[]>
  const variant = (name: Variant) => async () => {
    const [kind, phase] = name.split('-') as [Kind, string]
    const ids = take(kind, phase === 'first')
    const before = o.cpu.read()
    const result = await send(o.servers[kind], ids)
    samples[name].push({ ...result, cpu: o.cpu.since(before, o.servers[kind]) })
    return result.ms
  }
  const variants = Object.fromEntries(VARIANTS.map((v) => [v, variant(v)])) as Record<Variant, () => Promise<number>>
  const measured = await rounds(variants, { iterations: o.count, warmup: 1, maxMs: 240_000 })
  // The warm-up round's samples come first: left out.
  const rows = Object.fromEntries(
    VARIANTS.map((v) => [v, summarise(samples[v].slice(-measured[v].length), batch)]),
  ) as Record<Variant, PostgresRow>
  return { rows, failures, measured }
}

/** The registry file, the database (migrated, configured, the pool imported, the allow-list), the processes' env. */
async function prepare(dir: string, database: string, identities: number) {
  const groupKey = randomBytes(64).toString('base64')
  const keyFile = join(dir, 'group.key')
  writeFileSync(keyFile, `${groupKey}\n`, { mode: 0o600 })
  const tls = await generateCertificates(['127.0.0.1'])
  const imeis = Array.from({ length: identities }, (_, i) => imei(i))
  const device = (i: number) => ({ productKey: 'a1BenchPK', deviceName: `meter-${i}`, deviceSecret: `secret-${i}` })
  const triplets = imeis.map((_, i) => device(i))
  const registryFile = join(dir, 'devices.json')
  const devices = imeis.map((id, i) => ({ match: { imei: id }, device: device(i) }))
  const file = { version: 1, attestation: { groupKeyFile: 'group.key', identity: 'imei' } }
  writeFileSync(registryFile, JSON.stringify({ ...file, defaults: { connect: { host: HOST } }, devices }))
  const registry = await PostgresRegistry.open({ connectionString: database })
  let postmaster = 0
  try {
    await registry.migrate()
    await registry.configure({ attestation: { groupKeyFile: keyFile }, connect: { host: HOST } })
    await registry.importTriplets(triplets)
    await registry.allow(imeis)
    // As the database would be after a while: statistics known, nothing for autovacuum to do in the middle of a row.
    await registry.pool.query('VACUUM ANALYZE')
    await registry.pool.query('CHECKPOINT')
    // A backend's parent: every process of the cluster is a child of it.
    const { rows } = await registry.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    postmaster = ticksOf(rows[0]?.pid ?? 0).ppid
  } finally {
    await registry.close()
  }
  const env = { TLS_CERT: tls.cert, TLS_KEY: tls.key, TLS_CA: tls.ca, DATABASE: database, GROUP_KEY: groupKey }
  if (postmaster <= 1) throw new Error('no postmaster found above the PostgreSQL backend')
  return { imeis, registryFile, env, postmaster }
}

const PARTS = ['servers', 'postgres', 'load', 'other'] as const
type Cpu = { servers: number; postgres: number; load: number; other: number; busy: number; wallTicks: number }
type Sample = BatchResult & { cpu: Cpu }

function summarise(samples: Sample[], batch: number): PostgresRow {
  const all = samples.flatMap((s) => s.latencies)
  const med = (values: number[]) => percentile(values, 50)
  const perClaim = (pick: (c: Cpu) => number) => round(med(samples.map((s) => (pick(s.cpu) * 10_000) / batch)), 0)
  return {
    claimsPerSecond: round(med(samples.map((s) => (batch / s.ms) * 1000)), 0),
    p50Ms: round(percentile(all, 50), 2),
    p99Ms: round(percentile(all, 99), 2),
    claims: all.length,
    cpuUs: Object.fromEntries(PARTS.map((part) => [part, perClaim((c) => c[part])])) as PostgresRow['cpuUs'],
    busyPercent: round(med(samples.map((s) => (100 * s.cpu.busy) / s.cpu.wallTicks)), 0),
  }
}

/** utime + stime of a process, in clock ticks (1/100 s), or 0 once it is gone. */
function ticksOf(pid: number): { ticks: number; ppid: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { ticks: Number(fields[11]) + Number(fields[12]), ppid: Number(fields[1]) }
  } catch {
    return { ticks: 0, ppid: 0 }
  }
}

/** The CPU of the bench's processes and PostgreSQL's (its postmaster, and every child of it). */
function cpuSampler(o: { servers: ServerProcess[]; load: ServerProcess; postmaster: number }) {
  const pids = () => readdirSync('/proc').flatMap((name) => (/^\d+$/.test(name) ? [Number(name)] : []))
  const { postmaster } = o
  const machine = () => {
    const [, ...values] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/)
    const n = values.map(Number)
    const idle = (n[3] ?? 0) + (n[4] ?? 0)
    return { busy: n.reduce((sum, v) => sum + v, 0) - idle, total: n.reduce((sum, v) => sum + v, 0) }
  }
  const read = () => {
    const postgres = new Map<number, number>([[postmaster, ticksOf(postmaster).ticks]])
    for (const pid of pids()) {
      const { ticks, ppid } = ticksOf(pid)
      if (ppid === postmaster) postgres.set(pid, ticks)
    }
    const servers = new Map(o.servers.map((s) => [s.child.pid as number, ticksOf(s.child.pid as number).ticks]))
    return { postgres, servers, load: ticksOf(o.load.child.pid as number).ticks, machine: machine() }
  }
  type Reading = ReturnType<typeof read>
  const since = (before: Reading, used: ServerProcess[]): Cpu => {
    const after = read()
    const delta = (a: Map<number, number>, b: Map<number, number>, keep = (_pid: number) => true) =>
      [...a].filter(([pid]) => keep(pid)).reduce((sum, [pid, ticks]) => sum + ticks - (b.get(pid) ?? 0), 0)
    const usedPids = new Set(used.map((s) => s.child.pid))
    const servers = delta(after.servers, before.servers, (pid) => usedPids.has(pid))
    const idleServers = delta(after.servers, before.servers, (pid) => !usedPids.has(pid))
    const postgres = delta(after.postgres, before.postgres)
    const load = after.load - before.load
    const busy = after.machine.busy - before.machine.busy
    // Clock ticks of all cores over the batch: /proc/stat counts each core's, so 2 cores give 2 ticks per tick.
    const wallTicks = after.machine.total - before.machine.total
    return { servers, postgres, load, other: busy - servers - idleServers - postgres - load, busy, wallTicks }
  }
  return { read, since }
}

/** The bench table's rows. */
export function postgresRows(bench: PostgresBench | { skipped: string }): string[][] {
  if ('skipped' in bench) return [[`PostgreSQL registry: skipped (${bench.skipped})`, '', '', '', '']]
  const { rows } = bench
  const { first, reclaim } = bench.twoOverOne
  const shown = (v: Variant) => `${rows[v].claimsPerSecond}/s (p50 ${rows[v].p50Ms}, p99 ${rows[v].p99Ms} ms)`
  // Two processes against one: the target, and the spread of the rounds' own ratios.
  const row = (label: string, a: Variant, b: Variant, two?: { pairedP25: number; pairedP75: number }) => [
    label,
    shown(a),
    shown(b),
    `${round(rows[a].claimsPerSecond / rows[b].claimsPerSecond)}${two ? ` (rounds ${two.pairedP25}–${two.pairedP75})` : ''}`,
    two ? '>= 1.6' : '',
  ]
  const n = `${bench.identities.toLocaleString('en')} identities`
  const table = [
    row(`PostgreSQL, 2 processes vs 1, first claims (assignments), ${n}`, 'two-first', 'one-first', first),
    row('PostgreSQL, 2 processes vs 1, re-claims', 'two-reclaim', 'one-reclaim', reclaim),
    row(`PostgreSQL (1 process) vs the JSON registry, first claims, ${n}`, 'one-first', 'json-first'),
    row('PostgreSQL (1 process) vs the JSON registry, re-claims', 'one-reclaim', 'json-reclaim'),
  ]
  for (const v of VARIANTS) {
    const { servers, postgres, load, other } = rows[v].cpuUs
    const label = `  CPU per claim, ${v}: servers / PostgreSQL / load / others (machine ${rows[v].busyPercent} % busy)`
    table.push([label, `${servers} / ${postgres} / ${load} / ${other} µs`, '', '', ''])
  }
  const failed = Object.entries(bench.failures).map(([what, n]) => `${what} ×${n}`)
  if (failed.length > 0) table.push([`  not "00000": ${failed.join(', ')}`, '', '', '', ''])
  return table
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await benchPostgres(), null, 2))
}
