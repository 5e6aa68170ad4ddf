/**
 * The registry's administration (the `mqtt-bootstrap registry` commands): the pool's import, the allow-list,
 * revocation, the listing and the settings. Each is one transaction: an import with one bad row imports nothing.
 * Nothing here returns or reports a device secret.
 */
import { parseDeviceConfig } from 'mqtt-bootstrap/contract'
import type pg from 'pg'
import type { Triplet } from './assign.js'
import { query, transaction } from './pool.js'
import { checkSetting, type RegistrySettings, settingsOf } from './settings.js'

/** The advisory lock imports take (a constant of this schema's own). */
const IMPORT_LOCK = 0x6d71_7474_6273

/** Rows sent per statement: 100,000 triplets are 20 statements, each well under PostgreSQL's message limits. */
const BATCH = 5000

/**
 * Identities checked ({@link isIdentity}), each once, sorted: two statements locking the same rows lock them in the
 * same order, and never deadlock.
 */
function checkIdentities(identities: readonly unknown[]): string[] {
  if (!Array.isArray(identities)) throw new TypeError('Expected identities to be an array of strings')
  identities.forEach((identity, index) => {
    if (!isIdentity(identity)) {
      throw new TypeError(`identity #${index + 1} must be 1 to 256 characters of valid Unicode, no control characters`)
    }
  })
  return [...new Set(identities as string[])].sort()
}

/**
 * 1 to 256 characters (the key id's limit: a longer one could never be signed for), well-formed Unicode (PostgreSQL
 * would turn a lone surrogate into U+FFFD, and two identities into one) and no control character (NUL is refused by
 * PostgreSQL; the others have no place in an identity).
 */
export function isIdentity(value: unknown): value is string {
  return (
    typeof value === 'string' && value.length >= 1 && value.length <= 256 && !/[\p{Cc}\p{Cs}]/u.test(value) // with the u flag, only a lone surrogate is a Cs code point
  )
}

/** Any valid `connect`: a triplet is checked on its own. */
const CHECK_CONNECT = { host: 'mqtt://127.0.0.1' }

/** Each triplet checked as the device will check it; a TypeError names the row (1-based), never its secret. */
function checkTriplets(rows: Iterable<Triplet>): Triplet[] {
  const triplets = [...rows]
  triplets.forEach((row, index) => {
    const { productKey, deviceName, deviceSecret } = (row ?? {}) as Partial<Triplet>
    if (![productKey, deviceName, deviceSecret].every((field) => typeof field === 'string' && field !== '')) {
      throw new TypeError(`triplet #${index + 1} needs productKey, deviceName and deviceSecret`)
    }
    const config = parseDeviceConfig({ device: { productKey, deviceName, deviceSecret }, connect: CHECK_CONNECT })
    if (!config.ok) throw new TypeError(`triplet #${index + 1}: ${config.problem}`)
  })
  return triplets
}

export async function importTriplets(pool: pg.Pool, rows: Iterable<Triplet>) {
  const triplets = checkTriplets(rows)
  return transaction(pool, 'import triplets', async (client) => {
    // One import at a time (claims are not held up): two imports of the same devices in different orders would
    // otherwise wait for each other's rows, a deadlock. The pool keeps the import's order: it is assigned in it.
    await client.query('SELECT pg_advisory_xact_lock($1)', [IMPORT_LOCK])
    let added = 0
    let existing = 0
    for (let start = 0; start < triplets.length; start += BATCH) {
      const batch = triplets.slice(start, start + BATCH)
      const columns = [batch.map((t) => t.productKey), batch.map((t) => t.deviceName), batch.map((t) => t.deviceSecret)]
      const inserted = await client.query(
        `INSERT INTO mqtt_bootstrap.triplets (product_key, device_name, device_secret)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (product_key, device_name) DO NOTHING`,
        columns,
      )
      added += inserted.rowCount ?? 0
      // A device already in the pool with another secret: the export is not the pool's; refused, not ignored.
      const { rows: changed } = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM unnest($1::text[], $2::text[], $3::text[]) AS u(pk, dn, ds)
         JOIN mqtt_bootstrap.triplets t ON t.product_key = u.pk AND t.device_name = u.dn WHERE t.device_secret <> u.ds`,
        columns,
      )
      const differ = Number(changed[0]?.n ?? 0)
      if (differ > 0) {
        throw new TypeError(
          `${differ} triplet(s) name a device already in the pool with another secret; nothing was imported`,
        )
      }
      existing += batch.length - (inserted.rowCount ?? 0)
    }
    return { added, existing }
  })
}

export async function allow(pool: pg.Pool, identities: readonly string[], nowMs: number) {
  const list = checkIdentities(identities)
  const { rows } = await query<{ inserted: boolean }>(
    pool,
    'allow identities',
    `INSERT INTO mqtt_bootstrap.identities (identity, allowed_at)
     SELECT id, to_timestamp($2 / 1000.0) FROM unnest($1::text[]) WITH ORDINALITY AS u (id, i) ORDER BY i
     ON CONFLICT (identity) DO UPDATE SET revoked_at = NULL WHERE mqtt_bootstrap.identities.revoked_at IS NOT NULL
     RETURNING (xmax = 0) AS inserted`,
    [list, nowMs],
  )
  const added = rows.filter((row) => row.inserted).length
  return { added, restored: rows.length - added }
}

/** Revoked identities keep their triplet (its secret was handed out: it must not go to another device). */
export async function revoke(pool: pg.Pool, identities: readonly string[], nowMs: number) {
  const list = checkIdentities(identities)
  const { rowCount } = await query(
    pool,
    'revoke identities',
    `INSERT INTO mqtt_bootstrap.identities (identity, allowed_at, revoked_at)
     SELECT id, to_timestamp($2 / 1000.0), to_timestamp($2 / 1000.0)
     FROM unnest($1::text[]) WITH ORDINALITY AS u (id, i) ORDER BY i
     ON CONFLICT (identity) DO UPDATE SET revoked_at = EXCLUDED.revoked_at
     WHERE mqtt_bootstrap.identities.revoked_at IS NULL`,
    [list, nowMs],
  )
  return { revoked: rowCount ?? 0 }
}

export interface RegistryListing {
  triplets: { total: number; free: number; assigned: number }
  identities: Array<{
    identity: string
    allowedAt: Date
    revokedAt?: Date
    device?: { productKey: string; deviceName: string }
    assignedAt?: Date
  }>
}

export async function counts(pool: pg.Pool): Promise<RegistryListing['triplets']> {
  const { rows } = await query<{ total: string; free: string }>(
    pool,
    'count the pool',
    'SELECT count(*) AS total, count(*) FILTER (WHERE identity IS NULL) AS free FROM mqtt_bootstrap.triplets',
  )
  const total = Number(rows[0]?.total ?? 0)
  const free = Number(rows[0]?.free ?? 0)
  return { total, free, assigned: total - free }
}

export async function list(pool: pg.Pool): Promise<RegistryListing> {
  const triplets = await counts(pool)
  const { rows } = await query(
    pool,
    'list identities',
    `SELECT i.identity, i.allowed_at, i.revoked_at, t.product_key, t.device_name, t.assigned_at
     FROM mqtt_bootstrap.identities i LEFT JOIN mqtt_bootstrap.triplets t ON t.identity = i.identity
     ORDER BY i.identity`,
  )
  return {
    triplets,
    identities: rows.map((row) => ({
      identity: row.identity,
      allowedAt: row.allowed_at,
      ...(row.revoked_at === null ? {} : { revokedAt: row.revoked_at }),
      ...(row.product_key === null ? {} : { device: { productKey: row.product_key, deviceName: row.device_name } }),
      ...(row.assigned_at === null ? {} : { assignedAt: row.assigned_at }),
    })),
  }
}

export async function readSettings(pool: pg.Pool): Promise<RegistrySettings> {
  const { rows } = await query<{ name: string; value: unknown }>(
    pool,
    'read the settings',
    'SELECT name, value FROM mqtt_bootstrap.settings',
  )
  return settingsOf(rows)
}

/** Settings to change (`null` removes one), or a function of the current settings that answers them. */
export type SettingsChanges = Record<string, unknown> | ((current: RegistrySettings) => Record<string, unknown>)

/**
 * Set some settings, checked one by one and then together, in one transaction holding the settings table: one
 * configure at a time, so that changes made of the current settings (an updater) never lose another's.
 */
export async function configure(pool: pg.Pool, changes: SettingsChanges): Promise<Record<string, unknown>> {
  return transaction(pool, 'configure the registry', async (client) => {
    await client.query('LOCK TABLE mqtt_bootstrap.settings IN SHARE ROW EXCLUSIVE MODE')
    const current = await client.query<{ name: string; value: unknown }>(
      'SELECT name, value FROM mqtt_bootstrap.settings',
    )
    const wanted = typeof changes === 'function' ? changes(settingsOf(current.rows)) : changes
    const checked = Object.entries(wanted).map(([name, value]) => [
      name,
      value === null ? null : checkSetting(name, value),
    ])
    for (const [name, value] of checked) {
      if (value === null) await client.query('DELETE FROM mqtt_bootstrap.settings WHERE name = $1', [name])
      else {
        await client.query(
          `INSERT INTO mqtt_bootstrap.settings (name, value) VALUES ($1, $2)
           ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()`,
          [name, JSON.stringify(value)],
        )
      }
    }
    const { rows } = await client.query<{ name: string; value: unknown }>(
      'SELECT name, value FROM mqtt_bootstrap.settings',
    )
    const settings = settingsOf(rows)
    if (settings.claims === 'any-signed' && typeof settings.attestation !== 'object') {
      throw new TypeError('"any-signed" claims need a group key: configure attestation with a groupKeyFile first')
    }
    return wanted
  })
}
