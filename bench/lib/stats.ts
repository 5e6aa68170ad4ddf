/** Medians, percentiles and the interleaved A/B loop every comparison uses. */

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[index] as number
}

export const median = (values: number[]) => percentile(values, 50)

export interface AB {
  a: number[]
  b: number[]
  /** median(a) / median(b) */
  ratio: number
}

/**
 * Run `a` and `b` alternately (which goes first alternates too), `iterations` times each after `warmup` unmeasured
 * rounds, bounded by `maxMs`. Each function returns how long its own measured part took, in ms.
 */
export async function interleave(
  a: () => Promise<number>,
  b: () => Promise<number>,
  { iterations, warmup, maxMs }: { iterations: number; warmup: number; maxMs: number },
): Promise<AB> {
  for (let i = 0; i < warmup; i++) {
    await a()
    await b()
  }
  const times: AB = { a: [], b: [], ratio: Number.NaN }
  const deadline = performance.now() + maxMs
  for (let i = 0; i < iterations && performance.now() < deadline; i++) {
    if (i % 2 === 0) {
      times.a.push(await a())
      times.b.push(await b())
    } else {
      times.b.push(await b())
      times.a.push(await a())
    }
  }
  times.ratio = median(times.a) / median(times.b)
  return times
}

export const round = (value: number, digits = 3) => Number(value.toFixed(digits))

export interface Spread {
  p25: number
  median: number
  p75: number
}

export const spread = (values: number[], digits = 3): Spread => ({
  p25: round(percentile(values, 25), digits),
  median: round(median(values), digits),
  p75: round(percentile(values, 75), digits),
})

/**
 * Run every variant once per round, in a new random order each round (a rotation would keep the cyclic order, so one
 * variant would always run right after the same other one, in its garbage or its warm caches), `iterations` rounds
 * after `warmup` unmeasured ones, bounded by `maxMs`. Each variant returns how long its own measured part took.
 * Sample `i` of every variant comes from round `i`: pairs for paired ratios. The order is seeded: runs repeat it.
 */
export async function rounds<K extends string>(
  variants: Record<K, () => Promise<number>>,
  { iterations, warmup, maxMs, seed = 13 }: { iterations: number; warmup: number; maxMs: number; seed?: number },
): Promise<Record<K, number[]>> {
  const names = Object.keys(variants) as K[]
  const random = seeded(seed)
  for (let i = 0; i < warmup; i++) for (const name of shuffled(names, random)) await variants[name]()
  const samples = Object.fromEntries(names.map((name) => [name, [] as number[]])) as Record<K, number[]>
  const deadline = performance.now() + maxMs
  for (let i = 0; i < iterations && performance.now() < deadline; i++) {
    for (const name of shuffled(names, random)) samples[name].push(await variants[name]())
  }
  return samples
}

/** mulberry32: a small seeded generator, uniform in [0, 1). */
function seeded(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
}

/** A Fisher-Yates shuffle (a copy). */
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[copy[i], copy[j]] = [copy[j] as T, copy[i] as T]
  }
  return copy
}

/** median(a) / median(b), and the quartiles of the per-round ratios a[i] / b[i] (steadier on a shared machine). */
export function paired(a: number[], b: number[]): { ratio: number; pairedP25: number; pairedP75: number } {
  const ratios = a.map((value, i) => value / (b[i] as number))
  return {
    ratio: round(median(a) / median(b)),
    pairedP25: round(percentile(ratios, 25)),
    pairedP75: round(percentile(ratios, 75)),
  }
}
