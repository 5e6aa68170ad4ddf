/**
 * One claim against the pool: the identity's triplet, assigned on its first claim. Atomic whatever the number of
 * server processes: the identity's row is locked for the transaction (two claims of one identity are served one after
 * the other, the second finding the first's triplet), and a free triplet is taken with `FOR UPDATE SKIP LOCKED` (two
 * claims of two identities never wait for each other's triplet). `triplets.identity` is UNIQUE and one column, so
 * that neither an identity with two triplets nor a triplet with two identities can be written at all. The audit row is
 * written in the same transaction: a claim answered is a claim recorded, and a process killed before COMMIT leaves
 * neither (PostgreSQL rolls the transaction back when its connection ends). A renewal (issue 18) is a look-up only:
 * the identity's own triplet, of the certificate's deviceName, never a new one from the pool.
 */
import type pg from 'pg'
import { query, transaction } from './pool.js'
import type { ClaimPolicy } from './settings.js'

export const POOL_CODES = Object.freeze({
  /** The pool has no free triplet. */
  POOL_EXHAUSTED: '10006',
  /** The identity is revoked (`registry revoke`). */
  REVOKED: '10007',
})

export interface Triplet {
  productKey: string
  deviceName: string
  deviceSecret: string
}

/** What one claim comes to: the identity's triplet, or a refusal code. */
export type ClaimOutcome = { code: '00000'; triplet: Triplet } | { code: string }

export interface ClaimRequest {
  identity: string
  policy: ClaimPolicy
  /**
   * A renewal's deviceName (its certificate's CN): answered only the identity's triplet of that name, else `"10004"`
   * (`"10001"` for an identity not on the allow-list, `"10007"` for a revoked one); nothing is assigned.
   */
  renewal?: string | undefined
  /** The audit's columns. */
  peer: string | undefined
  server: string
  nowMs: number
}

interface TripletRow {
  id: string
  product_key: string
  device_name: string
  device_secret: string
}

/** A renewal whose certificate is not of this identity's device (the handler's own answer to it: HTTP 401). */
const NOT_ITS_OWN = '10004'

const T = 'mqtt_bootstrap.triplets'
const I = 'mqtt_bootstrap.identities'
const TRIPLET_COLUMNS = 'id, product_key, device_name, device_secret'

/**
 * The common case in one statement: an identity served before gets its triplet (a re-claim), a revoked one its
 * refusal, an unknown one under an allow-list its `"10001"`, each with its audit row. `undefined`: it needs a triplet
 * (the transaction of {@link assign}); never for a renewal, which is answered here whatever it finds.
 */
async function known(pool: pg.Pool, c: ClaimRequest): Promise<ClaimOutcome | undefined> {
  const { rows } = await query<TripletRow & { found: boolean; revoked: boolean }>(
    pool,
    'look up a claimed identity',
    `WITH hit AS (
       SELECT true AS found, i.revoked_at IS NOT NULL AS revoked, ${TRIPLET_COLUMNS.replace(/(\w+)/g, 't.$1')}
       FROM ${I} i LEFT JOIN ${T} t ON t.identity = i.identity WHERE i.identity = $1),
     answer AS (
       SELECT * FROM hit
       UNION ALL SELECT false, false, NULL, NULL, NULL, NULL WHERE NOT EXISTS (SELECT FROM hit)),
     judged AS (
       SELECT *, CASE WHEN revoked THEN '${POOL_CODES.REVOKED}'
                      WHEN $6::text IS NOT NULL AND device_name IS DISTINCT FROM $6::text
                           AND (found OR $5 <> 'allow-list') THEN '${NOT_ITS_OWN}'
                      WHEN NOT found THEN '10001' ELSE '00000' END AS code
       FROM answer),
     noted AS (
       INSERT INTO mqtt_bootstrap.claims (at, identity, peer, code, status, server, triplet_id)
       SELECT to_timestamp($2 / 1000.0), $1, $3, code, CASE WHEN code = '${NOT_ITS_OWN}' THEN 401 ELSE 200 END, $4,
              CASE WHEN code = '00000' THEN id END
       FROM judged WHERE revoked OR id IS NOT NULL OR (NOT found AND $5 = 'allow-list') OR $6::text IS NOT NULL)
     SELECT * FROM answer`,
    [c.identity, c.nowMs, c.peer ?? null, c.server, c.policy, c.renewal ?? null],
  )
  const row = rows[0] as TripletRow & { found: boolean; revoked: boolean }
  if (row.revoked) return { code: POOL_CODES.REVOKED }
  if (c.renewal !== undefined) {
    if (row.id !== null && row.device_name === c.renewal) return served(row)
    return { code: !row.found && c.policy === 'allow-list' ? '10001' : NOT_ITS_OWN }
  }
  if (row.id !== null) return served(row)
  if (!row.found && c.policy === 'allow-list') return { code: '10001' }
  return undefined
}

/** The claim's outcome, its audit row written with it. */
export async function claimTriplet(pool: pg.Pool, c: ClaimRequest): Promise<ClaimOutcome> {
  return (await known(pool, c)) ?? assign(pool, c)
}

async function assign(pool: pg.Pool, c: ClaimRequest): Promise<ClaimOutcome> {
  return transaction(pool, 'assign a triplet', async (client) => {
    const at = 'to_timestamp($2 / 1000.0)'
    if (c.policy === 'any-signed') {
      await client.query(`INSERT INTO ${I} (identity, allowed_at) VALUES ($1, ${at}) ON CONFLICT DO NOTHING`, [
        c.identity,
        c.nowMs,
      ])
    }
    // Held until COMMIT: a second claim of this identity, in any process, waits here and then finds the triplet.
    const locked = await client.query<{ revoked: boolean }>(
      `SELECT revoked_at IS NOT NULL AS revoked FROM ${I} WHERE identity = $1 FOR UPDATE`,
      [c.identity],
    )
    const identity = locked.rows[0]
    let outcome: ClaimOutcome
    let tripletId: string | null = null
    if (identity === undefined)
      outcome = { code: '10001' } // removed from the allow-list meanwhile
    else if (identity.revoked) outcome = { code: POOL_CODES.REVOKED }
    else {
      const row = (await held(client, c.identity)) ?? (await take(client, c))
      outcome = row === undefined ? { code: POOL_CODES.POOL_EXHAUSTED } : served(row)
      tripletId = row?.id ?? null
    }
    await client.query(
      `INSERT INTO mqtt_bootstrap.claims (at, identity, peer, code, status, server, triplet_id)
       VALUES (${at}, $1, $3, $4, 200, $5, $6)`,
      [c.identity, c.nowMs, c.peer ?? null, outcome.code, c.server, tripletId],
    )
    return outcome
  })
}

/** The identity's triplet, when a claim that committed before our lock assigned one. */
async function held(client: pg.PoolClient, identity: string): Promise<TripletRow | undefined> {
  const { rows } = await client.query<TripletRow>(`SELECT ${TRIPLET_COLUMNS} FROM ${T} WHERE identity = $1`, [identity])
  return rows[0]
}

/**
 * A free triplet, assigned to the identity. The free ones that other claims hold locked are skipped; when every free
 * one is held, the second query waits for their claims to end (PostgreSQL re-checks each row once its lock is
 * released, and skips those assigned meanwhile), so that `"10006"` means no triplet is free, not that all were busy.
 */
async function take(client: pg.PoolClient, c: ClaimRequest): Promise<TripletRow | undefined> {
  for (const skip of [' SKIP LOCKED', '']) {
    const { rows } = await client.query<TripletRow>(
      `UPDATE ${T} SET identity = $1, assigned_at = to_timestamp($2 / 1000.0)
       WHERE id = (SELECT id FROM ${T} WHERE identity IS NULL ORDER BY id LIMIT 1 FOR UPDATE${skip})
       RETURNING ${TRIPLET_COLUMNS}`,
      [c.identity, c.nowMs],
    )
    if (rows[0] !== undefined) return rows[0]
  }
  return undefined
}

function served(row: TripletRow): ClaimOutcome {
  return {
    code: '00000',
    triplet: { productKey: row.product_key, deviceName: row.device_name, deviceSecret: row.device_secret },
  }
}
