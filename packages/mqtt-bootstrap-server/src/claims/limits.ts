/**
 * Abuse limits for failed claims (issue 15). Failed claims (refused `"10004"`/`"10005"`, an unknown device `"10001"`,
 * a CSR that cannot be used `"10008"`, an unsigned claim refused) are counted per peer address and per claimed identity, in fixed windows. The first
 * `maxFailures` failures of a key (an address, an identity) per window are answered normally; past that, a request
 * without a valid signature from that address, or claiming that identity, is answered at once with HTTP 429,
 * `Retry-After` and `{ "code": "77777" }` (transient: the device library waits and retries), without `resolve`.
 *
 * A request with a valid signature is never limited, by its address nor by its identity: knowing a public IMEI must
 * not let anyone lock that device out, and a carrier NAT that puts a fleet behind one address must not block it. So
 * the verifier still runs for a signed request from an over-limit address (it costs ~0.1 ms, and a valid signature
 * goes through); only a request that carries no signature at all is answered 429 before the verifier. Nothing is
 * answered late on purpose (no tarpit: it would hold sockets). Valid claims are not counted either.
 *
 * Retry-After is truthful: the key is answered 429 until it has passed. It doubles each time the key goes over the
 * limit again within one Retry-After after the last block ended (`retryAfterSeconds`, then twice that, up to
 * `maxRetryAfterSeconds`); a key that stays under the limit that long starts again from `retryAfterSeconds`.
 * The counters live in a {@link LimitCounterStore}: this process's memory by default, bounded (at most `maxKeys`
 * addresses and as many identities, the least recently seen evicted first: an evicted counter only forgets abuse, it
 * never blocks anyone), or one shared by every process (PostgreSQL's). IPv6 addresses count per /64 (one subscriber's).
 */
import type { IncomingMessage } from 'node:http'
import { MAX_KEY_ID_LENGTH, ResultCode } from 'mqtt-bootstrap/contract'
import { addressKey, peerAddress, trustedProxies } from './peer.js'
import { type ClaimVerifier, claimedIdentityReader, identityReader } from './verify.js'
import { presentsCertificate } from './x509.js'

export interface ClaimLimitsOptions {
  /** Failed claims per key (an address, an identity) per window answered normally. @default 10 */
  maxFailures?: number
  /** The window's length, in ms. @default 60000 */
  windowMs?: number
  /** The first Retry-After given to a key over the limit, in seconds. @default 60 */
  retryAfterSeconds?: number
  /** The largest Retry-After, however long the abuse lasts, in seconds. @default 900 */
  maxRetryAfterSeconds?: number
  /** The most addresses kept in memory, and the most identities (the memory store's bound). @default 10000 */
  maxKeys?: number
  /** IPv6 addresses are counted per prefix of this length (a subscriber gets a /64 or more). @default 64 */
  ipv6PrefixLength?: number
  /**
   * The identity a request's data claims, counted per identity: a field name (`'imei'`) or a function. Anything but a
   * non-empty string is no identity (counted per address only).
   * @default the identity `verify` reads when it is a `signedClaims` verifier; else none
   */
  identity?: string | ((data: unknown) => unknown)
  /** Where now comes from (epoch ms). @default Date */
  clock?: { now(): number }
  /** Where the counters are kept; one shared by all processes counts an enumerator once. @default in memory */
  store?: LimitCounterStore
}

export const CLAIM_LIMITS_DEFAULTS = Object.freeze({
  maxFailures: 10,
  windowMs: 60_000,
  retryAfterSeconds: 60,
  maxRetryAfterSeconds: 900,
  maxKeys: 10_000,
  ipv6PrefixLength: 64,
})

/** The codes that count as a failed claim. */
const FAILURES: ReadonlySet<string> = new Set(['10001', '10004', '10005', '10008'])

/** One key's failed claims, as a {@link LimitCounterStore} keeps them. */
export interface LimitCounter {
  windowStart: number
  failures: number
  /** Answered 429 until then (epoch ms); 0 for never. */
  blockedUntil: number
  /** The last block's length (ms): going over again within it after the block doubles the next one. */
  lastBlockMs: number
}

/** A change of a request's counters (in its keys' order; `undefined`: none): its result, what to keep (or leave). */
export type LimitCounterChange<T> = { result: T; write: ReadonlyArray<LimitCounter | undefined> }
export type LimitCounterChanger<T> = (counters: Array<LimitCounter | undefined>) => LimitCounterChange<T>

/** Now (epoch ms), the window, whether the change is likely to write (`false`: a store may read unlocked first). */
export type LimitCounterUpdate = { now: number; windowMs: number; writes: boolean }

/** Where a limiter's counters are kept: keys `'a:'` + an address key, `'i:'` + an identity; a stale one may go. */
export interface LimitCounterStore {
  /**
   * Run `change` on the counters of `keys`, keep what it writes, answer its result; atomic: of two concurrent updates
   * of one key, one sees the other's. `change` may run twice (read, then under a lock). A failure throws (e.g. 503).
   */
  update<T>(keys: readonly string[], at: LimitCounterUpdate, change: LimitCounterChanger<T>): T | Promise<T>
  /** The keys kept now, if the store knows at once. */
  readonly size?: { addresses: number; identities: number }
}

/** Whether `c` counts as none now: its window is over, and so is the time within which a block would double. */
export const staleCounter = (c: LimitCounter, now: number, windowMs: number) =>
  now >= c.windowStart + windowMs && now >= c.blockedUntil + Math.max(c.lastBlockMs, windowMs)

/** The counters of one process, in memory: per kind of key (addresses, identities) a bounded LRU Map. */
export class MemoryLimitCounters implements LimitCounterStore {
  readonly maxKeys: number
  /** Key -> counter, least recently seen first: addresses (`'a:'`), and identities (`'i:'`). */
  readonly #addresses = new Map<string, LimitCounter>()
  readonly #identities = new Map<string, LimitCounter>()

  constructor(options: { maxKeys?: number } = {}) {
    const { maxKeys = CLAIM_LIMITS_DEFAULTS.maxKeys } = options
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) {
      throw new TypeError(`Expected \`maxKeys\` to be a positive integer, got ${String(maxKeys)}`)
    }
    this.maxKeys = maxKeys
  }

  get size(): { addresses: number; identities: number } {
    return { addresses: this.#addresses.size, identities: this.#identities.size }
  }

  update<T>(keys: readonly string[], at: LimitCounterUpdate, change: LimitCounterChanger<T>): T {
    const tables = keys.map((key) => (key.startsWith('i:') ? this.#identities : this.#addresses))
    const { result, write } = change(keys.map((key, i) => tables[i]?.get(key)))
    for (const [i, counter] of write.entries()) {
      if (counter === undefined) continue
      const [table, key] = [tables[i] as Map<string, LimitCounter>, keys[i] as string]
      table.delete(key)
      table.set(key, counter)
      // Forgetting the least recently seen only forgets abuse: an evicted key starts again from zero failures.
      for (const [oldest] of table) {
        if (table.size <= this.maxKeys) break
        table.delete(oldest)
      }
      const [first, its] = table.entries().next().value ?? []
      if (its !== undefined && first !== key && staleCounter(its, at.now, at.windowMs)) table.delete(first as string)
    }
    return result
  }
}

/** The 429 answer: status, body, headers (the handler's Reply). */
export type LimitedReply = [429, { code: string }, { 'retry-after': string }]

type MaybeLimited = LimitedReply | undefined | Promise<LimitedReply | undefined>

/** The verdict for one request, its keys read once: see {@link ClaimLimiter.gate}. A shared store answers promises. */
export interface ClaimGate {
  /** The 429 answer when its address or identity is over the limit now (the block starts), else `undefined`. */
  limited(): MaybeLimited
  /** Count a refusal `code` (only a failure code counts). */
  failed(code: string): void | Promise<void>
  /** For a refusal `code` about to be answered: the 429 instead when over the limit (a failure code), else count it. */
  refused(code: string): MaybeLimited
}

type Change<T> = (counters: Array<LimitCounter | undefined>, now: number) => LimitCounterChange<T>
const copied = (counters: Array<LimitCounter | undefined>) => counters.map((c) => c && { ...c })

/** The failed-claim counters of one handler, in its store (this process's memory, or shared). */
export class ClaimLimiter {
  readonly maxFailures: number
  readonly windowMs: number
  readonly retryAfterSeconds: number
  readonly maxRetryAfterSeconds: number
  readonly ipv6PrefixLength: number
  readonly identity: ((data: unknown) => string | undefined) | undefined
  readonly store: LimitCounterStore
  readonly #clock: { now(): number }

  constructor(options: ClaimLimitsOptions = {}) {
    const d = CLAIM_LIMITS_DEFAULTS
    const {
      maxFailures = d.maxFailures,
      windowMs = d.windowMs,
      retryAfterSeconds = d.retryAfterSeconds,
      maxRetryAfterSeconds = d.maxRetryAfterSeconds,
      maxKeys = d.maxKeys,
      ipv6PrefixLength = d.ipv6PrefixLength,
      clock = Date,
      store = new MemoryLimitCounters({ maxKeys }),
    } = options
    const checks = { maxFailures, windowMs, retryAfterSeconds, maxRetryAfterSeconds, maxKeys, ipv6PrefixLength }
    for (const [name, value] of Object.entries(checks)) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new TypeError(`Expected \`${name}\` to be a positive integer, got ${String(value)}`)
      }
    }
    if (maxRetryAfterSeconds < retryAfterSeconds) {
      throw new TypeError('Expected `maxRetryAfterSeconds` to be at least `retryAfterSeconds`')
    }
    if (ipv6PrefixLength > 128) throw new TypeError('Expected `ipv6PrefixLength` to be at most 128')
    if (typeof clock?.now !== 'function') throw new TypeError('Expected `clock` to have a now() method')
    if (typeof store?.update !== 'function') throw new TypeError('Expected `store` to have an update() method')
    this.maxFailures = maxFailures
    this.windowMs = windowMs
    this.retryAfterSeconds = retryAfterSeconds
    this.maxRetryAfterSeconds = maxRetryAfterSeconds
    this.ipv6PrefixLength = ipv6PrefixLength
    this.identity = options.identity === undefined ? undefined : identityReader(options.identity)
    this.store = store
    this.#clock = clock
  }

  /** The keys tracked now (each kind bounded by `maxKeys` in memory); NaN when the store does not tell. */
  get size(): { addresses: number; identities: number } {
    return this.store.size ?? { addresses: Number.NaN, identities: Number.NaN }
  }

  /** The gate of one request from `address` (the peer, see {@link peerAddress}) claiming `identity`. */
  gate(address: string | undefined, identity: string | undefined): ClaimGate {
    const keys: string[] = []
    if (address !== undefined) keys.push(`a:${addressKey(address, this.ipv6PrefixLength)}`)
    if (identity !== undefined) keys.push(`i:${identity}`)
    const update = <T>(writes: boolean, change: Change<T>): T | Promise<T> => {
      const now = this.#clock.now()
      const onCopies: LimitCounterChanger<T> = (counters) => change(copied(counters), now)
      if (keys.length === 0) return onCopies([]).result // nothing to count it by
      return this.store.update(keys, { now, windowMs: this.windowMs, writes }, onCopies)
    }
    return {
      limited: () => update(false, (counters, now) => this.#limit(counters, now)),
      failed: (code) => (FAILURES.has(code) ? update(true, (counters, now) => this.#count(counters, now)) : undefined),
      // One update: another process cannot count between the look and the count.
      refused: (code) => {
        if (!FAILURES.has(code)) return undefined
        return update(true, (counters, now) => {
          const limited = this.#limit(counters, now)
          return limited.result === undefined ? this.#count(counters, now) : limited
        })
      },
    }
  }

  /** The 429 when a counter is over the limit (its block starts: written), else `undefined` and nothing written. */
  #limit(counters: Array<LimitCounter | undefined>, now: number): LimitCounterChange<LimitedReply | undefined> {
    let until = 0
    const write = counters.map((counter) => {
      if (counter === undefined) return undefined
      const before = counter.blockedUntil
      until = Math.max(until, this.#blockedUntil(counter, now))
      return counter.blockedUntil === before ? undefined : counter
    })
    if (until <= now) return { result: undefined, write }
    const after = String(Math.ceil((until - now) / 1000))
    return { result: [429, { code: ResultCode.TRANSIENT }, { 'retry-after': after }], write }
  }

  /** One more failure on each counter (a new one for a key without). */
  #count(counters: Array<LimitCounter | undefined>, now: number): LimitCounterChange<undefined> {
    const write = counters.map((counter = { windowStart: now, failures: 0, blockedUntil: 0, lastBlockMs: 0 }) => {
      if (now >= counter.windowStart + this.windowMs) Object.assign(counter, { windowStart: now, failures: 0 })
      counter.failures++
      return counter
    })
    return { result: undefined, write }
  }

  /** When `counter`'s block ends (epoch ms), starting one when its window is over the limit; `0`: not blocked. */
  #blockedUntil(counter: LimitCounter, now: number): number {
    if (now < counter.blockedUntil) return counter.blockedUntil
    if (now >= counter.windowStart + this.windowMs || counter.failures < this.maxFailures) return 0
    // Over the limit again within one block's length after the last ended: the abuse goes on, the block doubles.
    const again = counter.blockedUntil > 0 && now - counter.blockedUntil < counter.lastBlockMs
    const seconds = again
      ? Math.min(this.maxRetryAfterSeconds, (counter.lastBlockMs / 1000) * 2)
      : this.retryAfterSeconds
    counter.lastBlockMs = seconds * 1000
    counter.blockedUntil = now + counter.lastBlockMs
    // Once the block ends the key gets `maxFailures` normal answers again.
    counter.windowStart = counter.blockedUntil
    counter.failures = 0
    return counter.blockedUntil
  }
}

/**
 * The handler's gate maker for its `limits` and `trustProxy` options: `undefined` when limits are off. The identity is
 * read by `limits.identity`, else by `verify` when it is a `signedClaims` verifier.
 */
export function claimGates(
  limits: boolean | ClaimLimitsOptions | ClaimLimiter | undefined,
  trustProxy: readonly string[] | undefined,
  verify: ClaimVerifier | undefined,
): ((request: IncomingMessage, data: unknown) => ClaimGate) | undefined {
  const trusted = trustedProxies(trustProxy)
  if (limits === undefined || limits === false) return undefined
  if (typeof limits !== 'boolean' && (typeof limits !== 'object' || limits === null)) {
    throw new TypeError('Expected `limits` to be a boolean, options or a ClaimLimiter')
  }
  const limiter = limits instanceof ClaimLimiter ? limits : new ClaimLimiter(limits === true ? {} : limits)
  const identityOf = limiter.identity ?? claimedIdentityReader(verify)
  // A counter key stays small whatever the client claims (the verifier refuses a longer key id anyway).
  return (request, data) => limiter.gate(peerAddress(request, trusted), identityOf?.(data)?.slice(0, MAX_KEY_ID_LENGTH))
}

/**
 * Whether `request` carries a proof at all, a signature or a client certificate (X.509 claims, claims/x509.ts): one
 * that carries none cannot be a valid claim. A certificate is judged like a signature, never answered 429 unread.
 */
export function carriesSignature(request: IncomingMessage): boolean {
  return (
    request.headers.signature !== undefined ||
    request.headers['signature-input'] !== undefined ||
    presentsCertificate(request)
  )
}
