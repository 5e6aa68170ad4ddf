/**
 * The PostgreSQL stores of issue 16 against a real PostgreSQL: the nonce store (replays, expiry, the per-key bound,
 * races between two pools, the database going away and coming back), the claim log, and the limiter's counters shared
 * by two limiters, also through the real handler over HTTP. Two pools on one database stand for two server processes;
 * only the clock is fake. Each statement a store sends is counted, for the round trips per call.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type pg from 'pg'
import { request } from 'undici'
import { describe, expect, test } from 'vitest'
import { ClaimLimiter, type ClaimLimitsOptions } from '../packages/mqtt-bootstrap-server/src/claims/limits.js'
import { NonceStoreFullError } from '../packages/mqtt-bootstrap-server/src/claims/nonces.js'
import { signedClaims } from '../packages/mqtt-bootstrap-server/src/claims/verify.js'
import { createProvisioningHandler } from '../packages/mqtt-bootstrap-server/src/handler.js'
import { PostgresClaimLog } from '../packages/mqtt-bootstrap-server/src/postgres/claim-log.js'
import { PostgresLimitCounters } from '../packages/mqtt-bootstrap-server/src/postgres/counters.js'
import { PostgresNonceStore } from '../packages/mqtt-bootstrap-server/src/postgres/nonces.js'
import { createPool } from '../packages/mqtt-bootstrap-server/src/postgres/pool.js'
import { RegistryUnavailableError } from '../packages/mqtt-bootstrap-server/src/unavailable.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'
import { listenOnLoopback } from './helpers/ports.js'
import { postgresSkipReason, usePostgres } from './helpers/postgres.js'
import { signClaimIndependently } from './helpers/sign-claim.js'

const MIGRATION = new URL('../packages/mqtt-bootstrap-server/migrations/0001_registry.sql', import.meta.url)
const GROUP_KEY = randomBytes(32).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
const IMEI = '860000000000001'
suite.secret(GROUP_KEY)
suite.secret(derive(IMEI))
suite.secret(DEVICE.deviceSecret)

describe.skipIf(postgresSkipReason())('the PostgreSQL stores', () => {
  const cluster = usePostgres()
  const closers = { push: cluster.closeLater }

  /** A fresh database with the migration's Up part applied (the lead's migrate() is not needed for this). */
  async function migrated(): Promise<string> {
    const url = await cluster.db.database()
    const sql = readFileSync(MIGRATION, 'utf8')
    const pool = await createPool({ connectionString: url })
    try {
      await pool.query(`CREATE SCHEMA mqtt_bootstrap;\n${sql.slice(0, sql.indexOf('-- Down Migration'))}`)
    } finally {
      await pool.end()
    }
    return url
  }

  /** A pool (one "server process"), ended after the test, with a count of the statements its connections ran. */
  async function poolOf(url: string) {
    const pool = await createPool({ connectionString: url, queryTimeoutMs: 2000, onError: () => {} })
    const sent = { statements: 0 }
    pool.on('connect', (client) => {
      const original = client.query.bind(client) as (...args: unknown[]) => unknown
      ;(client as { query: unknown }).query = (...args: unknown[]) => {
        sent.statements++
        return original(...args)
      }
    })
    closers.push(() => pool.end())
    return Object.assign(pool, { sent })
  }

  /** The statements `work` sent on `pool` (one round trip each). */
  async function roundTrips<T>(pool: Awaited<ReturnType<typeof poolOf>>, work: () => Promise<T>): Promise<[number, T]> {
    const before = pool.sent.statements
    const result = await work()
    return [pool.sent.statements - before, result]
  }

  const rows = async (pool: pg.Pool, table: string) =>
    Number((await pool.query(`SELECT count(*) AS n FROM mqtt_bootstrap.${table}`)).rows[0].n)

  describe('PostgresNonceStore', () => {
    test('a new pair is true, a replay false (one statement each), also to another pool; other pairs are new', async () => {
      const url = await migrated()
      const [one, two] = await Promise.all([poolOf(url), poolOf(url)])
      const clock = new FakeClock()
      const [a, b] = [new PostgresNonceStore(one, { clock }), new PostgresNonceStore(two, { clock })]
      const until = clock.now() + 300_000
      expect(await roundTrips(one, () => a.remember(IMEI, 'n1', until))).toEqual([1, true])
      expect(await roundTrips(one, () => a.remember(IMEI, 'n1', until))).toEqual([1, false])
      expect(await b.remember(IMEI, 'n1', until)).toBe(false) // replayed to another process
      expect(await b.remember(IMEI, 'n2', until)).toBe(true)
      expect(await a.remember('860000000000002', 'n1', until)).toBe(true)
    })

    test('an expired pair counts as new (its row is taken over); expired rows are pruned by later claims', async () => {
      const url = await migrated()
      const pool = await poolOf(url)
      const clock = new FakeClock()
      const store = new PostgresNonceStore(pool, { clock })
      for (let i = 0; i < 30; i++) expect(await store.remember(`key-${i}`, 'n', clock.now() + 1000)).toBe(true)
      clock.time += 1000 // expires_at <= now: expired
      expect(await store.remember('key-0', 'n', clock.now() + 1000)).toBe(true)
      expect(await store.remember('key-0', 'n', clock.now() + 1000)).toBe(false)
      // Expired rows are kept 5 minutes more (a process whose clock runs ahead must not delete what another can
      // still be replayed): none is deleted yet.
      await store.remember(IMEI, 'early', clock.now() + 60_000)
      expect(await rows(pool, 'nonces')).toBe(31)
      clock.time += 300_000
      // Then each claim deletes up to 8 of them: the 29 are gone within 4 more claims.
      for (let i = 0; i < 4; i++) await store.remember(IMEI, `m${i}`, clock.now() + 60_000)
      expect(await rows(pool, 'nonces')).toBe(1 + 1 + 4) // key-0's taken-over row (within the margin), early, m0–m3
      // Already past its expiry by this clock (the call waited): kept all the same, so that a process whose clock
      // runs behind refuses its replay; a replay of an unexpired pair is refused whatever the expiry it is given.
      expect(await store.remember(IMEI, 'late', clock.now())).toBe(true)
      expect(await store.remember(IMEI, 'm0', clock.now() - 1)).toBe(false)
      expect(await rows(pool, 'nonces')).toBe(7)
      const behind = new PostgresNonceStore(pool, { clock: { now: () => clock.now() - 1000 } })
      expect(await behind.remember(IMEI, 'late', clock.now())).toBe(false)
    })

    test('per key id at most maxPerKey unexpired nonces: NonceStoreFullError with the wait for the first', async () => {
      const url = await migrated()
      const pool = await poolOf(url)
      const clock = new FakeClock()
      const store = new PostgresNonceStore(pool, { clock, maxPerKey: 3 })
      for (const [nonce, lifeMs] of [
        ['a', 10_500],
        ['b', 20_000],
        ['c', 30_000],
      ] as const) {
        expect(await store.remember(IMEI, nonce, clock.now() + lifeMs)).toBe(true)
      }
      const full = await store.remember(IMEI, 'd', clock.now() + 30_000).catch((error: unknown) => error)
      expect(full).toBeInstanceOf(NonceStoreFullError)
      expect(full).toMatchObject({ code: 'NONCE_STORE_FULL', retryAfterSeconds: 11 })
      expect(await store.remember(IMEI, 'b', clock.now() + 30_000)).toBe(false) // a replay is a replay, full or not
      expect(await store.remember('860000000000002', 'd', clock.now() + 30_000)).toBe(true) // other keys unaffected
      clock.time += 10_500
      expect(await store.remember(IMEI, 'd', clock.now() + 30_000)).toBe(true)
      for (const bad of [0, -1, 1.5, Number.NaN]) {
        expect(() => new PostgresNonceStore(pool, { maxPerKey: bad })).toThrow(/maxPerKey/)
      }
      expect(() => new PostgresNonceStore(pool, { clock: {} as FakeClock })).toThrow(/clock/)
    })

    test('two pools racing: 50 parallel calls with one pair, exactly one true (5 rounds); the bound holds', async () => {
      const url = await migrated()
      const pools = await Promise.all([poolOf(url), poolOf(url)])
      const clock = new FakeClock()
      const stores = pools.map((pool) => new PostgresNonceStore(pool, { clock, maxPerKey: 10 }))
      for (let round = 0; round < 5; round++) {
        const nonce = `race-${round}`
        const answers = await Promise.all(
          Array.from({ length: 50 }, (_, i) => stores[i % 2]?.remember(IMEI, nonce, clock.now() + 60_000)),
        )
        expect(answers.filter((answer) => answer === true)).toHaveLength(1)
      }
      // 40 different nonces of one key at once: at least maxPerKey kept, past it by fewer than the connections.
      const results = await Promise.allSettled(
        Array.from({ length: 40 }, (_, i) => stores[i % 2]?.remember('860000000000003', `n${i}`, clock.now() + 60_000)),
      )
      const kept = results.filter((r) => r.status === 'fulfilled' && r.value === true).length
      const refused = results.filter((r) => r.status === 'rejected' && r.reason instanceof NonceStoreFullError).length
      console.log(`40 nonces of one key at once over 2 pools, maxPerKey 10: ${kept} kept, ${refused} refused as full`)
      expect(kept + refused).toBe(40)
      expect(kept).toBeGreaterThanOrEqual(10)
      expect(kept).toBeLessThan(10 + 20)
    })

    test('the database halted: RegistryUnavailableError; resumed: the same pool works again, nothing forgotten', async () => {
      const url = await migrated()
      const pool = await poolOf(url)
      const clock = new FakeClock()
      const store = new PostgresNonceStore(pool, { clock })
      expect(await store.remember(IMEI, 'before', clock.now() + 60_000)).toBe(true)
      await cluster.db.halt()
      try {
        const error = await store.remember(IMEI, 'during', clock.now() + 60_000).catch((e: unknown) => e)
        expect(error).toBeInstanceOf(RegistryUnavailableError)
        expect(error).toMatchObject({ code: 'REGISTRY_UNAVAILABLE', retryAfterSeconds: 5 })
      } finally {
        await cluster.db.resume()
      }
      expect(await store.remember(IMEI, 'before', clock.now() + 60_000)).toBe(false)
      expect(await store.remember(IMEI, 'after', clock.now() + 60_000)).toBe(true)
    })
  })

  describe('PostgresClaimLog', () => {
    test('first claim undefined, then the one before (one statement each, the first too)', async () => {
      const url = await migrated()
      const pool = await poolOf(url)
      const log = new PostgresClaimLog(pool)
      const claim = (timeMs: number) => ({ timeMs, digest: `digest-${timeMs}` })
      expect(await roundTrips(pool, () => log.served(IMEI, claim(1_700_000_000_000)))).toEqual([1, undefined])
      expect(await roundTrips(pool, () => log.served(IMEI, claim(1_700_000_001_000)))).toEqual([
        1,
        claim(1_700_000_000_000),
      ])
      expect(await log.served(IMEI, claim(1_700_000_002_000))).toEqual(claim(1_700_000_001_000))
      expect(await log.served('860000000000002', claim(5))).toBeUndefined()
    })

    test('two pools at once for one identity, first claims and re-claims: one sees the other (20 identities)', async () => {
      const url = await migrated()
      const logs = [new PostgresClaimLog(await poolOf(url)), new PostgresClaimLog(await poolOf(url))] as const
      const claim = (digest: string, timeMs: number) => ({ timeMs, digest })
      for (let i = 0; i < 20; i++) {
        const identity = `86000000000${String(i).padStart(4, '0')}`
        const [one, two] = [claim('one', 1000 + i), claim('two', 2000 + i)]
        const [first, second] = await Promise.all([logs[0].served(identity, one), logs[1].served(identity, two)])
        // Exactly one is the first claim; the other answers it, and was written last.
        expect([first, second].filter((before) => before === undefined)).toHaveLength(1)
        expect(first ?? second).toEqual(first === undefined ? one : two)
        const last = first === undefined ? two : one
        // Two re-claims at once: one answers the last claim, the other answers that one (never both the last).
        const [three, four] = [claim('three', 3000 + i), claim('four', 4000 + i)]
        const [third, fourth] = await Promise.all([logs[0].served(identity, three), logs[1].served(identity, four)])
        expect([third, fourth]).toContainEqual(last)
        expect(third?.digest === 'four' || fourth?.digest === 'three').toBe(true)
      }
    })
  })

  describe('PostgresLimitCounters', () => {
    const ADDRESS = '192.0.2.7'

    async function limiters(url: string, clock: FakeClock, options: ClaimLimitsOptions = {}) {
      return (await Promise.all([poolOf(url), poolOf(url)])).map((pool) => ({
        pool,
        limiter: new ClaimLimiter({ clock, ...options, store: new PostgresLimitCounters(pool) }),
      }))
    }

    test('10 failures spread over two limiters: the 11th limited on both; blocks double; round trips', async () => {
      const url = await migrated()
      const clock = new FakeClock()
      const both = await limiters(url, clock)
      const gate = (n: number) => both[n % 2]?.limiter.gate(ADDRESS, IMEI)
      const [one] = both as [(typeof both)[number]]
      expect(await roundTrips(one.pool, async () => one.limiter.gate(ADDRESS, IMEI).limited())).toEqual([1, undefined])
      // A counted failure: BEGIN, lock the rows (made if missing), write them, COMMIT.
      expect(await roundTrips(one.pool, async () => one.limiter.gate(ADDRESS, IMEI).failed('10004'))).toEqual([
        4,
        undefined,
      ])
      for (let i = 1; i < 10; i++) {
        expect(await gate(i)?.limited()).toBeUndefined()
        await gate(i)?.failed('10001')
      }
      const [starts, limited] = await roundTrips(one.pool, async () => gate(0)?.limited())
      expect(limited).toEqual([429, { code: '77777' }, { 'retry-after': '60' }])
      expect(starts).toBe(1 + 4) // the look, then the block written under the lock
      expect(await gate(1)?.limited()).toEqual(limited) // the other pool's limiter
      expect(await roundTrips(one.pool, async () => gate(0)?.limited())).toEqual([1, limited]) // already blocked
      clock.time += 30_000
      expect(await gate(1)?.refused('10004')).toMatchObject([429, {}, { 'retry-after': '30' }])
      // Each block ends, 10 more failures over both: the next block doubles.
      const blocks: string[] = []
      for (let round = 0; round < 3; round++) {
        clock.time += round === 0 ? 30_000 : Number(blocks.at(-1)) * 1000
        for (let i = 0; i < 10; i++) expect(await gate(i)?.refused('10004')).toBeUndefined()
        blocks.push((await gate(round)?.limited())?.[2]['retry-after'] ?? 'none')
      }
      expect(blocks).toEqual(['120', '240', '480'])
      expect(await gate(0)?.failed('00000')).toBeUndefined() // not a failure: nothing counted
    })

    test('20 failures at once over two pools are all counted (no lost update, no deadlock)', async () => {
      const url = await migrated()
      const clock = new FakeClock()
      const both = await limiters(url, clock, { maxFailures: 100 })
      // Two addresses and two identities, in every combination: requests sharing keys lock them in one order.
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          both[i % 2]?.limiter.gate(`192.0.2.${i % 2}`, `86000000000000${(i >> 1) % 2}`).failed('10005'),
        ),
      )
      const { rows: counted } = await (both[0] as { pool: pg.Pool }).pool.query(
        'SELECT key, failures FROM mqtt_bootstrap.limit_counters ORDER BY key',
      )
      expect(counted).toEqual([
        { key: 'a:192.0.2.0', failures: 10 },
        { key: 'a:192.0.2.1', failures: 10 },
        { key: 'i:860000000000000', failures: 10 },
        { key: 'i:860000000000001', failures: 10 },
      ])
    })

    test('stale counters are pruned: in the background once per interval, and by prune()', async () => {
      const url = await migrated()
      const pool = await poolOf(url)
      const clock = new FakeClock()
      const store = new PostgresLimitCounters(pool, { pruneIntervalMs: 60_000 })
      const limiter = new ClaimLimiter({ clock, store })
      for (let i = 0; i < 20; i++) await limiter.gate(`198.51.100.${i}`, undefined).failed('10001')
      expect(await rows(pool, 'limit_counters')).toBe(20)
      clock.time += 60_000 // the window is over, no block: stale
      await limiter.gate('203.0.113.1', undefined).failed('10001') // starts a prune, not waited for
      await expect.poll(() => rows(pool, 'limit_counters'), { timeout: 5000 }).toBe(1)
      clock.time += 60_000
      expect(await store.prune(clock.now(), limiter.windowMs)).toBe(1)
      expect(() => new PostgresLimitCounters(pool, { pruneBatch: 0 })).toThrow(/pruneBatch/)
    })

    test('the handler over a limiter with the PostgreSQL store: 429 through HTTP; signed claims never counted', async () => {
      const url = await migrated()
      const clock = new FakeClock()
      const servers = await Promise.all(
        (await limiters(url, clock)).map(async ({ pool, limiter }) => {
          const nonces = new PostgresNonceStore(pool, { clock })
          const handler = createProvisioningHandler({
            resolve: (data) =>
              (data as { imei?: unknown }).imei === IMEI
                ? { device: DEVICE, connect: { host: 'broker.example:8883' } }
                : undefined,
            verify: signedClaims({ keyFor: derive, identity: 'imei', clock, nonces }),
            limits: limiter,
          })
          const server = createServer(handler)
          const { port, close } = await listenOnLoopback(server)
          closers.push(close)
          return { pool, url: `http://127.0.0.1:${port}/bootstrap` }
        }),
      )
      const post = async (target: string, body: string, headers: Record<string, string> = {}) => {
        const response = await request(target, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body,
        })
        const { code } = (await response.body.json()) as { code: string }
        return { status: response.statusCode, code, retryAfter: response.headers['retry-after'] }
      }
      const signedClaim = (target: string) => {
        const body = JSON.stringify({ imei: IMEI })
        const created = Math.floor(clock.now() / 1000)
        const claim = signClaimIndependently({ key: derive(IMEI), keyId: IMEI, url: target, body, created })
        return post(target, body, claim.headers)
      }
      const pool = (servers[0] as { pool: pg.Pool }).pool
      for (let i = 0; i < 6; i++) {
        expect(await signedClaim(servers[i % 2]?.url as string)).toMatchObject({ status: 200, code: '00000' })
      }
      expect(await rows(pool, 'limit_counters')).toBe(0)
      const guess = (i: number) => JSON.stringify({ imei: `869990000000${String(i).padStart(3, '0')}` })
      for (let i = 0; i < 10; i++) {
        expect(await post(servers[i % 2]?.url as string, guess(i))).toMatchObject({ status: 401, code: '10004' })
      }
      for (const server of servers) {
        expect(await post(server.url, guess(99))).toEqual({ status: 429, code: '77777', retryAfter: '60' })
      }
      // The address is over the limit on both; a valid signature still goes through, and is not counted.
      const before = await pool.query('SELECT * FROM mqtt_bootstrap.limit_counters ORDER BY key')
      for (const server of servers) expect(await signedClaim(server.url)).toMatchObject({ status: 200, code: '00000' })
      expect((await pool.query('SELECT * FROM mqtt_bootstrap.limit_counters ORDER BY key')).rows).toEqual(before.rows)
    })
  })
})
