/**
 * Re-claims' log in PostgreSQL (table `mqtt_bootstrap.served`), shared by every server process: a device that claims
 * again from another process is still recognised. One row per identity served, so the table is bounded by the fleet.
 */
import type pg from 'pg'
import type { ClaimLog, ServedClaim } from '../claims/reclaims.js'
import { query } from './pool.js'

// $1 identity, $2 time (ms), $3 digest. `before` locks the identity's row and reads its latest version (a concurrent
// update is waited for), so the row is replaced and what it held is answered in one statement. Without a row, `added`
// inserts one; when a concurrent first claim inserted it meanwhile, nothing is written (`added` is 0): asked again,
// the next statement sees that claim.
const SERVED = `
WITH before AS (
  SELECT identity, time_ms, digest FROM mqtt_bootstrap.served WHERE identity = $1::text FOR UPDATE
), replaced AS (
  UPDATE mqtt_bootstrap.served AS s SET time_ms = $2::bigint, digest = $3::text
  FROM before WHERE s.identity = before.identity
  RETURNING before.time_ms, before.digest
), added AS (
  INSERT INTO mqtt_bootstrap.served (identity, time_ms, digest)
  SELECT $1::text, $2::bigint, $3::text WHERE NOT EXISTS (SELECT 1 FROM before)
  ON CONFLICT (identity) DO NOTHING
  RETURNING 1
)
SELECT (SELECT count(*) FROM added)::int AS added, time_ms::text, digest FROM (SELECT 1) AS one
LEFT JOIN replaced ON true`

/** Tries of one call: a second only after losing a first claim's race, a third only if that row vanished meanwhile. */
const ATTEMPTS = 3

/** The identities served by every process behind one name, in PostgreSQL. */
export class PostgresClaimLog implements ClaimLog {
  readonly #pool: pg.Pool

  constructor(pool: pg.Pool) {
    if (typeof pool?.query !== 'function') throw new TypeError('Expected `pool` to be a pg.Pool')
    this.#pool = pool
  }

  async served(identity: string, claim: ServedClaim): Promise<ServedClaim | undefined> {
    const values = [identity, Math.round(claim.timeMs), claim.digest]
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const { rows } = await query<{ added: number; time_ms: string | null; digest: string | null }>(
        this.#pool,
        'note a served claim',
        SERVED,
        values,
      )
      const row = rows[0]
      if (row?.time_ms != null && row.digest != null) return { timeMs: Number(row.time_ms), digest: row.digest }
      if (row?.added === 1) return undefined
    }
    throw new Error(`the database could not note a served claim: it changed under ${ATTEMPTS} tries`)
  }
}
