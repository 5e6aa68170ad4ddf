/**
 * The cached boot, as issue 13 measures it: the build (dist/), a warm cache, `auth: 'plain'`, MQTT over plain TCP to
 * an aedes in this process on 127.0.0.1, rounds of interleaved runs (a new random order each round), medians and
 * quartiles. Every boot of ours makes a new bootstrap (connectProvisioned with a new options object), as an app's
 * process does once. Rows:
 *
 * - connectProvisioned() with the session (the default) and with `reconnect: false`, against raw mqtt.connectAsync()
 *   with the same plain credentials in hand;
 * - the same boot from a FileCredentialStore (a new store per boot over one temp file) against the memory store;
 * - createBootstrap() alone (µs per call, the median of batches);
 * - process CPU per boot (ours vs raw, the broker's share in both), steadier than wall time on a shared machine;
 * - heap per connected client, each kind in fresh processes against a broker in its own (bench/heap-process.ts);
 * - the CPU profile of the cached boot, charged to our functions (bench/lib/cpu-profile.ts), beside a raw loop's.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import {
  type BootstrapOptions,
  type CredentialStore,
  connectProvisioned,
  createBootstrap,
  credentialKey,
  FileCredentialStore,
} from 'mqtt-bootstrap'
import { startInProcessBroker } from './lib/aedes.js'
import { type Attribution, attribute, type CpuProfile, frameLines, profileRuns } from './lib/cpu-profile.js'
import { deviceName, deviceSecret, PRODUCT_KEY, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'
import { median, paired, round, rounds, type Spread, spread } from './lib/stats.js'

export interface CachedResults {
  /** Where 'mqtt-bootstrap' resolved: the build, not src. */
  entry: string
  rounds: number
  /** Wall time per boot, ms; createUs: µs of one createBootstrap() call per round, createHotUs: of a batch of 50. */
  times: { raw: Spread; ours: Spread; oursNoSession: Spread; file: Spread; createUs: Spread; createHotUs: Spread }
  ratios: {
    oursVsRaw: ReturnType<typeof paired>
    noSessionVsRaw: ReturnType<typeof paired>
    fileVsMemory: ReturnType<typeof paired>
  }
  /** The first and second createBootstrap() of a fresh process, µs (medians over processes). */
  createFreshProcessUs: { firstUs: number; secondUs: number }
  /** Process CPU per boot, µs (median of batches), broker included in both. */
  cpuUs: { ours: number; raw: number }
  heap: HeapResult
  profile?: { ours: Attribution; raw: Attribution }
}

export interface HeapResult {
  clients: number
  /** Bytes per connected client: median over fresh processes, and each process's figure. */
  raw: number
  ours: number
  oursNoSession: number
  /** The bench's warm cache per client, which `ours` holds and raw does not (the app's data, not the library's). */
  stores: number
  ratio: number
  runs: { raw: number[]; ours: number[]; oursNoSession: number[]; stores: number[] }
}

const name = deviceName(1)
/** What a raw app holds: the plain CONNECT fields. */
const plainCredentials = { clientId: `${PRODUCT_KEY}.${name}`, username: name, password: deviceSecret(name) }

/** A new options object per boot, as a new process makes it. */
const optionsFor = (cache: CredentialStore, more: Partial<BootstrapOptions> = {}): BootstrapOptions => ({
  url,
  data: { imei: name },
  cache,
  auth: 'plain',
  broker: { protocol: 'mqtt' },
  ...more,
})

export async function benchCached(
  iterations: number,
  { profile = true, heapClients = 300 }: { profile?: boolean; heapClients?: number } = {},
): Promise<CachedResults> {
  const broker = await startInProcessBroker()
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-cached-'))
  try {
    const { host } = broker
    const { cache } = await warmCache(name, host)
    const file = join(dir, 'credentials.json')
    const entry = await cache.get(credentialKey(url, { imei: name }))
    if (entry === undefined) throw new Error('the memory cache is cold')
    await new FileCredentialStore(file).set(credentialKey(url, { imei: name }), entry)

    const timed = (boot: () => Promise<{ endAsync(): Promise<unknown> }>) => async () => {
      const started = performance.now()
      const client = await boot()
      await client.endAsync()
      return performance.now() - started
    }
    const raw = timed(() => mqtt.connectAsync(`mqtt://${host}`, { ...plainCredentials }))
    const ours = timed(() => connectProvisioned(optionsFor(cache)))
    const oursNoSession = timed(() => connectProvisioned(optionsFor(cache, { reconnect: false })))
    const fromFile = timed(() => connectProvisioned(optionsFor(new FileCredentialStore(file))))
    const batch = 50
    const create = async () => {
      const options = Array.from({ length: batch }, () => optionsFor(cache))
      const started = performance.now()
      for (const o of options) createBootstrap(o)
      return ((performance.now() - started) / batch) * 1000
    }
    // One call, as a boot pays it (among other work: colder caches), and the median of a hot batch.
    const createOnce = async () => {
      const options = optionsFor(cache)
      const started = performance.now()
      createBootstrap(options)
      return (performance.now() - started) * 1000
    }
    const samples = await rounds(
      { raw, ours, oursNoSession, file: fromFile, create, createOnce },
      { iterations, warmup: 100, maxMs: 120_000 },
    )
    const cpuUs = await cpuPerBoot({ ours: () => ours(), raw: () => raw() }, 300, 6)
    const heap = await heapPerClient(heapClients, 3)
    const fresh = createInFreshProcess(15)
    const profiled = profile ? await profileBoth(ours, raw, 3000) : undefined
    return {
      entry: import.meta.resolve('mqtt-bootstrap'),
      rounds: samples.raw.length,
      times: {
        raw: spread(samples.raw),
        ours: spread(samples.ours),
        oursNoSession: spread(samples.oursNoSession),
        file: spread(samples.file),
        createUs: spread(samples.createOnce, 1),
        createHotUs: spread(samples.create, 1),
      },
      ratios: {
        oursVsRaw: paired(samples.ours, samples.raw),
        noSessionVsRaw: paired(samples.oursNoSession, samples.raw),
        fileVsMemory: paired(samples.file, samples.ours),
      },
      cpuUs,
      createFreshProcessUs: fresh,
      heap,
      ...(profiled === undefined ? {} : { profile: profiled }),
    }
  } finally {
    await broker.stop()
    await rm(dir, { recursive: true, force: true })
  }
}

/** Process CPU (user + system) per run, µs: batches of `size` runs, alternating, the first round unmeasured. */
export async function cpuPerBoot<K extends string>(
  variants: Record<K, () => Promise<unknown>>,
  size: number,
  batches: number,
): Promise<Record<K, number>> {
  const cpu = Object.fromEntries(Object.keys(variants).map((k) => [k, [] as number[]])) as Record<K, number[]>
  for (let b = 0; b <= batches; b++) {
    for (const [name, run] of Object.entries(variants) as Array<[K, () => Promise<unknown>]>) {
      const before = process.cpuUsage()
      for (let i = 0; i < size; i++) await run()
      const used = process.cpuUsage(before)
      if (b > 0) cpu[name].push((used.user + used.system) / size)
    }
  }
  return Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round(median(v as number[]), 1)])) as Record<
    K,
    number
  >
}

/**
 * Heap per connected client (plain auth), raw and ours alternating in fresh processes, `runs` of each, against a
 * broker in its own process (its heap must not count). The runs block this process (execFileSync): the broker's
 * process does not mind.
 */
export async function heapPerClient(clients: number, runs: number): Promise<HeapResult> {
  const broker = await startProcess('bench/broker-process.ts', { BROKER_AUTH: 'plain' })
  try {
    const run = (kind: string) =>
      Math.round(
        Number(
          execFileSync(
            process.execPath,
            [
              '--expose-gc',
              '--import',
              'tsx',
              'bench/heap-process.ts',
              kind,
              String(broker.port),
              String(clients),
              'plain',
            ],
            { encoding: 'utf8', env: process.env },
          ).trim(),
        ),
      )
    const figures = { raw: [] as number[], ours: [] as number[], oursNoSession: [] as number[], stores: [] as number[] }
    for (let i = 0; i < runs; i++) {
      figures.raw.push(run('raw'))
      figures.ours.push(run('ours'))
      figures.oursNoSession.push(run('ours-no-session'))
      figures.stores.push(run('stores'))
    }
    const raw = median(figures.raw)
    const ours = median(figures.ours)
    const oursNoSession = median(figures.oursNoSession)
    return {
      clients,
      raw,
      ours,
      oursNoSession,
      stores: median(figures.stores),
      ratio: round(ours / raw),
      runs: figures,
    }
  } finally {
    await broker.stop()
  }
}

/**
 * Profile `runs` boots of ours and as many raw ones, alternating in `slices` (a machine that slows down meanwhile
 * slows both); the last pair of profiles goes to bench/results/ (open them in Chrome DevTools or speedscope).
 */
export async function profileBoth(
  ours: () => Promise<unknown>,
  raw: () => Promise<unknown>,
  runs: number,
  slices = 6,
): Promise<{ ours: Attribution; raw: Attribution }> {
  const profiles = { ours: [] as CpuProfile[], raw: [] as CpuProfile[] }
  const each = Math.ceil(runs / slices)
  for (let i = 0; i < slices; i++) {
    profiles.ours.push(await profileRuns(ours, each))
    profiles.raw.push(await profileRuns(raw, each))
  }
  await mkdir('bench/results', { recursive: true })
  await writeFile('bench/results/cached-boot.cpuprofile', JSON.stringify(profiles.ours.at(-1)))
  await writeFile('bench/results/cached-boot-raw.cpuprofile', JSON.stringify(profiles.raw.at(-1)))
  return { ours: attribute(profiles.ours, each * slices), raw: attribute(profiles.raw, each * slices) }
}

/**
 * The first createBootstrap() of a fresh process (lazy loads included; after `import('mqtt')` and the entry's import,
 * which the footprint rows count), and the second: medians over `processes`, µs.
 */
export function createInFreshProcess(processes: number): { firstUs: number; secondUs: number } {
  const entry = import.meta.resolve('mqtt-bootstrap')
  const script = `await import('mqtt'); const { createBootstrap, MemoryCredentialStore } = await import(${JSON.stringify(entry)})
const cache = new MemoryCredentialStore()
const options = () => ({ url: ${JSON.stringify(url)}, data: { imei: 'dev-1' }, cache, auth: 'plain', broker: { protocol: 'mqtt' } })
const a = options(), b = options()
const t0 = performance.now(); createBootstrap(a); const t1 = performance.now(); createBootstrap(b); const t2 = performance.now()
console.log(JSON.stringify([(t1 - t0) * 1000, (t2 - t1) * 1000]))`
  const first: number[] = []
  const second: number[] = []
  for (let i = 0; i < processes; i++) {
    const [a, b] = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
    )
    first.push(a)
    second.push(b)
  }
  return { firstUs: round(median(first), 1), secondUs: round(median(second), 1) }
}

const ms = (s: Spread) => `${s.median} ms (${s.p25}–${s.p75})`
const ratio = (r: ReturnType<typeof paired>) => `${r.ratio} (${r.pairedP25}–${r.pairedP75})`

/** The section's rows for bench/index.ts's table: medians (p25–p75); ratios of medians (quartiles of paired ratios). */
export function cachedRows(r: CachedResults): string[][] {
  const { times, ratios, cpuUs, heap } = r
  const tcp = `plain auth, TCP, in-process aedes, ${r.rounds} rounds`
  return [
    [`cached boot, new bootstrap per call (${tcp})`, ms(times.ours), ms(times.raw), ratio(ratios.oursVsRaw), '<= 1.05'],
    [
      '  the same, reconnect: false (no session)',
      ms(times.oursNoSession),
      ms(times.raw),
      ratio(ratios.noSessionVsRaw),
      '',
    ],
    [
      '  the same, FileCredentialStore vs memory store',
      ms(times.file),
      ms(times.ours),
      ratio(ratios.fileVsMemory),
      '<= 1.10',
    ],
    [
      '  createBootstrap() alone: one call per round (a batch of 50, hot)',
      `${times.createUs.median} µs (${times.createUs.p25}–${times.createUs.p75})`,
      `(${times.createHotUs.median} µs)`,
      '',
      '< 30 µs',
    ],
    [
      '  createBootstrap(): first call of a fresh process (its second call)',
      `${r.createFreshProcessUs.firstUs} µs`,
      `(${r.createFreshProcessUs.secondUs} µs)`,
      '',
      '',
    ],
    [
      '  process CPU per boot (broker in both)',
      `${cpuUs.ours} µs`,
      `${cpuUs.raw} µs`,
      `${round(cpuUs.ours / cpuUs.raw)}`,
      '',
    ],
    [
      `  heap per connected client (plain, ${heap.clients} clients, median of ${heap.runs.raw.length} processes)`,
      `${heap.ours} B (no session ${heap.oursNoSession} B; the bench's warm cache ${heap.stores} B of it)`,
      `${heap.raw} B`,
      `${heap.ratio} (${round((heap.ours - heap.stores) / heap.raw)} without the cache)`,
      '<= 1.2',
    ],
  ]
}

/** The profile, as printed after the table. */
export function profileReport({ ours, raw }: { ours: Attribution; raw: Attribution }): string {
  return [
    `cached boot CPU profile (${ours.runs} boots each, µs per boot, idle excluded): ours ${ours.totalUs} µs, raw ${raw.totalUs} µs`,
    `  charged to mqtt-bootstrap's code: ${ours.oursUs} µs; inside mqtt.connect(), which raw connectAsync calls too: ours ${ours.mqttConnectUs} µs, raw ${raw.mqttConnectUs} µs`,
    'our functions by self time (their calls into Node and other packages included):',
    frameLines(ours.self),
    'our functions by inclusive time (mqtt.connect excluded):',
    frameLines(ours.inclusive),
    'outside our code, ours | raw (µs per boot):',
    ...ours.outside.map((f) => {
      const theirs = raw.outside.find((o) => o.name === f.name)?.us ?? 0
      return `${f.us.toFixed(1).padStart(7)} | ${theirs.toFixed(1).padStart(7)}  ${f.name}`
    }),
    'profiles: bench/results/cached-boot.cpuprofile, bench/results/cached-boot-raw.cpuprofile',
  ].join('\n')
}
