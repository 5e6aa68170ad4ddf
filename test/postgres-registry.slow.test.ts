/**
 * The PostgreSQL registry (issue 16) through the real handler over HTTPS, against a real PostgreSQL: versioned
 * migrations, the pool's import, assignment on the first claim (the same triplet again after), the allow-list and
 * "any-signed", revocation, an exhausted pool, the audit, secure by default, and the database going away and coming
 * back. Two registries on one database stand for two server processes. Nothing here shows a secret.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { chmodSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import pg from 'pg'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  createProvisioningHandler,
  PostgresRegistry,
  type PostgresRegistryOptions,
  RegistryUnavailableError,
  type Triplet,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { suite } from './helpers/exposure.js'
import { listenOnLoopback } from './helpers/ports.js'
import { type Postgres, postgresSkipReason, startPostgres } from './helpers/postgres.js'
import { signClaimIndependently } from './helpers/sign-claim.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

const GROUP_KEY = randomBytes(64).toString('base64')
suite.secret(GROUP_KEY)
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
const HOST = 'mqtts://broker.example:8883'

/** `n` triplets whose secrets are registered as secrets (test/setup.ts checks that none is ever shown). */
function triplets(n: number, prefix = 'dev'): Triplet[] {
  return Array.from({ length: n }, (_, i) => {
    const deviceSecret = `pool-secret-${prefix}-${i}-${randomBytes(6).toString('hex')}`
    suite.secret(deviceSecret)
    return { productKey: 'a1PoolPK', deviceName: `${prefix}-${i}`, deviceSecret }
  })
}

describe.skipIf(postgresSkipReason())('the PostgreSQL registry', () => {
  let db: Postgres
  let tls: TlsFixture
  let agent: Agent
  let dir: string
  let keyFile: string
  beforeAll(async () => {
    ;[db, tls, dir] = await Promise.all([
      startPostgres(),
      tlsFixture(),
      mkdtemp(join(tmpdir(), 'mqtt-bootstrap-pg-registry-')),
    ])
    agent = new Agent({ connect: { ca: tls.ca }, connections: 64 })
    keyFile = join(dir, 'group.key')
    writeFileSync(keyFile, `${GROUP_KEY}\n`, { mode: 0o600 })
    chmodSync(keyFile, 0o600)
  }, 60_000)
  afterAll(async () => {
    await agent?.close()
    await db?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const closers: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
  })

  async function open(url: string, options: PostgresRegistryOptions = {}) {
    const registry = await PostgresRegistry.open({ connectionString: url, ...options })
    closers.push(() => registry.close())
    return registry
  }

  /** A migrated database whose registry is configured with the group key and the broker host. */
  async function fresh(settings: Record<string, unknown> = {}) {
    const url = await db.database()
    const registry = await open(url)
    await registry.migrate()
    await registry.configure({ attestation: { groupKeyFile: keyFile }, connect: { host: HOST }, ...settings })
    return { url, registry }
  }

  /** The handler over `registry`, as serve wires it, on 127.0.0.1. */
  async function serve(registry: PostgresRegistry) {
    const errors: Error[] = []
    const server = createServer(
      { key: tls.key, cert: tls.cert },
      createProvisioningHandler({
        resolve: registry.resolve,
        verify: registry.verifier(),
        limits: registry.limiter(),
        claims: registry.claims,
        onRequest: registry.audit,
        onError: (error) => errors.push(error as Error),
      }),
    )
    const { port, close } = await listenOnLoopback(server)
    closers.push(close)
    return { url: `https://127.0.0.1:${port}/bootstrap`, errors }
  }

  /** POST a claim for `imei`, signed with its derived key unless `sign` is false. */
  async function claim(url: string, imei: string, sign = true) {
    const body = JSON.stringify({ imei })
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (sign) {
      const created = Math.floor(Date.now() / 1000)
      const signed = signClaimIndependently({ key: derive(imei), keyId: imei, url, body, created })
      Object.assign(headers, signed.headers)
    }
    const response = await request(url, { method: 'POST', dispatcher: agent, headers, body })
    const answer = (await response.body.json()) as { code: string; result?: { device: Triplet } }
    return { status: response.statusCode, retryAfter: response.headers['retry-after'], ...answer }
  }

  test('migrations are versioned: applied once, also from two registries at once', async () => {
    const url = await db.database()
    const [a, b] = await Promise.all([open(url), open(url)])
    const applied = await Promise.all([a.migrate(), b.migrate()])
    expect(applied.flat()).toEqual(['0001_registry'])
    expect(await a.migrate()).toEqual([])
    const client = new pg.Client(url)
    await client.connect()
    const { rows } = await client.query('SELECT name FROM mqtt_bootstrap.migrations')
    await client.end()
    expect(rows.map((row) => row.name)).toEqual(['0001_registry'])
  })

  test('first claim assigns a free triplet, the same identity gets it again; unknown identities get 10001', async () => {
    const { registry } = await fresh()
    const pool = triplets(3)
    expect(await registry.importTriplets(pool)).toEqual({ added: 3, existing: 0 })
    expect(await registry.importTriplets(pool.slice(0, 2))).toEqual({ added: 0, existing: 2 })
    expect(await registry.allow(['860000000000001', '860000000000002'])).toEqual({ added: 2, restored: 0 })
    const { url, errors } = await serve(registry)

    const first = await claim(url, '860000000000001')
    expect(first.code).toBe('00000')
    expect(first.result?.device).toMatchObject(pool[0] as Triplet)
    expect((await claim(url, '860000000000001')).result?.device).toMatchObject(pool[0] as Triplet)
    expect((await claim(url, '860000000000002')).result?.device).toMatchObject(pool[1] as Triplet)
    expect((await claim(url, '860000000000003')).code).toBe('10001') // signed, but not on the allow-list
    expect((await claim(url, '860000000000001', false)).status).toBe(401) // unsigned: 10004
    expect(errors).toEqual([])

    const listing = await registry.list()
    expect(listing.triplets).toEqual({ total: 3, free: 1, assigned: 2 })
    expect(listing.identities.map((i) => [i.identity, i.device?.deviceName])).toEqual([
      ['860000000000001', 'dev-0'],
      ['860000000000002', 'dev-1'],
    ])
    expect(JSON.stringify(listing)).not.toMatch(/pool-secret/)
  })

  test('revoked: 10007, and allowed again it gets its own triplet back; an exhausted pool: 10006', async () => {
    const { registry } = await fresh({ claims: 'any-signed' })
    const pool = triplets(2)
    await registry.importTriplets(pool)
    const { url } = await serve(registry)
    expect((await claim(url, 'a-1')).result?.device).toMatchObject(pool[0] as Triplet) // any-signed: no allow-list needed
    expect((await claim(url, 'a-2')).result?.device).toMatchObject(pool[1] as Triplet)
    expect((await claim(url, 'a-3')).code).toBe('10006')
    expect(await registry.revoke(['a-1', 'never-claimed'])).toEqual({ revoked: 2 })
    expect((await claim(url, 'a-1')).code).toBe('10007')
    expect((await claim(url, 'never-claimed')).code).toBe('10007') // revoked before its first claim
    expect(await registry.allow(['a-1'])).toEqual({ added: 0, restored: 1 })
    expect((await claim(url, 'a-1')).result?.device).toMatchObject(pool[0] as Triplet)
    expect((await registry.list()).triplets).toEqual({ total: 2, free: 0, assigned: 2 })
  })

  test('the audit has every claim: time, identity, peer, code and server, refusals included', async () => {
    const { url: database, registry } = await fresh()
    await registry.importTriplets(triplets(1))
    await registry.allow(['860000000000001'])
    const { url } = await serve(registry)
    await claim(url, '860000000000001')
    await claim(url, '860000000000001')
    await claim(url, '860000000000009')
    await claim(url, '860000000000001', false)
    const client = new pg.Client(database)
    await client.connect()
    closers.push(() => client.end())
    // The verifier's refusal is written after its answer: wait for it, bounded.
    let rows: Array<{ identity: string; peer: string; code: string; server: string; at: Date }> = []
    for (let i = 0; i < 50 && rows.length < 4; i++) {
      rows = (await client.query('SELECT identity, peer, code, server, at FROM mqtt_bootstrap.claims ORDER BY id')).rows
      if (rows.length < 4) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(rows.map((row) => [row.identity, row.code])).toEqual([
      ['860000000000001', '00000'],
      ['860000000000001', '00000'],
      ['860000000000009', '10001'],
      ['860000000000001', '10004'],
    ])
    for (const row of rows) {
      expect(row.peer).toBe('127.0.0.1')
      expect(row.server).toMatch(/^.+:\d+$/)
      expect(Math.abs(row.at.getTime() - Date.now())).toBeLessThan(60_000)
    }
  })

  test('secure by default: no attestation set, nothing is handed out; "none" serves the allow-list unsigned', async () => {
    const url = await db.database()
    const registry = await open(url)
    await registry.migrate()
    await registry.configure({ connect: { host: HOST } })
    await registry.importTriplets(triplets(1))
    await registry.allow(['860000000000001'])
    expect(await registry.attestation()).toBeUndefined()
    const served = await serve(registry)
    const refused = await claim(served.url, '860000000000001', false)
    expect(refused.code).toBe('77777') // the verifier cannot judge: the server's failure, loudly
    expect(served.errors.map((e) => e.message).join()).toMatch(/declares no attestation/)
    expect((await registry.list()).triplets.assigned).toBe(0)

    await registry.configure({ attestation: 'none' })
    expect((await claim(served.url, '860000000000001', false)).code).toBe('00000')
    await expect(registry.configure({ claims: 'any-signed' })).rejects.toThrow(/need a group key/)
  })

  test('a bad import imports nothing, and names the row, never its secret', async () => {
    const { registry } = await fresh()
    const pool = triplets(3)
    const bad = [...pool, { productKey: 'a1PoolPK', deviceName: '', deviceSecret: 'pool-secret-bad' }]
    await expect(registry.importTriplets(bad)).rejects.toThrow(/triplet #4/)
    const changed = [{ ...(pool[0] as Triplet), deviceSecret: `pool-secret-${randomBytes(6).toString('hex')}` }]
    suite.secret(changed[0]?.deviceSecret as string)
    await registry.importTriplets(pool.slice(1))
    await registry.importTriplets([pool[0] as Triplet])
    const error = await registry.importTriplets(changed).catch((e: Error) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(String(error)).toMatch(/another secret; nothing was imported/)
    expect(inspect(error)).not.toMatch(/pool-secret/)
    expect((await registry.list()).triplets.total).toBe(3)
  })

  test('two registries on one database: 120 concurrent claims of 80 identities over 50 triplets', async () => {
    const { url: database, registry: a } = await fresh({ claims: 'any-signed' })
    const b = await open(database)
    const pool = triplets(50)
    await a.importTriplets(pool)
    const servers = [await serve(a), await serve(b)]
    const identities = Array.from({ length: 80 }, (_, i) => `id-${i}`)
    const claims = Array.from({ length: 120 }, (_, i) => identities[i % 80] as string)
    const answers = await Promise.all(
      claims.map((imei, i) => claim((servers[i % 2] as { url: string }).url, imei).then((a) => ({ imei, ...a }))),
    )
    const byIdentity = new Map<string, Set<string>>()
    for (const answer of answers) {
      const seen = byIdentity.get(answer.imei) ?? new Set()
      seen.add(answer.code === '00000' ? `${answer.result?.device.deviceName}` : answer.code)
      byIdentity.set(answer.imei, seen)
    }
    // Every identity got one answer however many times it claimed, through either server.
    for (const seen of byIdentity.values()) expect(seen.size).toBe(1)
    const assigned = [...byIdentity.values()].map((seen) => [...seen][0] as string).filter((v) => v !== '10006')
    expect(assigned).toHaveLength(50)
    expect(new Set(assigned).size).toBe(50)
    expect((await a.list()).triplets).toEqual({ total: 50, free: 0, assigned: 50 })
  })

  test('the database away: 77777 with 503 and Retry-After; back: served again without a restart', async () => {
    const { registry } = await fresh({ claims: 'any-signed' })
    await registry.importTriplets(triplets(2))
    const served = await serve(registry)
    expect((await claim(served.url, 'b-1')).code).toBe('00000')
    await db.halt()
    try {
      const away = await claim(served.url, 'b-2')
      expect(away).toMatchObject({ code: '77777', status: 503, retryAfter: '5' })
      expect(served.errors.some((e) => e instanceof RegistryUnavailableError)).toBe(true)
      expect((await claim(served.url, 'b-1')).status).toBe(503)
    } finally {
      await db.resume()
    }
    expect((await claim(served.url, 'b-2')).code).toBe('00000')
    expect((await registry.list()).triplets).toEqual({ total: 2, free: 0, assigned: 2 })
    await expect(PostgresRegistry.open({ connectionString: db.url('nosuchdb') })).rejects.toThrow(/database/)
  })
})
