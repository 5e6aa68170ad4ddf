/**
 * The PostgreSQL registry against faults and hostile input (issue 16's review): a connection lost in the middle of a
 * claim's transaction, identities PostgreSQL cannot hold as they are, imports that overlap, abuse that would leave
 * rows behind, and the password of the connection string. Against a real PostgreSQL, through the registry's API.
 */
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { inspect } from 'node:util'
import pg from 'pg'
import { describe, expect, test } from 'vitest'
import { errorLog } from '../packages/mqtt-bootstrap-server/src/cli/error-log.js'
import {
  ClaimLimiter,
  createProvisioningHandler,
  PostgresRegistry,
  type Triplet,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { suite } from './helpers/exposure.js'
import { listenOnLoopback } from './helpers/ports.js'
import { postgresSkipReason, usePostgres } from './helpers/postgres.js'

const HOST = 'mqtts://broker.example:8883'
const PASSWORD = `pg-password-${randomBytes(6).toString('hex')}`
suite.secret(PASSWORD)

function triplets(n: number, prefix = 'dev'): Triplet[] {
  return Array.from({ length: n }, (_, i) => {
    const deviceSecret = `fault-secret-${prefix}-${i}-${randomBytes(6).toString('hex')}`
    suite.secret(deviceSecret)
    return { productKey: 'a1FaultPK', deviceName: `${prefix}-${i}`, deviceSecret }
  })
}

describe.skipIf(postgresSkipReason())('the PostgreSQL registry under faults', () => {
  const cluster = usePostgres()
  const closers = { push: cluster.closeLater }

  /** A migrated registry whose claims are unsigned (attestation "none": resolve is called directly here). */
  async function fresh() {
    const url = await cluster.db.database()
    // trust authentication takes any password: the URL carries one, as a production URL would.
    const withPassword = url.replace('postgres@', `postgres:${PASSWORD}@`)
    const errors: Error[] = []
    const registry = await PostgresRegistry.open({ connectionString: withPassword, onError: (e) => errors.push(e) })
    closers.push(() => registry.close())
    await registry.migrate()
    await registry.configure({ attestation: 'none', connect: { host: HOST } })
    const admin = new pg.Client(url)
    await admin.connect()
    closers.push(() => admin.end())
    return { registry, admin, errors }
  }

  test('a connection lost inside a claim transaction: 503, the process lives, nothing is assigned', async () => {
    const { registry, admin } = await fresh()
    await registry.importTriplets(triplets(1))
    await registry.allow(['860000000000001'])
    // Hold the identity's row: the claim's transaction waits on it, inside BEGIN.
    const holder = new pg.Client(cluster.db.url(admin.database))
    await holder.connect()
    closers.push(() => holder.end())
    await holder.query('BEGIN')
    await holder.query(`SELECT 1 FROM mqtt_bootstrap.identities WHERE identity = '860000000000001' FOR UPDATE`)
    const claim = registry.resolve({ imei: '860000000000001' })
    const waiting = async () => {
      const { rows } = await admin.query(
        `SELECT pid FROM pg_stat_activity WHERE application_name = 'mqtt-bootstrap' AND wait_event_type = 'Lock'`,
      )
      return rows as Array<{ pid: number }>
    }
    let pids: Array<{ pid: number }> = []
    for (let i = 0; i < 100 && pids.length === 0; i++) {
      pids = await waiting()
      if (pids.length === 0) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(pids).toHaveLength(1)
    await admin.query('SELECT pg_terminate_backend($1)', [pids[0]?.pid])
    await expect(claim).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' })
    await holder.query('ROLLBACK')
    expect((await registry.counts()).assigned).toBe(0)
    // The pool dropped the lost connection and serves with a new one.
    expect(await registry.resolve({ imei: '860000000000001' })).toMatchObject({ device: { deviceName: 'dev-0' } })
  })

  test('identities PostgreSQL cannot hold as they are: unknown to resolve, refused by allow, escaped in the audit', async () => {
    const { registry, admin, errors } = await fresh()
    await registry.importTriplets(triplets(2))
    await registry.allow(['x\ufffd'])
    // A lone surrogate would become U+FFFD in the database, and claim another identity's triplet.
    expect(await registry.resolve({ imei: 'x\ud800' })).toBeUndefined()
    expect(await registry.resolve({ imei: 'a\u0000b' })).toBeUndefined()
    await expect(registry.allow(['x\ud800'])).rejects.toThrow(
      /identity #1 must be 1 to 256 characters of valid Unicode/,
    )
    await expect(registry.revoke(['a\u0000b'])).rejects.toThrow(TypeError)
    expect((await registry.counts()).assigned).toBe(0)
    const request = {} as never
    registry.audit({ request, status: 200, code: '10001', data: { imei: 'a\u0000b\ud800' }, renewal: false })
    let rows: Array<{ identity: string }> = []
    for (let i = 0; i < 50 && rows.length === 0; i++) {
      rows = (await admin.query('SELECT identity FROM mqtt_bootstrap.claims')).rows
      if (rows.length === 0) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(rows.map((row) => row.identity)).toEqual(['a\\u0000b\\ud800'])
    expect(errors).toEqual([])
  })

  test('a hostile identity through the handler with the shared limits: answered, counted, never a 500', async () => {
    const { registry, admin } = await fresh()
    await registry.importTriplets(triplets(1))
    const errors: unknown[] = []
    const server = createServer(
      createProvisioningHandler({
        resolve: registry.resolve,
        verify: registry.verifier(),
        limits: registry.limiter(), // per identity by default: the settings' field
        onRequest: registry.audit,
        onError: (error) => errors.push(error),
      }),
    )
    const { port, close } = await listenOnLoopback(server)
    closers.push(close)
    const url = `http://127.0.0.1:${port}/`
    const post = async (imei: string) => {
      const body = JSON.stringify({ imei })
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      return { status: response.status, ...((await response.json()) as { code: string }) }
    }
    for (const imei of ['a\u0000b', 'x\ud800', 'a\\u0000b'])
      expect(await post(imei)).toMatchObject({ status: 200, code: '10001' })
    expect(errors).toEqual([])
    // Counted per identity, each its own key: the text with a NUL and the text that spells one are two.
    const { rows } = await admin.query(
      `SELECT key FROM mqtt_bootstrap.limit_counters WHERE key LIKE 'i:%' ORDER BY key`,
    )
    expect(rows.map((row) => row.key)).toEqual(['i:a\\\\u0000b', 'i:a\\u0000b', 'i:x\\ud800'])
  })

  test('a connection handed from one caller to the next keeps an error listener throughout', async () => {
    const url = await cluster.db.database()
    const registry = await PostgresRegistry.open({ connectionString: url, maxConnections: 1 })
    closers.push(() => registry.close())
    const first = await registry.pool.connect()
    const next = registry.pool.connect() // queued: the first's connection is handed to it on release
    first.release()
    const second = await next
    // Before this caller adds a listener of its own: a shutdown message read now would otherwise be unheard.
    expect(second.listenerCount('error')).toBeGreaterThan(0)
    second.release()
  })

  test('two imports of the same devices in opposite orders at once: both succeed, no deadlock', async () => {
    const { registry } = await fresh()
    const pool = triplets(400)
    const results = await Promise.all([registry.importTriplets(pool), registry.importTriplets([...pool].reverse())])
    expect(results.map((r) => r.added + r.existing)).toEqual([400, 400])
    expect(results[0].added + (results[1]?.added ?? 0)).toBe(400)
    // The pool keeps the order of the import that added it: the first free triplet is its first row.
    const first = results[0].added === 400 ? pool[0] : pool[399]
    await registry.allow(['first'])
    expect(await registry.resolve({ imei: 'first' })).toMatchObject({ device: { deviceName: first?.deviceName } })
    const ids = Array.from({ length: 300 }, (_, i) => `id-${i}`)
    await Promise.all([registry.allow(ids), registry.revoke([...ids].reverse()), registry.allow(ids)])
    expect((await registry.list()).identities).toHaveLength(301) // and 'first'
  })

  test('429s for many identities leave no counter rows behind', async () => {
    const { registry, admin } = await fresh()
    let now = 1_000_000
    const limiter = registry.limiter({ clock: { now: () => now } })
    expect(limiter).toBeInstanceOf(ClaimLimiter)
    for (let i = 0; i < 10; i++) await limiter.gate('203.0.113.7', `id-${i}`).failed('10001')
    // The address is over the limit: each new identity is answered 429, and no row is kept for it.
    for (let i = 10; i < 60; i++) {
      now += 10
      expect((await limiter.gate('203.0.113.7', `id-${i}`).refused('10001'))?.[0]).toBe(429)
    }
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM mqtt_bootstrap.limit_counters')
    expect(rows[0].n).toBe(11) // the address and the ten identities counted before it was over
  })

  test('inspect and JSON show the database by its label, never the password', async () => {
    const { registry } = await fresh()
    expect(inspect(registry, { depth: 10 })).not.toContain(PASSWORD)
    expect(JSON.stringify(registry)).not.toContain(PASSWORD)
    expect(JSON.stringify(registry)).toMatch(/postgres:\/\/127\.0\.0\.1:\d+\/t\d+_\d+/)
    expect(registry.label).not.toContain('postgres@')
  })
})

test("serve's error log: the same message at most once per 10 s, then with how many were left out", () => {
  const lines: string[] = []
  const original = console.error
  console.error = (line: string) => lines.push(line)
  try {
    let now = 0
    const log = errorLog(() => now)
    for (let i = 0; i < 50; i++) log('the database could not look up a claimed identity: ECONNREFUSED')
    log('another failure')
    now = 10_001
    log('the database could not look up a claimed identity: ECONNREFUSED')
    expect(lines).toHaveLength(3)
    expect(lines[2]).toMatch(/ECONNREFUSED \(and 49 more like it in 10 s\)$/)
  } finally {
    console.error = original
  }
})
