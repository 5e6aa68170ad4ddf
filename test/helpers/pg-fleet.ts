/**
 * A fleet claiming from server processes on one PostgreSQL (test/postgres-fleet.slow.test.ts): signed claims with
 * bounded retries, what the database holds afterwards, and the invariants of issue 16 checked over both (exactly one
 * triplet per identity and one identity per triplet, the same triplet on every answer, nothing half-assigned, the
 * audit complete). Problems are named by identity and device name, never by a secret.
 */
import { randomInt } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { type Agent, request } from 'undici'
import { deriveDeviceKey } from '../../packages/mqtt-bootstrap-server/src/index.js'
import { signClaimIndependently } from './sign-claim.js'

/** A server process as the audit names it (`<hostname>:<pid>`). */
export interface FleetServer {
  url: string
  name: string
}

/** One request of a claim: what came back, or the failure of the exchange itself (a process killed). */
export interface Attempt {
  server: string
  status?: number
  code?: string
  retryAfter?: string
  error?: string
}

/** A claim's last answer (`00000` with its device, or a refusal) and every attempt it took. */
export interface Answered {
  imei: string
  code: string
  device?: { productKey: string; deviceName: string; deviceSecret: string }
  attempts: Attempt[]
}

export interface ClaimPlan {
  /** The server of attempt `n` (0 first), knowing the attempt before. */
  pick(n: number, last: Attempt | undefined): FleetServer
  /** Told of each attempt once it has its answer (or failed): to act in the middle of a burst. */
  onAttempt?(attempt: Attempt): void
  /** Requests a claim may take at most. @default 20 */
  maxAttempts?: number
}

/** What is worth another try: 77777 with 503 (the database away), or an exchange that failed (a process gone). */
const retryable = (attempt: Attempt) =>
  attempt.error !== undefined || (attempt.code === '77777' && attempt.status === 503)

/** POST `{ imei }` to `server`, signed with the key derived from `groupKey` (a fresh nonce each time). */
export async function claimOnce(agent: Agent, server: FleetServer, imei: string, groupKey: string) {
  const body = JSON.stringify({ imei })
  const signed = signClaimIndependently({
    key: deriveDeviceKey(groupKey, imei),
    keyId: imei,
    url: server.url,
    body,
    created: Math.floor(Date.now() / 1000),
  })
  const attempt: Attempt = { server: server.name }
  try {
    const response = await request(server.url, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', ...signed.headers },
      body,
      headersTimeout: 15_000,
      bodyTimeout: 15_000,
    })
    const answer = (await response.body.json()) as { code: string; result?: { device: Answered['device'] } }
    attempt.status = response.statusCode
    attempt.code = answer.code
    const retryAfter = response.headers['retry-after']
    if (typeof retryAfter === 'string') attempt.retryAfter = retryAfter
    return { attempt, device: answer.result?.device }
  } catch (error) {
    attempt.error = (error as NodeJS.ErrnoException).code ?? (error as Error).name
    return { attempt, device: undefined }
  }
}

/** A claim tried until it has an answer other than "try again" (bounded: 100–300 ms apart, `maxAttempts`). */
export async function claimUntilAnswered(agent: Agent, imei: string, groupKey: string, plan: ClaimPlan) {
  const attempts: Attempt[] = []
  const max = plan.maxAttempts ?? 20
  for (let n = 0; n < max; n++) {
    const { attempt, device } = await claimOnce(agent, plan.pick(n, attempts.at(-1)), imei, groupKey)
    attempts.push(attempt)
    plan.onAttempt?.(attempt)
    if (!retryable(attempt)) {
      const answered: Answered = { imei, code: attempt.code as string, attempts }
      if (device !== undefined) answered.device = device
      return answered
    }
    await sleep(100 + randomInt(201))
  }
  return { imei, code: `no answer in ${max} attempts`, attempts } satisfies Answered
}

/** What the database holds: every triplet (its holder, if any) and every audit row. */
export interface FleetDatabase {
  triplets: Array<{ id: string; identity: string | null; deviceName: string; deviceSecret: string }>
  audit: Array<{ identity: string | null; code: string; server: string; peer: string | null; tripletId: string | null }>
}

export async function readFleetDatabase(url: string): Promise<FleetDatabase> {
  const client = new pg.Client(url)
  await client.connect()
  try {
    const triplets = await client.query(
      `SELECT id::text, identity, device_name AS "deviceName", device_secret AS "deviceSecret"
       FROM mqtt_bootstrap.triplets ORDER BY id`,
    )
    const audit = await client.query(
      `SELECT identity, code, server, peer, triplet_id::text AS "tripletId" FROM mqtt_bootstrap.claims ORDER BY id`,
    )
    return { triplets: triplets.rows, audit: audit.rows }
  } finally {
    await client.end()
  }
}

export interface FleetExpectation {
  /** Identities that must end up holding a triplet, and refused "10006"; left out: not checked (a round between). */
  assigned?: number
  exhausted?: number
  /**
   * `true`: every request was answered (no fault), so the audit has exactly one row per answer. `false`: a request
   * may have been committed and not answered (its process killed) or answered and not recorded (77777).
   */
  exactAudit: boolean
}

/** Every way `answers` and `db` break issue 16's invariants, as readable lines (empty: none). */
export function fleetProblems(answers: readonly Answered[], db: FleetDatabase, expect: FleetExpectation): string[] {
  const problems: string[] = []
  const held = new Map<string, { id: string; deviceName: string; deviceSecret: string }>()
  for (const row of db.triplets) {
    if (row.identity === null) continue
    if (held.has(row.identity)) problems.push(`${row.identity} holds two triplets in the database`)
    held.set(row.identity, row)
  }
  // The answers, per identity: one triplet on every 00000, and never both a triplet and 10006.
  const answered = new Map<string, string>()
  for (const a of answers) {
    if (a.code !== '00000' && a.code !== '10006') problems.push(`${a.imei} answered ${a.code}`)
    const got = a.code === '00000' ? `device ${a.device?.deviceName}` : a.code
    const before = answered.get(a.imei)
    if (before !== undefined && before !== got) problems.push(`${a.imei} answered ${before}, then ${got}`)
    answered.set(a.imei, got)
    const row = held.get(a.imei)
    if (
      a.code === '00000' &&
      (row?.deviceName !== a.device?.deviceName || row?.deviceSecret !== a.device?.deviceSecret)
    )
      problems.push(`${a.imei} answered ${got}, the database gives it ${row?.deviceName ?? 'none'}`)
  }
  // Nothing assigned that its identity was not answered (a triplet taken, and its device told nothing or 10006).
  for (const [identity, row] of held) {
    const got = answered.get(identity) ?? 'nothing'
    if (got !== `device ${row.deviceName}`) problems.push(`${identity} holds ${row.deviceName}, answered ${got}`)
  }
  const devices = [...answered.values()].filter((got) => got.startsWith('device '))
  if (new Set(devices).size !== devices.length) problems.push('one triplet was answered to two identities')
  const exhausted = [...answered.values()].filter((got) => got === '10006').length
  if (expect.assigned !== undefined && (devices.length !== expect.assigned || held.size !== expect.assigned))
    problems.push(`${devices.length} identities answered a triplet, ${held.size} hold one: ${expect.assigned} expected`)
  if (expect.exhausted !== undefined && exhausted !== expect.exhausted)
    problems.push(`${exhausted} identities refused 10006, ${expect.exhausted} expected`)
  return [...problems, ...auditProblems(answers, db, held, expect.exactAudit)]
}

function auditProblems(
  answers: readonly Answered[],
  db: FleetDatabase,
  held: Map<string, { id: string; deviceName: string }>,
  exact: boolean,
): string[] {
  const problems: string[] = []
  for (const row of db.audit) {
    if (row.peer !== '127.0.0.1') problems.push(`an audit row of ${row.identity} names the peer ${row.peer}`)
    if (row.code === '00000' && row.tripletId !== held.get(row.identity ?? '')?.id)
      problems.push(`an audit row gives ${row.identity} triplet #${row.tripletId}, not the one it holds`)
  }
  // Every assignment is recorded: a triplet held without a 00000 row naming it would be half-written.
  const recorded = new Set(
    db.audit.filter((row) => row.code === '00000').map((row) => `${row.identity}#${row.tripletId}`),
  )
  for (const [identity, row] of held) {
    if (!recorded.has(`${identity}#${row.id}`)) problems.push(`${identity} holds ${row.deviceName} with no audit row`)
  }
  // Each answer has its row (identity, code, server); a fault may leave rows no one was answered, at most one each.
  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)
  const sent = new Map<string, number>()
  let interrupted = 0
  for (const a of answers) {
    for (const attempt of a.attempts) {
      if (attempt.code === undefined || attempt.code === '77777') interrupted++
      else count(sent, `${a.imei} ${attempt.code} ${attempt.server}`)
    }
  }
  const rows = new Map<string, number>()
  for (const row of db.audit.filter((r) => r.code !== '77777')) count(rows, `${row.identity} ${row.code} ${row.server}`)
  let extra = 0
  for (const key of new Set([...sent.keys(), ...rows.keys()])) {
    const [want, have] = [sent.get(key) ?? 0, rows.get(key) ?? 0]
    if (have < want) problems.push(`audit: ${key} answered ${want} times, recorded ${have}`)
    else extra += have - want
  }
  if (exact && extra > 0) problems.push(`audit: ${extra} rows of claims nobody was answered`)
  if (extra > interrupted) problems.push(`audit: ${extra} rows beyond the answers, only ${interrupted} interrupted`)
  const failing = db.audit.filter((r) => r.code === '77777').length
  if (failing > interrupted) problems.push(`audit: ${failing} rows 77777, only ${interrupted} such answers or failures`)
  return problems
}

/** Tallies of `answers`' final codes and their attempts' outcomes, for a failure message or a log. */
export function tally(answers: readonly Answered[]) {
  const out: Record<string, number> = {}
  for (const a of answers) {
    for (const t of a.attempts) {
      const key = t.error ?? `${t.code} (${t.status})`
      out[key] = (out[key] ?? 0) + 1
    }
  }
  return out
}
