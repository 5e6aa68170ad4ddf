/**
 * The registry at fleet scale (DESIGN.md "The registry at fleet scale"): devices' triplets in PostgreSQL, handed out
 * from a pool on each identity's first claim (assign.ts), with an allow-list, revocation and an audit, shared by
 * every server process on the database: so are the signed claims' nonces, the re-claim log and the abuse limits'
 * counters. The JSON file registry (registry.ts) stays the embedded default for one process.
 *
 * ```ts
 * const registry = await PostgresRegistry.open({ connectionString: 'postgres://…' })
 * await registry.migrate()
 * createProvisioningHandler({ resolve: registry.resolve, verify: registry.verifier(), limits: registry.limiter(),
 *   claims: registry.claims, onRequest: registry.audit })
 * ```
 * Its settings (settings.ts) live in the database, and follow it within a second of a change.
 */
import type { IncomingMessage } from 'node:http'
import { hostname } from 'node:os'
import { inspect } from 'node:util'
import type pg from 'pg'
import { renewedDeviceName } from '../certificates/renewal.js'
import { DEFAULT_IDENTITY } from '../claims/declaration.js'
import { ClaimLimiter, type ClaimLimitsOptions } from '../claims/limits.js'
import type { NonceStore } from '../claims/nonces.js'
import { trustedProxies } from '../claims/peer.js'
import type { ClaimLog } from '../claims/reclaims.js'
import { type ClaimVerifier, signedClaims, verifiedKeyId } from '../claims/verify.js'
import { type Resolution, SERVER_CODES } from '../handler.js'
import type { RegistryVerifierOptions } from '../registry.js'
import * as admin from './admin.js'
import { isIdentity } from './admin.js'
import { claimTriplet, type Triplet } from './assign.js'
import { Auditor } from './audit.js'
import { PostgresClaimLog } from './claim-log.js'
import { PostgresLimitCounters } from './counters.js'
import { migrate } from './migrate.js'
import { PostgresNonceStore } from './nonces.js'
import { createPool, listen, type PoolOptions, query } from './pool.js'
import { type LoadedSettings, loadSettings, type RegistrySettings, type SettingsOverrides } from './settings.js'

export interface PostgresRegistryOptions extends Omit<PoolOptions, 'onError'>, SettingsOverrides {
  /** A pool of your own (not ended by close()); without it, one is made from `connectionString` or `PG*`. */
  pool?: pg.Pool
  /** The audit's `server` column: which process answered. @default `<hostname>:<pid>` */
  serverName?: string
  /** Proxies whose X-Forwarded-For names the peer, for the audit (as the handler's `trustProxy`). */
  trustProxy?: readonly string[]
  /** Where now comes from (epoch ms): assignment and audit times. @default Date */
  clock?: { now(): number }
  /** How long the settings read from the database are used before they are read again, in ms. @default 1000 */
  settingsTtlMs?: number
  /** Told of failures nobody waits for: an idle connection lost, an audit row not written. */
  onError?(error: Error): void
}

export class PostgresRegistry {
  readonly pool: pg.Pool
  /** Signed claims' nonces, shared by every process on the database. */
  readonly nonces: NonceStore
  /** Re-claims, recognised whichever process served the first claim. */
  readonly claims: ClaimLog
  /** The database named without its password: for logs and errors. */
  readonly label: string
  readonly #own: boolean
  readonly #options: PostgresRegistryOptions
  readonly #clock: { now(): number }
  readonly #audit: Auditor
  #loaded: LoadedSettings | undefined
  #loadedAt = Number.NEGATIVE_INFINITY
  #loading: Promise<LoadedSettings> | undefined

  private constructor(pool: pg.Pool, own: boolean, options: PostgresRegistryOptions) {
    this.pool = pool
    this.#own = own
    this.#options = options
    this.#clock = options.clock ?? Date
    if (typeof this.#clock?.now !== 'function') throw new TypeError('Expected `clock` to have a now() method')
    this.label = databaseLabel(pool.options)
    this.nonces = new PostgresNonceStore(pool, { clock: this.#clock })
    this.claims = new PostgresClaimLog(pool)
    this.#audit = new Auditor(pool, {
      server: options.serverName ?? `${hostname()}:${process.pid}`,
      trusted: trustedProxies(options.trustProxy),
      clock: this.#clock,
      identityOf: (data) => {
        const value = ownField(data, this.#identityField())
        return typeof value === 'string' ? value : undefined
      },
      onError: (error) => this.#tellError(error),
    })
  }

  /** Connect (a pool) and check the database answers; a RegistryUnavailableError when it does not. */
  static async open(options: PostgresRegistryOptions = {}): Promise<PostgresRegistry> {
    const ttl = options.settingsTtlMs ?? 1000
    if (!Number.isSafeInteger(ttl) || ttl < 0) throw new TypeError(`Expected \`settingsTtlMs\` to be ms, got ${ttl}`)
    const own = options.pool === undefined
    let tell = (_error: Error) => {}
    const pool = options.pool ?? (await createPool({ ...options, onError: (error) => tell(error) }))
    if (options.pool !== undefined) listen(pool, (error) => tell(error))
    try {
      const registry = new PostgresRegistry(pool, own, options)
      tell = (error) => registry.#tellError(error)
      await query(pool, 'answer', 'SELECT 1')
      return registry
    } catch (error) {
      if (own) await pool.end().catch(() => {})
      throw error
    }
  }

  /** Apply the pending migrations (safe from several processes at once); the names of those applied now. */
  migrate(): Promise<string[]> {
    return migrate(this.pool.options)
  }

  /** How claims are authenticated now: `'group-key'`, `'none'`, or `undefined` (nothing is handed out). */
  async attestation(): Promise<'group-key' | 'none' | undefined> {
    return (await this.#current()).attestation?.kind
  }

  /** Abuse limits whose counters are shared by every process on the database. */
  limiter(options: ClaimLimitsOptions = {}): ClaimLimiter {
    // Failures are counted per identity too: by default the field the settings name, as they change.
    const identity = options.identity ?? ((data: unknown) => ownField(data, this.#identityField()))
    const store = options.store ?? new PostgresLimitCounters(this.pool, { onError: (error) => this.#tellError(error) })
    return new ClaimLimiter({ clock: this.#clock, ...options, identity, store })
  }

  /**
   * The claim verifier, following the settings as they change: with a group key, `signedClaims` with the keys derived
   * from it and the nonces shared in the database; with `"none"`, every claim passes. A claim made while the registry
   * declares no attestation is the server's failure (`"77777"`, told to `onError`), never a configuration.
   */
  verifier(options: RegistryVerifierOptions = {}): ClaimVerifier {
    const signed = signedClaims({
      nonces: this.nonces,
      clock: this.#clock,
      ...options,
      keyFor: (id) => {
        const declared = this.#loaded?.attestation
        return declared?.kind === 'group-key' ? declared.keyFor(id) : undefined
      },
      identity: (data) => {
        const loaded = this.#loaded
        return loaded?.attestation?.kind === 'group-key' ? ownField(data, loaded.identity) : undefined
      },
    })
    return async (claim) => {
      const { attestation } = await this.#current()
      if (attestation === undefined) throw new TypeError(`device registry ${this.label} declares no attestation`)
      return attestation.kind === 'none' ? { ok: true } : signed(claim)
    }
  }

  /**
   * The handler's resolve: the claimed identity's triplet (assigned on its first claim) with the configured
   * `connect`; `"10001"` for an identity that may not claim, `"10004"` when a group key is declared and the claim was
   * not verified for this identity, `"10006"` when the pool is exhausted, `"10007"` for a revoked identity. A renewal
   * (its certificate the proof, renewedDeviceName) gets the identity's triplet of the certificate's deviceName only,
   * never one from the pool (`"10004"` otherwise).
   */
  resolve = async (data: unknown, request?: IncomingMessage): Promise<Resolution | undefined> => {
    const settings = await this.#current()
    const claimed = ownField(data, settings.identity)
    if (!isIdentity(claimed)) return undefined // no identity a claim, the allow-list or the database could hold
    // Not said, or a group key: only a claim the handler verified for this identity (or a renewal) gets anything.
    const renewal = renewedDeviceName(request)
    if (settings.attestation?.kind !== 'none' && verifiedKeyId(request) !== claimed && renewal === undefined) {
      return { code: SERVER_CODES.INVALID_SIGNATURE }
    }
    if (settings.connect === undefined) throw new TypeError(`device registry ${this.label} has no connect host set`)
    const outcome = await claimTriplet(this.pool, {
      identity: claimed,
      renewal,
      policy: settings.attestation?.kind === 'group-key' ? settings.claims : 'allow-list',
      peer: this.#audit.peer(request),
      server: this.#audit.options.server,
      nowMs: this.#clock.now(),
    })
    this.#audit.written(request)
    if (!('triplet' in outcome)) return { code: outcome.code }
    return { device: { ...outcome.triplet }, connect: { ...settings.connect } }
  }

  /** For the handler's `onRequest`: the audit row of a request `resolve` did not answer. Never throws. */
  audit = (outcome: Parameters<Auditor['record']>[0]): void => this.#audit.record(outcome)

  /**
   * Change settings (`null` removes one): an object, or a function of the current settings answering the changes,
   * run while the settings are held (a change made of them loses no other's). Answers the changes made.
   */
  async configure(changes: admin.SettingsChanges): Promise<Record<string, unknown>> {
    const made = await admin.configure(this.pool, changes)
    this.#loadedAt = Number.NEGATIVE_INFINITY // this process sees its own change at once
    return made
  }

  settings(): Promise<RegistrySettings> {
    return admin.readSettings(this.pool)
  }

  importTriplets(rows: Iterable<Triplet>): Promise<{ added: number; existing: number }> {
    return admin.importTriplets(this.pool, rows)
  }

  allow(identities: readonly string[]): Promise<{ added: number; restored: number }> {
    return admin.allow(this.pool, identities, this.#clock.now())
  }

  revoke(identities: readonly string[]): Promise<{ revoked: number }> {
    return admin.revoke(this.pool, identities, this.#clock.now())
  }

  list(): Promise<admin.RegistryListing> {
    return admin.list(this.pool)
  }

  /** The pool's counts alone (what `list()` starts with), without reading every identity. */
  counts(): Promise<admin.RegistryListing['triplets']> {
    return admin.counts(this.pool)
  }

  /** What inspect and JSON show: the database by its label, never the pool (its options hold the password). */
  [inspect.custom](): string {
    return `PostgresRegistry { ${this.label} }`
  }

  toJSON(): { label: string } {
    return { label: this.label }
  }

  /** End the pool (one passed to `open` is left to its owner). */
  async close(): Promise<void> {
    if (this.#own) await this.pool.end()
  }

  /** The settings in force, read again once `settingsTtlMs` has passed; one read at a time. */
  async #current(): Promise<LoadedSettings> {
    const ttl = this.#options.settingsTtlMs ?? 1000
    if (this.#loaded !== undefined && this.#clock.now() - this.#loadedAt < ttl) return this.#loaded
    this.#loading ??= admin
      .readSettings(this.pool)
      .then((stored) => {
        this.#loaded = loadSettings(this.label, stored, this.#options, this.#loaded)
        this.#loadedAt = this.#clock.now()
        return this.#loaded
      })
      .finally(() => {
        this.#loading = undefined
      })
    return this.#loading
  }

  /** The field of the data that names the device, as the settings in force say. */
  #identityField(): string {
    return this.#loaded?.identity ?? this.#options.identity ?? DEFAULT_IDENTITY
  }

  #tellError(error: Error): void {
    try {
      this.#options.onError?.(error)
    } catch {}
  }
}

/** `postgres://host:port/database` of a pool's settings: never its user or password. */
export function databaseLabel(config: pg.PoolConfig): string {
  let { host, port, database } = config
  if (config.connectionString !== undefined) {
    try {
      const url = new URL(config.connectionString)
      host = decodeURIComponent(url.hostname) || url.searchParams.get('host') || undefined
      port = Number(url.port) || undefined
      database = decodeURIComponent(url.pathname.slice(1)) || undefined
    } catch {
      return 'postgres://(unreadable connection string)'
    }
  }
  const env = process.env
  return `postgres://${host ?? env.PGHOST ?? 'localhost'}:${port ?? env.PGPORT ?? 5432}/${database ?? env.PGDATABASE ?? env.PGUSER ?? ''}`
}

function ownField(data: unknown, name: string): unknown {
  return typeof data === 'object' && data !== null && Object.hasOwn(data, name)
    ? (data as Record<string, unknown>)[name]
    : undefined
}

export type { RegistryListing } from './admin.js'
export { POOL_CODES, type Triplet } from './assign.js'
export type { ClaimPolicy, RegistrySettings } from './settings.js'
