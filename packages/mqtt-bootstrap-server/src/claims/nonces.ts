/**
 * Where signed claims' nonces are remembered, so that a claim is accepted once (DESIGN.md "Authenticated claims"). A
 * nonce must be remembered for as long as a claim carrying it could still be accepted: until its `created` has left
 * the verifier's window. Forgetting one earlier lets that claim be replayed, so a store that is full refuses new
 * nonces (the device is told to come back later) rather than evict one.
 */

/**
 * The nonce store seam: one process keeps them in memory ({@link MemoryNonceStore}); several processes behind one
 * name need a shared store (the PostgreSQL registry's, issue 16), hence the optional promise.
 */
export interface NonceStore {
  /**
   * Remember that `keyId` used `nonce`, until `expiresAtMs` (epoch ms). Answers `true` when the pair is new (the claim
   * may go on), `false` when it was seen before and has not expired (a replay). Must be atomic: of two concurrent
   * calls with the same pair, one gets `true`. Throws {@link NonceStoreFullError} when it cannot remember one more
   * without forgetting an unexpired one; any other error is a transient failure (the device gets `"77777"`). A store
   * must bound each key id's share too: anyone holding one device's key can sign as many valid claims as they like,
   * and must not fill the store for every other device.
   */
  remember(keyId: string, nonce: string, expiresAtMs: number): boolean | Promise<boolean>
}

/** A store that cannot take one more nonce yet: the claim is refused as transient (`"77777"`, HTTP 503). */
export class NonceStoreFullError extends Error {
  override name = 'NonceStoreFullError'
  readonly code = 'NONCE_STORE_FULL'
  /** Whole seconds until the store can take one more (the answer's Retry-After). */
  readonly retryAfterSeconds: number

  constructor(retryAfterSeconds: number, message?: string) {
    super(message ?? `the nonce store is full of unexpired nonces; one expires in ${retryAfterSeconds} s`)
    this.retryAfterSeconds = retryAfterSeconds
  }
}

export interface MemoryNonceStoreOptions {
  /**
   * The most nonces kept at once (each about 150 bytes with a 15-character key id; at most about 700). With the verifier's default window a nonce is kept up to 10
   * minutes, so the default sustains about 160 claims a second on average; beyond that claims are refused as
   * transient (`"77777"` with a Retry-After) until the oldest expire, never accepted twice.
   * @default 100000
   */
  maxEntries?: number
  /**
   * The most unexpired nonces of one key id: a device claims once per boot, and a few times more when it retries, so
   * one key (one device's, perhaps stolen) cannot take the store from the others. Beyond it that key's claims are
   * refused as transient (`"77777"` with a Retry-After) until its oldest expire; other keys are not affected.
   * @default 32
   */
  maxPerKey?: number
  /** Where now comes from (epoch ms). @default Date */
  clock?: { now(): number }
}

export const MEMORY_NONCE_STORE_DEFAULTS = Object.freeze({ maxEntries: 100_000, maxPerKey: 32 })

/**
 * The nonces of one process, in memory: bounded in number (`maxEntries`) and in time (an expired nonce is dropped
 * before the store counts as full). A restart forgets them all, so a claim made just before a restart could be
 * replayed once after it, within the window: run one process per registry, or use a shared store.
 */
export class MemoryNonceStore implements NonceStore {
  readonly maxEntries: number
  readonly maxPerKey: number
  readonly #clock: { now(): number }
  /** Each key id's unexpired nonces: when they expire (at most `maxPerKey` numbers each). */
  readonly #perKey = new Map<string, number[]>()
  /** `nonce keyId` -> when it expires (epoch ms). */
  readonly #expiry = new Map<string, number>()
  /** The same entries as a min-heap on expiry, so that the earliest to expire is dropped first in O(log n). */
  readonly #heap: Array<{ at: number; key: string; keyId: string }> = []

  constructor(options: MemoryNonceStoreOptions = {}) {
    const {
      maxEntries = MEMORY_NONCE_STORE_DEFAULTS.maxEntries,
      maxPerKey = MEMORY_NONCE_STORE_DEFAULTS.maxPerKey,
      clock = Date,
    } = options
    for (const [name, value] of [
      ['maxEntries', maxEntries],
      ['maxPerKey', maxPerKey],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new TypeError(`Expected \`${name}\` to be a positive integer, got ${String(value)}`)
      }
    }
    this.maxPerKey = maxPerKey
    if (typeof clock?.now !== 'function') throw new TypeError('Expected `clock` to have a now() method')
    this.maxEntries = maxEntries
    this.#clock = clock
  }

  /** The nonces kept now, expired ones not yet dropped included. */
  get size(): number {
    return this.#expiry.size
  }

  remember(keyId: string, nonce: string, expiresAtMs: number): boolean {
    const now = this.#clock.now()
    this.#dropExpired(now)
    // A nonce is base64url (checked by the verifier), so it holds no space: `nonce keyId` names one pair.
    const key = `${nonce} ${keyId}`
    if (this.#expiry.has(key)) return false
    if (expiresAtMs <= now) return true // already outside the window: the verifier refused it before asking
    const ofKey = this.#perKey.get(keyId) ?? []
    if (ofKey.length >= this.maxPerKey) {
      const wait = Math.max(1, Math.ceil((Math.min(...ofKey) - now) / 1000))
      throw new NonceStoreFullError(wait, `this key id has ${ofKey.length} unexpired nonces; one expires in ${wait} s`)
    }
    if (this.#expiry.size >= this.maxEntries) {
      const first = this.#heap[0]?.at ?? now
      throw new NonceStoreFullError(Math.max(1, Math.ceil((first - now) / 1000)))
    }
    this.#expiry.set(key, expiresAtMs)
    this.#push({ at: expiresAtMs, key, keyId })
    ofKey.push(expiresAtMs)
    this.#perKey.set(keyId, ofKey)
    return true
  }

  #dropExpired(now: number): void {
    for (let top = this.#heap[0]; top !== undefined && top.at <= now; top = this.#heap[0]) {
      this.#pop()
      if (this.#expiry.get(top.key) === top.at) this.#expiry.delete(top.key)
      const ofKey = this.#perKey.get(top.keyId)
      const index = ofKey?.indexOf(top.at) ?? -1
      if (ofKey !== undefined && index !== -1) ofKey.splice(index, 1)
      if (ofKey?.length === 0) this.#perKey.delete(top.keyId)
    }
  }

  #push(entry: { at: number; key: string; keyId: string }): void {
    const heap = this.#heap
    heap.push(entry)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if ((heap[parent] as typeof entry).at <= entry.at) break
      heap[i] = heap[parent] as typeof entry
      i = parent
    }
    heap[i] = entry
  }

  #pop(): void {
    const heap = this.#heap
    const last = heap.pop()
    if (last === undefined || heap.length === 0) return
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      if (left >= heap.length) break
      const right = left + 1
      const child =
        right < heap.length && (heap[right] as typeof last).at < (heap[left] as typeof last).at ? right : left
      if ((heap[child] as typeof last).at >= last.at) break
      heap[i] = heap[child] as typeof last
      i = child
    }
    heap[i] = last
  }
}
