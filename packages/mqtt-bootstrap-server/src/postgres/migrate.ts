/**
 * The registry's schema, versioned: the SQL files of the package's `migrations/` directory, applied in order by
 * node-pg-migrate (a well-kept tool: it records what ran in `mqtt_bootstrap.migrations`, runs the pending files in
 * one transaction, and holds an advisory lock meanwhile, so that two server processes starting at once apply each file
 * once, the second waiting for the first). It is loaded only when migrating: a serving process never needs it twice.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type pg from 'pg'
import { databaseError } from './pool.js'

export const SCHEMA = 'mqtt_bootstrap'

/** The first migration's file: how the package's `migrations/` directory is recognised. */
const FIRST = '0001_registry.sql'

/**
 * `migrations/` of this package: beside `dist/` when built, two levels up from `src/postgres/` under tsx or vitest.
 */
export function migrationsDir(): string {
  const here = typeof __dirname === 'string' ? __dirname : dirname(fileURLToPath(import.meta.url))
  for (let dir = here, up = 0; up < 4; dir = dirname(dir), up++) {
    const candidate = join(dir, 'migrations')
    if (existsSync(join(candidate, FIRST))) return candidate
  }
  throw new Error(`mqtt-bootstrap-server: its migrations/ directory is missing (looked up from ${here})`)
}

/**
 * Apply the pending migrations on a connection of its own (node-pg-migrate changes its search_path); answers the
 * names of those applied now, `[]` when the schema is up to date.
 */
export async function migrate(config: pg.PoolConfig): Promise<string[]> {
  const [{ runner }, { default: postgres }] = await Promise.all([import('node-pg-migrate'), import('pg')])
  // No statement timeout: a migration may take long, and a second server waits on the advisory lock meanwhile.
  // (pg sends no statement_timeout of 0: the session's options say it, over a role's or a database's own.)
  const { statement_timeout: _s, idle_in_transaction_session_timeout: _i, query_timeout: _q, ...connection } = config
  const client = new postgres.Client({
    ...connection,
    options: '-c statement_timeout=0 -c idle_in_transaction_session_timeout=0',
  })
  client.on('error', () => {}) // a connection lost mid-migration: the statement in flight fails, and that is told
  try {
    await client.connect()
    // Two processes creating it at once: the loser gets a unique violation, and the schema is there all the same.
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`).catch((error: { code?: string }) => {
      if (error.code !== '23505' && error.code !== '42P06') throw error
    })
    const applied = await runner({
      dbClient: client,
      dir: migrationsDir(),
      schema: SCHEMA,
      migrationsSchema: SCHEMA,
      migrationsTable: 'migrations',
      direction: 'up',
      checkOrder: true,
      singleTransaction: true,
      advisoryLockMode: 'wait',
      logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    })
    return applied.map((migration) => migration.name)
  } catch (error) {
    throw databaseError(error, 'apply the migrations')
  } finally {
    await client.end().catch(() => {})
  }
}
