/**
 * Re-claims (issue 15): a device that lost its cache (a factory reset, a reflashed flash) claims again, and must get
 * its configuration again: ThingsBoard's #8385 and #15513 are devices that lost their token and can never provision
 * again. A second claim of an identity that was served before is therefore answered as the first was (what `resolve`
 * returns for it: the same configuration, so the key's holder learns nothing new), and reported as a re-claim to
 * `onReclaim`, so that an operator sees a device that comes back, or a copied key that is used twice.
 *
 * Only a claim whose proof verified (`verifiedKeyId`) counts: without one, an identity proves nothing, and an
 * unsigned claim is refused by the verifier before it gets here, first claim or not. The log is a record, never a
 * gate: forgetting an identity (a bounded log, a restart, a failing store) only means its next claim is not reported
 * as a re-claim; it never lets a claim through, nor refuses one.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { peerAddress, trustedProxies } from './peer.js'
import { verifiedKeyId } from './verify.js'

/** What the log kept of one identity's last answered claim. */
export interface ServedClaim {
  /** When it was answered (epoch ms). */
  timeMs: number
  /** A digest of the configuration it was answered with (see {@link configurationDigest}), never the configuration. */
  digest: string
}

/**
 * The claim log seam: one process keeps it in memory ({@link MemoryClaimLog}); several processes behind one name
 * need a shared one (the PostgreSQL registry's, issue 16), hence the optional promise.
 */
export interface ClaimLog {
  /**
   * Note that `identity`'s verified claim was answered `"00000"` with `claim`, and answer what was noted of it before
   * (`undefined`: its first claim, or one forgotten). One call, not a question then a note: of two concurrent claims
   * of one identity, one must see the other (a shared store does both in one statement). An error goes to the
   * handler's `onError`; the claim is answered all the same.
   */
  served(identity: string, claim: ServedClaim): ServedClaim | undefined | Promise<ServedClaim | undefined>
}

export interface MemoryClaimLogOptions {
  /**
   * The most identities kept (about 250 bytes each with a 15-character identity: 25 MB at the default); beyond it
   * the least recently served is forgotten, and its next claim is not reported as a re-claim.
   * @default 100000
   */
  maxEntries?: number
}

export const MEMORY_CLAIM_LOG_DEFAULTS = Object.freeze({ maxEntries: 100_000 })

/** The identities served by one process, in memory, bounded; a restart forgets them all. */
export class MemoryClaimLog implements ClaimLog {
  readonly maxEntries: number
  /** identity -> its last answered claim, least recently served first. */
  readonly #served = new Map<string, ServedClaim>()

  constructor(options: MemoryClaimLogOptions = {}) {
    const { maxEntries = MEMORY_CLAIM_LOG_DEFAULTS.maxEntries } = options
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
      throw new TypeError(`Expected \`maxEntries\` to be a positive integer, got ${String(maxEntries)}`)
    }
    this.maxEntries = maxEntries
  }

  /** The identities kept now. */
  get size(): number {
    return this.#served.size
  }

  /** What was noted of `identity`'s last claim, without noting one. */
  lastServed(identity: string): ServedClaim | undefined {
    const last = this.#served.get(identity)
    return last === undefined ? undefined : { ...last }
  }

  served(identity: string, claim: ServedClaim): ServedClaim | undefined {
    const before = this.#served.get(identity)
    this.#served.delete(identity) // re-inserted last: the order is least recently served first
    this.#served.set(identity, { timeMs: claim.timeMs, digest: claim.digest })
    for (const [oldest] of this.#served) {
      if (this.#served.size <= this.maxEntries) break
      this.#served.delete(oldest)
    }
    return before
  }
}

/** What `onReclaim` is told about one re-claim. */
export interface Reclaim {
  /** When it was answered. */
  time: Date
  /** The identity claimed again (its proof verified with that identity's key). */
  identity: string
  /** The peer address (the socket's, or from a trusted proxy's `X-Forwarded-For`). */
  peer: string | undefined
  /** When that identity was answered before. */
  previousTime: Date
  /**
   * Whether the configuration is the one answered before. `false` when the registry changed it meanwhile (a rotated
   * secret, a moved broker): the device gets what `resolve` says now.
   */
  sameConfiguration: boolean
  request: IncomingMessage
}

/** The handler options of re-claims (part of `ProvisioningHandlerOptions`). */
export interface ReclaimOptions {
  /**
   * Where verified claims answered `"00000"` are noted, so that a second claim of an identity is recognised as a
   * re-claim. @default a `MemoryClaimLog` when `onReclaim` is given, else none (nothing is noted)
   */
  claims?: ClaimLog
  /**
   * Told of each re-claim: a verified claim of an identity answered `"00000"` before, answered `"00000"` again. Called
   * before the answer is sent; an exception it throws goes to `onError`, and the claim is answered all the same.
   */
  onReclaim?(reclaim: Reclaim): void
  /** Where now comes from (epoch ms), for re-claims' times. @default Date */
  clock?: { now(): number }
}

/**
 * The handler's recorder: given an answered claim, notes it and tells `onReclaim` of a re-claim; `undefined` when
 * nothing is noted. It never throws nor rejects: whatever fails goes to `tellError`.
 */
export function reclaimRecorder(
  options: ReclaimOptions & { trustProxy?: readonly string[] },
  tellError: (error: unknown) => void,
): ((request: IncomingMessage, body: object) => Promise<void>) | undefined {
  const { onReclaim, clock = Date } = options
  if (onReclaim !== undefined && typeof onReclaim !== 'function') {
    throw new TypeError('Expected `onReclaim` to be a function')
  }
  if (typeof clock?.now !== 'function') throw new TypeError('Expected `clock` to have a now() method')
  const log = options.claims ?? (onReclaim === undefined ? undefined : new MemoryClaimLog())
  if (log === undefined) return undefined
  if (typeof log?.served !== 'function') throw new TypeError('Expected `claims` to have a served() method')
  const trusted = trustedProxies(options.trustProxy)
  return async (request, body) => {
    const identity = verifiedKeyId(request)
    const { code, result } = body as { code?: unknown; result?: unknown }
    // Without a verified identity ("none", no verifier) there is nobody to recognise.
    if (identity === undefined || code !== '00000') return
    try {
      const timeMs = clock.now()
      const digest = configurationDigest(result)
      const before = await withinTime(log.served(identity, { timeMs, digest }), SERVED_TIMEOUT_MS)
      if (before === undefined) return
      const told = onReclaim?.({
        time: new Date(timeMs),
        identity,
        peer: peerAddress(request, trusted),
        previousTime: new Date(before.timeMs),
        sameConfiguration: before.digest === digest,
        request,
      }) as unknown
      // An async hook's rejection is the hook's failure too, never the process's unhandled rejection.
      if (told instanceof Promise) told.catch(tellError)
    } catch (error) {
      tellError(error)
    }
  }
}

/** The longest a claim waits for its log (a store that never answers must not hold every device's answer). */
const SERVED_TIMEOUT_MS = 2000

/** `value`, or a rejection once `ms` have passed without it. */
function withinTime<T>(value: T | Promise<T>, ms: number): Promise<T> {
  if (!(value instanceof Promise)) return Promise.resolve(value)
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the claim log did not answer within ${ms} ms`)), ms)
  })
  return Promise.race([value, late]).finally(() => clearTimeout(timer))
}

/**
 * SHA-256 (base64url, 16 bytes) of the configuration's canonical JSON (keys sorted): equal for the same configuration
 * whatever the order its fields came in. Kept, never logged: like the registry that holds the secret whole, a log of
 * digests is the operator's; a guessable secret could be tried against it offline, a random one cannot.
 */
export function configurationDigest(configuration: unknown): string {
  return createHash('sha256').update(canonical(configuration)).digest().subarray(0, 16).toString('base64url')
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}
