/**
 * Issue 16's acceptance case, with real processes: two `mqtt-bootstrap serve --database` processes (each its own
 * pool) on one real PostgreSQL, a pool of 500 triplets, and 1,000 concurrent signed claims of 600 identities spread
 * over both: exactly 500 distinct triplets assigned, 100 identities refused "10006", every answer of an identity the
 * same, the audit complete (test/helpers/pg-fleet.ts checks the answers against the database). Then the same with the
 * database restarted while claims are in flight ("77777" with 503, retried), and with a server process killed
 * (SIGKILL) in the middle of a burst, three times: nothing half-assigned, and the other process answers the retried
 * claim as if nothing had happened.
 */
import type { ChildProcess } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'
import { once } from 'node:events'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { saveCa } from '../packages/mqtt-bootstrap-server/src/cli/ca-store.js'
import { generateCa } from '../packages/mqtt-bootstrap-server/src/cli/certificates.js'
import { PostgresRegistry, type Triplet } from '../packages/mqtt-bootstrap-server/src/index.js'
import { suite } from './helpers/exposure.js'
import {
  type Answered,
  type ClaimPlan,
  claimUntilAnswered,
  type FleetServer,
  fleetProblems,
  readFleetDatabase,
  tally,
} from './helpers/pg-fleet.js'
import { type Postgres, postgresSkipReason, startPostgres } from './helpers/postgres.js'
import { useServeProcesses } from './helpers/serve.js'

const GROUP_KEY = randomBytes(64).toString('base64')
suite.secret(GROUP_KEY)
const HOST = 'mqtts://broker.example:8883'
const POOL = 500
const IDENTITIES = 600
const CLAIMS = 1000

const imei = (i: number) => `86${4_000_000_000_000 + i}`
const FLEET = Array.from({ length: IDENTITIES }, (_, i) => imei(i))
const TRIPLETS: Triplet[] = Array.from({ length: POOL }, (_, i) => {
  const deviceSecret = `fleet-secret-${i}-${randomBytes(6).toString('hex')}`
  suite.secret(deviceSecret)
  return { productKey: 'a1FleetPK', deviceName: `fleet-${i}`, deviceSecret }
})

function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items]
  for (let i = copy.length - 1; i > 0; i--) {
    const j = randomInt(i + 1)
    ;[copy[i], copy[j]] = [copy[j] as T, copy[i] as T]
  }
  return copy
}

/** 1,000 claims: every identity once, 400 of them twice, in a random order. */
const claimOrder = () =>
  shuffled([...FLEET, ...Array.from({ length: CLAIMS - IDENTITIES }, (_, i) => imei((i * 7) % IDENTITIES))])

type Running = FleetServer & { child: ChildProcess; output(): string }

describe.skipIf(postgresSkipReason())('two serve processes on one PostgreSQL: a fleet claiming', () => {
  let db: Postgres
  let dir: string
  let keyFile: string
  let caFile: string
  beforeAll(async () => {
    let ca: Awaited<ReturnType<typeof generateCa>>
    ;[db, dir, ca] = await Promise.all([
      startPostgres(),
      mkdtemp(join(tmpdir(), 'mqtt-bootstrap-pg-fleet-')),
      generateCa(),
    ])
    keyFile = join(dir, 'group.key')
    writeFileSync(keyFile, `${GROUP_KEY}\n`, { mode: 0o600 })
    chmodSync(keyFile, 0o600)
    // One CA for every process, as the processes behind one load balancer share a certificate.
    caFile = join(dir, 'ca.pem')
    saveCa(ca, caFile, `${caFile}.key`)
  }, 60_000)
  afterAll(async () => {
    await db?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const { serve } = useServeProcesses()
  const agents: Agent[] = []
  const started: Running[] = []
  afterEach(async () => {
    for (const agent of agents.splice(0)) await agent.destroy()
    started.length = 0
  })

  /** A fresh database, migrated and configured as an operator would, holding the pool (and the allow-list). */
  async function fleetDatabase(claims: 'allow-list' | 'any-signed'): Promise<string> {
    const url = await db.database()
    const registry = await PostgresRegistry.open({ connectionString: url })
    try {
      await registry.migrate()
      await registry.configure({ attestation: { groupKeyFile: keyFile }, connect: { host: HOST }, claims })
      await registry.importTriplets(TRIPLETS)
      if (claims === 'allow-list') await registry.allow(FLEET)
    } finally {
      await registry.close()
    }
    return url
  }

  /** `serve --database` on a free port, its certificate from the file's CA. */
  async function startServer(database: string): Promise<Running> {
    const { url, child, output } = await serve(['--database', database, '--port', '0', '--ca-out', caFile])
    const running = { url, name: `${hostname()}:${child.pid}`, child, output }
    started.push(running)
    return running
  }

  async function twoServers(database: string): Promise<Running[]> {
    const servers = await Promise.all([startServer(database), startServer(database)])
    agents.push(new Agent({ connect: { ca: readFileSync(caFile, 'utf8') }, connections: 128 }))
    return servers
  }

  /** Every identity claims once more, all at once, through the server `pick` gives. */
  const claimAll = (pick: (k: number) => FleetServer, plan: Partial<ClaimPlan> = {}) =>
    Promise.all(
      FLEET.map((id, k) => claimUntilAnswered(agents[0] as Agent, id, GROUP_KEY, { pick: () => pick(k), ...plan })),
    )

  /** What the servers printed may hold no secret either (checked by test/setup.ts after the test). */
  const exposeOutputs = () => {
    for (const server of started) suite.exposure.line(server.output())
  }

  test('1,000 concurrent claims of 600 identities over 500 triplets, spread over two processes', async () => {
    const database = await fleetDatabase('allow-list')
    const servers = await twoServers(database)
    const agent = agents[0] as Agent
    const answers = await Promise.all(
      claimOrder().map((id, k) =>
        claimUntilAnswered(agent, id, GROUP_KEY, { pick: () => servers[k % 2] as Running, maxAttempts: 1 }),
      ),
    )
    expect(Object.keys(tally(answers)).sort()).toEqual(['00000 (200)', '10006 (200)'])
    const expected = { assigned: POOL, exhausted: IDENTITIES - POOL, exactAudit: true }
    expect(fleetProblems(answers, await readFleetDatabase(database), expected)).toEqual([])

    // Afterwards, every identity again through the other process: the same answers, each recorded.
    const again = await claimAll((k) => servers[(k + 1) % 2] as Running, { maxAttempts: 1 })
    const all = [...answers, ...again]
    const stored = await readFleetDatabase(database)
    expect(fleetProblems(all, stored, expected)).toEqual([])
    expect(stored.audit).toHaveLength(CLAIMS + IDENTITIES)
    expect(new Set(stored.audit.map((row) => row.server))).toEqual(new Set(servers.map((s) => s.name)))
    exposeOutputs()
  }, 60_000)

  test('the database restarted while the claims are in flight: 77777 with 503, retried, the same invariants', async () => {
    const database = await fleetDatabase('allow-list')
    const servers = await twoServers(database)
    let attempts = 0
    let restarted: Promise<unknown> | undefined
    // A quarter of the way in: the rest are in the servers, in the database, or on their way.
    const onAttempt = () => {
      if (++attempts === 250)
        restarted = db.restart().then(
          () => undefined,
          (error: Error) => error,
        )
    }
    const answers = await Promise.all(
      claimOrder().map((id, k) =>
        claimUntilAnswered(agents[0] as Agent, id, GROUP_KEY, {
          pick: (n) => servers[(k + n) % 2] as Running,
          onAttempt,
        }),
      ),
    )
    expect(await restarted).toBeUndefined()
    const outcomes = tally(answers)
    expect(outcomes['77777 (503)'], JSON.stringify(outcomes)).toBeGreaterThan(0)
    // Only answers: never a 500, a connection dropped, or an identity left without one.
    expect(Object.keys(outcomes).sort()).toEqual(['00000 (200)', '10006 (200)', '77777 (503)'])
    for (const attempt of answers.flatMap((a) => a.attempts).filter((t) => t.code === '77777')) {
      expect(Number(attempt.retryAfter)).toBeGreaterThan(0)
    }
    const expected = { assigned: POOL, exhausted: IDENTITIES - POOL, exactAudit: false }
    expect(fleetProblems(answers, await readFleetDatabase(database), expected)).toEqual([])

    // Back without a restart of either process: every identity served its answer again.
    const again = await claimAll((k) => servers[k % 2] as Running)
    expect(fleetProblems([...answers, ...again], await readFleetDatabase(database), expected)).toEqual([])
    exposeOutputs()
  }, 60_000)

  test('a server process killed in the middle of a burst, three times: nothing half-assigned', async () => {
    const database = await fleetDatabase('any-signed')
    const servers = await twoServers(database)
    const agent = agents[0] as Agent
    const answers: Answered[] = []
    for (let round = 0; round < 3; round++) {
      const [victim, survivor] = [servers[round % 2], servers[(round + 1) % 2]] as [Running, Running]
      // 200 identities claiming for the first time (the last 100 of them find the pool empty), 100 claiming again.
      const fresh = FLEET.slice(round * 200, round * 200 + 200)
      const earlier = round === 0 ? fresh.slice(0, 100) : shuffled(FLEET.slice(0, round * 200)).slice(0, 100)
      const killAt = randomInt(10, 150)
      let seen = 0
      const plan: ClaimPlan = {
        // Sent to the victim; tried again on the other process, as a load balancer would after a failed exchange.
        pick: (n) => (n === 0 ? victim : survivor),
        onAttempt: () => {
          if (++seen === killAt) victim.child.kill('SIGKILL')
        },
      }
      const burst = await Promise.all(
        shuffled([...fresh, ...earlier]).map((id) => claimUntilAnswered(agent, id, GROUP_KEY, plan)),
      )
      if (victim.child.exitCode === null && victim.child.signalCode === null) await once(victim.child, 'close')
      answers.push(...burst)
      // The kill hit claims in flight: their exchanges failed, and the other process answered them.
      const failed = burst.flatMap((a) => a.attempts).filter((attempt) => attempt.error !== undefined)
      expect(failed.length, JSON.stringify(tally(burst))).toBeGreaterThan(0)
      expect(fleetProblems(answers, await readFleetDatabase(database), { exactAudit: false })).toEqual([])
      servers[round % 2] = await startServer(database)
    }
    // Every identity, through each process: the answers it had, whichever process was killed under it.
    const again = [...(await claimAll(() => servers[0] as Running)), ...(await claimAll(() => servers[1] as Running))]
    const expected = { assigned: POOL, exhausted: IDENTITIES - POOL, exactAudit: false }
    expect(fleetProblems([...answers, ...again], await readFleetDatabase(database), expected)).toEqual([])
    exposeOutputs()
  }, 90_000)
})
