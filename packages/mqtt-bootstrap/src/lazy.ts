/**
 * How the device entry loads what it depends on, so that `import 'mqtt-bootstrap'` costs little beyond mqtt itself
 * (docs/performance.md):
 *
 * - Dependencies a device does not need at import time are required when first used, synchronously: tsyringe (the
 *   app's own, when it uses it) when the first bootstrap is made, valibot when the first answer is validated,
 *   async-retry when the first retry loop runs, `node:crypto` when the first key is hashed or password signed. The
 *   first use pays for them, once per process.
 * - What is needed at once is not `import`ed either: eventemitter3 is required, and builtins (`node:fs`, …) come
 *   through `process.getBuiltinModule()`. An ESM `import` of a CommonJS package or a builtin builds a module facade
 *   over all its exports: eventemitter3 costs 2.6 ms more imported than required (`npm run bench` prints the
 *   breakdown).
 *
 * Besides its own modules, the entry imports only mqtt, which the app has loaded already (test/footprint.test.ts
 * checks that).
 */
const load = process.getBuiltinModule('node:module').createRequire(import.meta.url)

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

/**
 * tsyringe: an optional peer, used only when the app uses it (it passes a `container`, or has loaded tsyringe), and
 * then it is the app's own copy, its Reflect polyfill loaded already.
 */
export const tsyringe = lazy<typeof import('tsyringe')>('tsyringe')

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

/** `node:crypto`: about 1.2 ms to load, a quarter of the whole import cost, and not needed until the first boot. */
export const nodeCrypto = () => process.getBuiltinModule('node:crypto')

/** eventemitter3's EventEmitter, which `MqttBootstrap` extends. */
export const { EventEmitter } = load('eventemitter3') as typeof import('eventemitter3')
