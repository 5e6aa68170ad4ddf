/**
 * Bench 5: footprint. The import cost of mqtt-bootstrap beyond `import('mqtt')` in fresh processes, the size of the
 * device entry's built output, and the heap each connected client costs, against a raw mqtt.js client.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { median, round } from './lib/stats.js'

export interface Footprint {
  /** Median over fresh processes, ms. */
  importMqttMs: number
  importExtraMs: number
  /** importExtraMs / importMqttMs */
  importRatio: number
  /** The device entry (dist/index.mjs and the chunks it imports). */
  entryBytes: number
  entryGzipBytes: number
  heapPerClientRaw: number
  heapPerClientOurs: number
  /** Medians over fresh processes, ms, each after `import('mqtt')`: why the device entry loads what it loads how. */
  breakdown: ImportBreakdown
}

export interface ImportBreakdown {
  /** eventemitter3 through an ESM `import` (a facade over the CommonJS module), and through `require`. */
  eventemitter3ImportMs: number
  eventemitter3RequireMs: number
  /** node:crypto, which the entry leaves to the first boot. */
  cryptoMs: number
}

export function measureImport(processes: number): { mqtt: number; extra: number } {
  const entry = createRequire(import.meta.url)
    .resolve('mqtt-bootstrap')
    .replace(/\.cjs$/, '.mjs')
  const script = `const t0 = performance.now(); await import('mqtt'); const t1 = performance.now();
await import(${JSON.stringify(entry)}); const t2 = performance.now(); console.log(JSON.stringify([t1 - t0, t2 - t1]))`
  const mqtt: number[] = []
  const extra: number[] = []
  for (let i = 0; i < processes; i++) {
    const [a, b] = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }),
    )
    mqtt.push(a)
    extra.push(b)
  }
  return { mqtt: median(mqtt), extra: median(extra) }
}

/** The cost of one way of loading, in fresh processes after `import('mqtt')`: the median, ms. */
function loadCost(processes: number, load: string): number {
  const script = `import { createRequire } from 'node:module'; const require = createRequire(process.cwd() + '/');
await import('mqtt'); const t0 = performance.now(); ${load}; console.log(performance.now() - t0)`
  const times = Array.from({ length: processes }, () =>
    Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })),
  )
  return median(times)
}

export function importBreakdown(processes: number): ImportBreakdown {
  return {
    eventemitter3ImportMs: round(loadCost(processes, "await import('eventemitter3')"), 2),
    eventemitter3RequireMs: round(loadCost(processes, "require('eventemitter3')"), 2),
    cryptoMs: round(loadCost(processes, "process.getBuiltinModule('node:crypto')"), 2),
  }
}

export function entrySize(): { bytes: number; gzip: number } {
  const entry = createRequire(import.meta.url)
    .resolve('mqtt-bootstrap')
    .replace(/\.cjs$/, '.mjs')
  const seen = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    for (const [, chunk] of readFileSync(file, 'utf8').matchAll(/from\s+["'](\.\/[^"']+)["']/g)) {
      visit(join(dirname(file), chunk as string))
    }
  }
  visit(entry)
  const code = [...seen].map((file) => readFileSync(file))
  return { bytes: code.reduce((n, b) => n + b.length, 0), gzip: code.reduce((n, b) => n + gzipSync(b).length, 0) }
}

/** Heap per connected client, each kind in a fresh process (bench/heap-process.ts). */
export function heapPerClient(brokerPort: number, clients: number): { raw: number; ours: number } {
  const run = (kind: string) =>
    Number(
      execFileSync(
        process.execPath,
        ['--expose-gc', '--import', 'tsx', 'bench/heap-process.ts', kind, String(brokerPort), String(clients)],
        {
          encoding: 'utf8',
          env: process.env,
        },
      ).trim(),
    )
  return { raw: run('raw'), ours: run('ours') }
}

export function footprint(brokerPort: number): Footprint {
  const { mqtt, extra } = measureImport(15)
  const { bytes, gzip } = entrySize()
  const heap = heapPerClient(brokerPort, 300)
  return {
    importMqttMs: round(mqtt, 1),
    importExtraMs: round(extra, 1),
    importRatio: round(extra / mqtt, 3),
    entryBytes: bytes,
    entryGzipBytes: gzip,
    heapPerClientRaw: Math.round(heap.raw),
    heapPerClientOurs: Math.round(heap.ours),
    breakdown: importBreakdown(15),
  }
}
