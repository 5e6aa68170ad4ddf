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
