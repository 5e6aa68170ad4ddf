/**
 * The abuse limiter's counters in PostgreSQL (table `mqtt_bootstrap.limit_counters`), shared by every server
 * process: an enumerator whose requests are spread over several processes is counted once, and blocked by all.
 *
 * A look that changes nothing (the common case: a claim from an address and identity under the limit, or a 429 to one
 * already blocked) is one unlocked SELECT. A change (a failure counted, a block started) locks the request's rows, in
 * key order so that two requests sharing keys never deadlock, and writes them in one transaction: of two processes
 * counting one key at once, the second waits for the first and counts on top of it. Rows no longer of use (stale:
 * window over, no block that could double) are deleted now and then in the background, a bounded batch at a time.
 */
import type pg from 'pg'
import type { LimitCounter, LimitCounterChanger, LimitCounterStore, LimitCounterUpdate } from '../claims/limits.js'
import { query, storable, transaction } from './pool.js'

export interface PostgresLimitCountersOptions {
  /** How often this process deletes stale counters, in ms of the limiter's clock. @default 60000 */
  pruneIntervalMs?: number
  /** The most rows deleted at once (one statement, never waited for by a claim). @default 1000 */
  pruneBatch?: number
  /** Told when deleting stale counters failed (nothing else depends on it: it is tried again later). */
  onError?(error: Error): void
}

export const POSTGRES_LIMIT_COUNTERS_DEFAULTS = Object.freeze({ pruneIntervalMs: 60_000, pruneBatch: 1000 })

const COLUMNS = 'key, window_start, failures, blocked_until, last_block_ms'

const READ = `SELECT ${COLUMNS} FROM mqtt_bootstrap.limit_counters WHERE key = ANY($1::text[])`

// Each key's row, made when missing (all zero: the same as no counter) and locked, in the order of $1 (sorted). A
// missing row cannot be locked: made first, a concurrent first failure of the same key waits on it instead of being
// overwritten. The no-op SET only takes the lock of a row that exists.
const LOCK = `
INSERT INTO mqtt_bootstrap.limit_counters AS c (${COLUMNS})
SELECT key, 0, 0, 0, 0 FROM unnest($1::text[]) WITH ORDINALITY AS k (key, i) ORDER BY i
ON CONFLICT (key) DO UPDATE SET failures = c.failures
RETURNING ${COLUMNS}`

const WRITE = `
UPDATE mqtt_bootstrap.limit_counters AS c
SET window_start = v.window_start, failures = v.failures, blocked_until = v.blocked_until, last_block_ms = v.last_block_ms
FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bigint[], $5::bigint[]) AS v (${COLUMNS})
WHERE c.key = v.key`

// The rows LOCK made for keys left unwritten (all zero: no counter ever is, its window starts at a real time): gone
// with the transaction, so that 429s for many identities leave no rows behind.
const UNMADE = `
DELETE FROM mqtt_bootstrap.limit_counters
WHERE key = ANY($1::text[]) AND window_start = 0 AND failures = 0 AND blocked_until = 0 AND last_block_ms = 0`

// $1 now, $2 window (ms), $3 batch. SKIP LOCKED: rows a claim holds are not waited for (they are not stale anyway).
const PRUNE = `
DELETE FROM mqtt_bootstrap.limit_counters WHERE key IN (
  SELECT key FROM mqtt_bootstrap.limit_counters
  WHERE window_start + $2::bigint <= $1::bigint AND blocked_until + GREATEST(last_block_ms, $2::bigint) <= $1::bigint
  LIMIT $3 FOR UPDATE SKIP LOCKED
)`

interface CounterRow {
  key: string
  window_start: string
  failures: number
  blocked_until: string
  last_block_ms: string
}

/** The limiter's counters of every process behind one name, in PostgreSQL: `new ClaimLimiter({ store })`. */
export class PostgresLimitCounters implements LimitCounterStore {
  readonly pruneIntervalMs: number
  readonly pruneBatch: number
  readonly #pool: pg.Pool
  readonly #onError: ((error: Error) => void) | undefined
  /** When this process last started deleting stale counters (the limiter's clock); the first one interval in. */
  #prunedAt: number | undefined
  #pruning = false

  constructor(pool: pg.Pool, options: PostgresLimitCountersOptions = {}) {
    const d = POSTGRES_LIMIT_COUNTERS_DEFAULTS
    const { pruneIntervalMs = d.pruneIntervalMs, pruneBatch = d.pruneBatch, onError } = options
    if (typeof pool?.query !== 'function') throw new TypeError('Expected `pool` to be a pg.Pool')
    for (const [name, value] of Object.entries({ pruneIntervalMs, pruneBatch })) {
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new TypeError(`Expected \`${name}\` to be a positive integer, got ${String(value)}`)
      }
    }
    if (onError !== undefined && typeof onError !== 'function') {
      throw new TypeError('Expected `onError` to be a function')
    }
    this.pruneIntervalMs = pruneIntervalMs
    this.pruneBatch = pruneBatch
    this.#pool = pool
    this.#onError = onError
  }

  async update<T>(given: readonly string[], at: LimitCounterUpdate, change: LimitCounterChanger<T>): Promise<T> {
    // A claimed identity is anything a client sent: stored as text PostgreSQL takes, one key for one text.
    const keys = given.map(storable)
    this.#pruneSometimes(at)
    if (!at.writes) {
      const { rows } = await query<CounterRow>(this.#pool, 'read the claim limits', READ, [keys])
      const { result, write } = change(inOrder(keys, rows))
      if (write.every((counter) => counter === undefined)) return result
    }
    return transaction(this.#pool, 'count a failed claim', async (client) => {
      const sorted = [...new Set(keys)].sort()
      const { rows } = await client.query<CounterRow>(LOCK, [sorted])
      const { result, write } = change(inOrder(keys, rows))
      const changed = keys.flatMap((key, i) => (write[i] === undefined ? [] : [{ key, ...(write[i] as LimitCounter) }]))
      const unwritten = keys.filter((_key, i) => write[i] === undefined)
      if (unwritten.length > 0) await client.query(UNMADE, [unwritten])
      if (changed.length > 0) {
        // Whole ms, as the columns are (a clock may answer fractions).
        const column = (pick: (counter: LimitCounter) => number) => changed.map((counter) => Math.round(pick(counter)))
        await client.query(WRITE, [
          changed.map(({ key }) => key),
          column((c) => c.windowStart),
          column((c) => c.failures),
          column((c) => c.blockedUntil),
          column((c) => c.lastBlockMs),
        ])
      }
      return result
    })
  }

  /** Delete up to `pruneBatch` stale counters (see `staleCounter`) now; answers how many. */
  async prune(now: number, windowMs: number): Promise<number> {
    const values = [Math.floor(now), windowMs, this.pruneBatch]
    const { rowCount } = await query(this.#pool, 'delete stale claim limits', PRUNE, values)
    return rowCount ?? 0
  }

  /** A prune in the background once per interval: a claim never waits for it, and its failure is only told. */
  #pruneSometimes(at: LimitCounterUpdate): void {
    this.#prunedAt ??= at.now
    if (this.#pruning || at.now - this.#prunedAt < this.pruneIntervalMs) return
    this.#pruning = true
    this.#prunedAt = at.now
    this.prune(at.now, at.windowMs)
      .catch((error: Error) => {
        try {
          this.#onError?.(error)
        } catch {} // a hook that throws must not be the process's unhandled rejection
      })
      .finally(() => {
        this.#pruning = false
      })
  }
}

/** The counters of `keys` in their order, from rows in any order (`undefined` for a key without one). */
function inOrder(keys: readonly string[], rows: CounterRow[]): Array<LimitCounter | undefined> {
  const byKey = new Map(rows.map((row) => [row.key, row]))
  return keys.map((key) => {
    const row = byKey.get(key)
    if (row === undefined) return undefined
    const { window_start, failures, blocked_until, last_block_ms } = row
    return {
      windowStart: Number(window_start),
      failures: Number(failures),
      blockedUntil: Number(blocked_until),
      lastBlockMs: Number(last_block_ms),
    }
  })
}
