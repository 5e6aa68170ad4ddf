/**
 * Signed claims' nonces in PostgreSQL (table `mqtt_bootstrap.nonces`), shared by every server process: a claim
 * replayed to another process is refused as it is by the first. One statement per claim decides new/replay/full and
 * also deletes a few expired rows, so the table holds about the unexpired nonces and no timer is needed.
 */
import type pg from 'pg'
import { MEMORY_NONCE_STORE_DEFAULTS, type NonceStore, NonceStoreFullError } from '../claims/nonces.js'
import { query } from './pool.js'

export interface PostgresNonceStoreOptions {
  /**
   * The most unexpired nonces of one key id, as MemoryNonceStore's `maxPerKey`. Counted from the statement's
   * snapshot, so concurrent claims of one key id (from any process) may each see the same count: the bound can be
   * passed by at most the number of such claims in flight at once, less one (at most the connections of all the
   * processes' pools); one key still cannot fill the table. @default 32
   */
  maxPerKey?: number
  /** Where now comes from (epoch ms); the expiry column is compared with it, not with the database's clock. @default Date */
  clock?: { now(): number }
}

/** Expired rows deleted by each claim: more than one, so that a backlog (after a quiet spell) shrinks. */
const PRUNE_PER_CALL = 8

/**
 * How long past its expiry (by this process's clock) a row is kept before it is deleted: a process whose clock runs
 * ahead of another's by less than this never deletes a nonce the other could still accept a replay of.
 */
const PRUNE_MARGIN_MS = 300_000

// $1 key id, $2 nonce, $3 now, $4 expires at, $5 maxPerKey, $6 rows to prune, $7 the prune margin.
// - `mine`: this key id's unexpired nonces, and whether this pair is one of them (a replay).
// - `kept`: inserted, or an expired row of the same pair taken over. A concurrent insert of the same pair makes
//   ON CONFLICT wait for it; its row is then unexpired, the WHERE fails and nothing is returned: exactly one `true`.
// - `pruned`: a few expired rows of any key (never this pair: a row must not be changed twice in one statement),
//   SKIP LOCKED so that claims never wait on each other's pruning.
const REMEMBER = `
WITH mine AS (
  SELECT count(*) AS unexpired, min(expires_at) AS first, bool_or(nonce = $2::text) AS seen
  FROM mqtt_bootstrap.nonces WHERE key_id = $1::text AND expires_at > $3::bigint
), kept AS (
  INSERT INTO mqtt_bootstrap.nonces AS n (key_id, nonce, expires_at)
  SELECT $1::text, $2::text, $4::bigint FROM mine WHERE mine.unexpired < $5 AND mine.seen IS NOT TRUE
  ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE n.expires_at <= $3
  RETURNING 1
), pruned AS (
  DELETE FROM mqtt_bootstrap.nonces WHERE (key_id, nonce) IN (
    SELECT key_id, nonce FROM mqtt_bootstrap.nonces
    WHERE expires_at <= $3::bigint - $7::bigint AND NOT (key_id = $1 AND nonce = $2)
    ORDER BY expires_at LIMIT $6 FOR UPDATE SKIP LOCKED
  )
)
SELECT (SELECT count(*) FROM kept)::int AS kept, unexpired::int, first::text, seen FROM mine`

interface RememberRow {
  kept: number
  unexpired: number
  first: string | null
  seen: boolean | null
}

/** The nonces of every process behind one name, in PostgreSQL: a restart forgets none. */
export class PostgresNonceStore implements NonceStore {
  readonly maxPerKey: number
  readonly #pool: pg.Pool
  readonly #clock: { now(): number }

  constructor(pool: pg.Pool, options: PostgresNonceStoreOptions = {}) {
    const { maxPerKey = MEMORY_NONCE_STORE_DEFAULTS.maxPerKey, clock = Date } = options
    if (typeof pool?.query !== 'function') throw new TypeError('Expected `pool` to be a pg.Pool')
    if (!Number.isSafeInteger(maxPerKey) || maxPerKey < 1) {
      throw new TypeError(`Expected \`maxPerKey\` to be a positive integer, got ${String(maxPerKey)}`)
    }
    if (typeof clock?.now !== 'function') throw new TypeError('Expected `clock` to have a now() method')
    this.maxPerKey = maxPerKey
    this.#pool = pool
    this.#clock = clock
  }

  async remember(keyId: string, nonce: string, expiresAtMs: number): Promise<boolean> {
    const now = Math.floor(this.#clock.now())
    // The column holds whole ms: rounded up, a nonce is never forgotten early.
    const expires = Math.ceil(expiresAtMs)
    // Kept even when already past its expiry by this clock (the call waited for a connection): a process whose clock
    // runs behind may still accept a replay of it, and must find it.
    const values = [keyId, nonce, now, expires, this.maxPerKey, PRUNE_PER_CALL, PRUNE_MARGIN_MS]
    const { rows } = await query<RememberRow>(this.#pool, 'remember a nonce', REMEMBER, values)
    const row = rows[0] as RememberRow
    if (row.kept === 1) return true
    if (row.seen === true || row.unexpired < this.maxPerKey) return false // seen now, or inserted meanwhile
    const wait = Math.max(1, Math.ceil((Number(row.first) - now) / 1000))
    throw new NonceStoreFullError(wait, `this key id has ${row.unexpired} unexpired nonces; one expires in ${wait} s`)
  }
}
