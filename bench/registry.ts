/**
 * The reference server's registry with 100,000 entries: a lookup through the index against the scan it replaced (a
 * copy of it, kept here as the baseline, over the same entries, measured alternately in one run), and how long a
 * (re)load of the file takes (read, parse, check every entry, build the index).
 */
import { writeFileSync } from 'node:fs'
import { mkdtemp, rm, utimes } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DeviceRegistry } from 'mqtt-bootstrap-server'
import { median, round } from './lib/stats.js'

type Entry = { match: Record<string, unknown>; device: Record<string, unknown> }

/** The lookup before the index: the first entry all of whose match fields the data has, equal. */
function scan(devices: readonly Entry[], data: Record<string, unknown>): Entry | undefined {
  return devices.find((candidate) =>
    Object.entries(candidate.match).every(([key, value]) => Object.hasOwn(data, key) && data[key] === value),
  )
}

const imei = (n: number) => `86${String(n).padStart(13, '0')}`

export interface RegistryBench {
  entries: number
  lookup: { oursMedianMs: number; baselineMedianMs: number; ratio: number; lookups: number }
  /** Median of `reloads` loads of the whole file. */
  reloadMedianMs: number
  reloads: number
}

export async function benchRegistry(entries = 100_000, lookups = 200, reloads = 5): Promise<RegistryBench> {
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-bench-registry-'))
  try {
    const path = join(dir, 'devices.json')
    const devices: Entry[] = Array.from({ length: entries }, (_, i) => ({
      match: { imei: imei(i) },
      device: { productKey: 'a1BenchPK', deviceName: `meter-${i}`, deviceSecret: `secret-${i}-0123456789abcdef` },
    }))
    writeFileSync(path, JSON.stringify({ version: 1, defaults: { connect: { host: 'broker.example:8883' } }, devices }))
    const registry = new DeviceRegistry(path)
    const ours: number[] = []
    const baseline: number[] = []
    for (let i = 0; i < lookups; i++) {
      // Spread over the file (the scan's cost grows with the position), a tenth of them unknown devices.
      const data = { imei: imei(Math.floor(((i * 7919) % lookups) * (entries / lookups) * 1.1)) }
      const order = i % 2 === 0 ? [0, 1] : [1, 0]
      for (const which of order) {
        const started = performance.now()
        const found = which === 0 ? registry.resolve(data) : scan(devices, data)
        const took = performance.now() - started
        if (which === 0) ours.push(took)
        else baseline.push(took)
        if (found === null) throw new Error('unreachable') // keeps the result alive
      }
    }
    const loads: number[] = []
    for (let i = 0; i < reloads; i++) {
      await utimes(path, new Date(), new Date(Date.now() + (i + 1) * 1000))
      const started = performance.now()
      registry.resolve({ imei: imei(0) }) // the mtime changed: reloads the file, then looks up
      loads.push(performance.now() - started)
    }
    const oursMs = median(ours)
    const baselineMs = median(baseline)
    return {
      entries,
      lookup: {
        oursMedianMs: round(oursMs, 4),
        baselineMedianMs: round(baselineMs, 3),
        ratio: round(oursMs / baselineMs, 5),
        lookups,
      },
      reloadMedianMs: round(median(loads)),
      reloads,
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await benchRegistry(Number(process.env.BENCH_REGISTRY_ENTRIES ?? 100_000)), null, 2))
}
