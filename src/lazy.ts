/**
 * Dependencies a device does not need at import time are required when first used, synchronously: tsyringe (and the
 * Reflect polyfill it demands) when the first bootstrap is made, valibot when the first answer is validated,
 * async-retry when the first retry loop runs. `import 'mqtt-bootstrap'` then costs little beyond mqtt itself
 * (README "Performance"); the first use pays the rest, once per process.
 */
import { createRequire } from 'node:module'

const load = createRequire(import.meta.url)

/** A loader for module `id`: the first call requires it, later calls return it. */
export function lazy<T>(id: string, before?: () => void): () => T {
  let loaded: T | undefined
  return () => {
    if (loaded === undefined) {
      before?.()
      loaded = load(id) as T
    }
    return loaded
  }
}

/** tsyringe, with the Reflect metadata polyfill it checks for at load (unless the app has one already). */
export const tsyringe = lazy<typeof import('tsyringe')>('tsyringe', () => {
  if (typeof (Reflect as { getMetadata?: unknown }).getMetadata !== 'function') load('reflect-metadata')
})

/**
 * Whether the app has loaded tsyringe. Nobody can have registered anything in tsyringe's global container otherwise,
 * so a bootstrap without a `container` option needs no container at all (and does not load tsyringe).
 */
export function tsyringeLoaded(): boolean {
  tsyringePath ??= (() => {
    try {
      return load.resolve('tsyringe') // resolved once: a module path search reads package.json files
    } catch {
      return ''
    }
  })()
  return tsyringePath !== '' && load.cache[tsyringePath] !== undefined
}
let tsyringePath: string | undefined

export const valibot = lazy<typeof import('valibot')>('valibot')

export const asyncRetry = lazy<typeof import('async-retry')>('async-retry')
