/**
 * `npm run bench`: every comparison of docs/performance.md, against the build (dist/), on loopback only, each
 * bounded in iterations and time. Prints a table and writes bench/results/latest.json and bench/results/fleet.svg.
 *
 *   BENCH_ITERATIONS (300)  A/B iterations per comparison
 *   BENCH_FLEET (1000,2000,5000,10000)  fleet sizes
 *   BENCH_ONLY (all)  a comma-separated subset of cached, boot, dps, footprint, fleet, registry, claims, postgres,
 *                     certificates, store:
 *                     the others are kept from the last results (bench/results/latest.json), so the table stays whole
 *   BENCH_PAIRS (400)  rounds of the cached section (issue 13's figures: bench/cached.ts)
 *   BENCH_PROFILE (1)  0 leaves the cached boot's CPU profile out
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { cpus } from 'node:os'
import { benchBoot } from './boot.js'
import { benchCached, cachedRows, profileReport } from './cached.js'
import { benchCertificates, certificatesRows } from './certificates.js'
import { benchClaims, claimsRows } from './claims.js'
import { benchDps } from './dps.js'
import { benchFleet, jitterFor } from './fleet.js'
import { footprint } from './footprint.js'
import { fleetChart } from './lib/chart.js'
import { startProcess } from './lib/processes.js'
import { type AB, median, round } from './lib/stats.js'
import { benchMessageStore, messageStoreRows } from './message-store.js'
import { benchPostgres, postgresRows } from './postgres.js'
import { benchRegistry } from './registry.js'

const iterations = Number(process.env.BENCH_ITERATIONS ?? 300)
const sizes = (process.env.BENCH_FLEET ?? '1000,2000,5000,10000').split(',').map(Number)
const started = Date.now()
const log = (text: string) => console.log(`[${((Date.now() - started) / 1000).toFixed(0)} s] ${text}`)

const summary = (ab: AB) => ({
  oursMedianMs: round(median(ab.a)),
  baselineMedianMs: round(median(ab.b)),
  ratio: round(ab.ratio),
  iterations: ab.a.length,
})

const only = new Set(
  (process.env.BENCH_ONLY ?? 'cached,boot,dps,footprint,fleet,registry,claims,postgres,certificates,store').split(','),
)
const previous = await readFile('bench/results/latest.json', 'utf8').then(JSON.parse, () => ({}))

async function part<T>(name: string, title: string, run: () => Promise<T>): Promise<T> {
  if (!only.has(name) && previous[name] !== undefined) return previous[name] as T
  log(title)
  return run()
}

const cached = await part('cached', 'cached boot: new bootstrap per call, plain auth, in-process aedes over TCP', () =>
  benchCached(Number(process.env.BENCH_PAIRS ?? 400), { profile: process.env.BENCH_PROFILE !== '0' }),
)
const boot = await part('boot', 'boot: cached (memory, file) and cold, MQTT over TCP and TLS', async () => {
  const runs = { tcp: await benchBoot(iterations, 'tcp'), tls: await benchBoot(iterations, 'tls') }
  return Object.fromEntries(
    Object.entries(runs).map(([transport, r]) => [
      transport,
      { cachedMemory: summary(r.cachedMemory), cachedFile: summary(r.cachedFile), cold: summary(r.cold) },
    ]),
  )
})
const dps = await part('dps', 'DPS comparison', async () => {
  const r = await benchDps(Math.min(iterations, 100))
  return { bestCase: summary(r.bestCase), defaultPolling: summary(r.defaultPolling) }
})
const size = await part('footprint', 'footprint', async () => {
  const broker = await startProcess('bench/broker-process.ts')
  try {
    return footprint(broker.port)
  } finally {
    await broker.stop()
  }
})
const fleet = await part('fleet', `fleet power-on: ${sizes.join(', ')} devices`, async () => {
  const runs = await benchFleet(sizes)
  await mkdir('bench/results', { recursive: true })
  await writeFile('bench/results/fleet.svg', fleetChart(runs))
  return runs.map(({ connectedOverTime: _c, requestsOverTime: _r, ...run }) => ({
    ...run,
    jitterMs: run.kind === 'jitter-on' ? jitterFor(run.devices) : 0,
  }))
})

const registry = await part('registry', 'device registry: 100,000 entries, index vs scan, reload', () =>
  benchRegistry(),
)

const claims = await part('claims', 'signed claims: CPU per request, device and server; the enumeration attack', () =>
  benchClaims(),
)

const postgres = await part(
  'postgres',
  'PostgreSQL registry: claims/s and latency, JSON vs PostgreSQL with 1 and 2 server processes, 100,000 identities',
  () => benchPostgres(),
)

const certificates = await part(
  'certificates',
  'certificates: first boot (key, CSR, issue, mutual TLS) and cached boot, against a raw mutual-TLS connect',
  async () => {
    const r = await benchCertificates(Math.min(iterations, 200))
    return { ...r, firstBoot: summary(r.firstBoot), cachedBoot: summary(r.cachedBoot) }
  },
)

const store = await part(
  'store',
  'durable message store: QoS 1 publish rate vs in-memory, opening 10,000 pending messages',
  () => benchMessageStore(),
)

const results = {
  date: new Date().toISOString(),
  machine: { node: process.version, cpus: cpus().length, model: cpus()[0]?.model },
  cached,
  boot,
  dps,
  footprint: size,
  fleet,
  registry,
  claims,
  postgres,
  certificates,
  store,
}
await mkdir('bench/results', { recursive: true })
await writeFile('bench/results/latest.json', `${JSON.stringify(results, null, 2)}\n`)

const rows: string[][] = [['comparison', 'mqtt-bootstrap', 'baseline', 'ratio', 'target']]
if (cached !== undefined) rows.push(...cachedRows(cached))
/** A row for one A/B comparison, as summary() gives it. */
const abRow = (label: string, ab: ReturnType<typeof summary>, target = '') => [
  label,
  `${ab.oursMedianMs} ms`,
  `${ab.baselineMedianMs} ms`,
  `${ab.ratio}`,
  target,
]
for (const [transport, r] of Object.entries(results.boot)) {
  // Aliyun signing, broker in its own process, one bootstrap options object reused: issue 13's targets are the
  // cached section's rows above.
  rows.push(abRow(`cached boot, memory store (aliyun, MQTT ${transport})`, r.cachedMemory))
  rows.push(abRow(`cached boot, file store (aliyun, MQTT ${transport})`, r.cachedFile))
  rows.push(abRow(`cold boot (MQTT ${transport})`, r.cold, '<= 1.10'))
}
rows.push(abRow('credentials in hand vs Azure DPS, Retry-After: 0', results.dps.bestCase))
rows.push(abRow('credentials in hand vs Azure DPS, SDK default polling', results.dps.defaultPolling))
rows.push([
  'import beyond import("mqtt")',
  `${size.importExtraMs} ms`,
  `${size.importMqttMs} ms`,
  `${size.importRatio}`,
  '<= 0.10',
])
if (size.breakdown !== undefined) {
  const { eventemitter3ImportMs, eventemitter3RequireMs, cryptoMs } = size.breakdown
  rows.push([
    '  after mqtt: eventemitter3 imported / required; node:crypto',
    `${eventemitter3ImportMs} / ${eventemitter3RequireMs} ms; ${cryptoMs} ms`,
    '',
    '',
    '',
  ])
}
rows.push([
  'heap per connected client',
  `${size.heapPerClientOurs} B`,
  `${size.heapPerClientRaw} B`,
  `${round(size.heapPerClientOurs / size.heapPerClientRaw)}`,
  '',
])
rows.push([
  'device entry (dist/index.mjs + chunks)',
  `${size.entryBytes} B (${size.entryGzipBytes} B gzip)`,
  '',
  '',
  '',
])
for (const n of sizes) {
  const raw = results.fleet.find((run) => run.devices === n && run.kind === 'raw')
  const handRolled = results.fleet.find((run) => run.devices === n && run.kind === 'hand-rolled')
  for (const run of results.fleet.filter((r) => r.devices === n && r.kind !== 'raw')) {
    // The library's own share: against the same fleet provisioning by hand (no cache, validation or jitter).
    const vsHand =
      run.kind === 'hand-rolled' || handRolled === undefined
        ? ''
        : `, ${round(run.totalMs / handRolled.totalMs)}x hand-rolled`
    rows.push([
      `fleet ${n}, ${run.kind} (p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms, lost ${run.lost}, peak ${run.peakRps} req/s${vsHand})`,
      `${run.totalMs} ms`,
      `${raw?.totalMs} ms`,
      `${round(run.totalMs / (raw?.totalMs ?? Number.NaN))}`,
      run.kind === 'hand-rolled' ? '' : n === 10_000 ? '<= 1.5, lost 0' : 'lost 0',
    ])
  }
}
if (registry !== undefined) {
  const { entries, lookup, reloadMedianMs } = registry
  rows.push([
    `registry lookup, ${entries} entries (index vs scan)`,
    `${lookup.oursMedianMs} ms`,
    `${lookup.baselineMedianMs} ms`,
    `${lookup.ratio}`,
    '< 0.1 ms',
  ])
  rows.push([`registry reload, ${entries} entries`, `${reloadMedianMs} ms`, '', '', ''])
}
if (claims !== undefined) rows.push(...claimsRows(claims))
if (postgres !== undefined) rows.push(...postgresRows(postgres))
if (certificates !== undefined) rows.push(...certificatesRows(certificates))
if (store !== undefined) rows.push(...messageStoreRows(store))
const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length))) ?? []
console.log(`\n${rows.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ')).join('\n')}`)
if (cached?.profile !== undefined && only.has('cached')) console.log(`\n${profileReport(cached.profile)}`)
log('wrote bench/results/latest.json and bench/results/fleet.svg')
process.exit(0)
