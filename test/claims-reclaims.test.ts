/**
 * Re-claims (issue 15), over real HTTPS servers on 127.0.0.1: a device that lost its configuration (a factory reset)
 * claims again with a valid proof, gets the same configuration, and `onReclaim` is told once; unsigned re-claims are
 * refused; failures go to `onError`; the log is bounded; `serve` writes one line per re-claim (a real process).
 */
import type { ChildProcess } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import {
  type ClaimLog,
  createProvisioningHandler,
  DeviceRegistry,
  MemoryClaimLog,
  MemoryNonceStore,
  type ProvisioningHandlerOptions,
  type Reclaim,
  signedClaims,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { startTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'
import { listenOnLoopback } from './helpers/ports.js'
import { signClaimIndependently } from './helpers/sign-claim.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const GROUP_KEY = randomBytes(32).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
const IMEI = '860000000000001'
const OTHER = '860000000000002'
const FLEET = Array.from({ length: 5 }, (_, i) => `86000000000010${i}`)
const ROTATED = 'R0tated-device-secret-YYYYYYYYYYYYYY'
for (const id of [IMEI, OTHER, ...FLEET]) suite.secret(derive(id))
for (const secret of [GROUP_KEY, DEVICE.deviceSecret, ROTATED]) suite.secret(secret)
const KNOWN = new Set([IMEI, OTHER, ...FLEET])
const CONNECT = { host: 'mqtts://broker.example:8883', qos: 1, cleanSession: 1 }

let tls: TlsFixture
let agent: Agent
let dir: string
beforeAll(async () => {
  tls = await tlsFixture()
  agent = new Agent({ connect: { ca: tls.ca } })
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-claims-reclaims-'))
})
afterAll(async () => {
  await agent.close()
  await rm(dir, { recursive: true, force: true })
})

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of closers.splice(0)) await close()
})

/** The handler with signed claims (or `verify` as given) and re-claims noted, on a real HTTPS server. */
async function reclaimServer(
  more: Partial<ProvisioningHandlerOptions> | ((clock: FakeClock) => Partial<ProvisioningHandlerOptions>) = {},
) {
  const clock = new FakeClock()
  const extra = typeof more === 'function' ? more(clock) : more
  const reclaims: Reclaim[] = []
  const errors: unknown[] = []
  const resolved: unknown[] = []
  const handler = createProvisioningHandler({
    resolve: (data) => {
      resolved.push(data)
      const imei = (data as { imei?: string }).imei ?? ''
      return KNOWN.has(imei) ? { device: { ...DEVICE, deviceName: `meter-${imei}` }, connect: CONNECT } : undefined
    },
    verify: signedClaims({ keyFor: derive, identity: 'imei', clock, nonces: new MemoryNonceStore({ clock }) }),
    onReclaim: (reclaim) => reclaims.push(reclaim),
    onError: (error) => errors.push(error),
    clock,
    ...extra,
  })
  const server = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, handler)
  const { port, close } = await listenOnLoopback(server)
  closers.push(close)
  const url = `https://127.0.0.1:${port}/bootstrap`
  /** A claim of `imei`, signed with its key at the clock's time (a fresh nonce each time) unless `signed` is false. */
  const claim = (imei: string, signed = true) => post(url, JSON.stringify({ imei }), signed ? clock : undefined)
  return { url, clock, reclaims, errors, resolved, claim }
}

async function post(url: string, body: string, clock: FakeClock | undefined) {
  const imei = (JSON.parse(body) as { imei: string }).imei
  const created = Math.floor((clock?.now() ?? Date.now()) / 1000)
  const headers =
    clock === undefined ? {} : signClaimIndependently({ key: derive(imei), keyId: imei, url, body, created }).headers
  const response = await request(url, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    body,
  })
  return { status: response.statusCode, body: (await response.body.json()) as { code: string; result?: unknown } }
}

test('a device claims, loses everything, claims again: the same configuration, one re-claim reported', async () => {
  const { clock, reclaims, errors, claim } = await reclaimServer()
  const first = await claim(IMEI)
  expect(first).toMatchObject({ status: 200, body: { code: '00000' } })
  expect(reclaims).toEqual([])
  const firstTime = clock.time
  clock.time += 90_000 // the factory reset; within the signature window, a new nonce
  const again = await claim(IMEI)
  expect(again).toEqual(first)
  expect(reclaims).toHaveLength(1)
  const expected = { identity: IMEI, peer: '127.0.0.1', sameConfiguration: true }
  expect(reclaims[0]).toMatchObject({ ...expected, time: new Date(clock.time), previousTime: new Date(firstTime) })
  // Another device's first claim is not a re-claim.
  expect(await claim(OTHER)).toMatchObject({ status: 200, body: { code: '00000' } })
  expect(reclaims).toHaveLength(1)
  expect(errors).toEqual([])
})

test("the device's own PointAccess, after a reset (a new one, nothing cached), gets what it had", async () => {
  const { url, clock, reclaims } = await reclaimServer()
  const options = { tls: { ca: tls.ca }, attestation: { keyId: IMEI, key: derive(IMEI) } }
  const before = new PointAccess(options, { clock })
  expect(await before.request(url, { imei: IMEI })).toBe('00000')
  const reset = new PointAccess(options, { clock })
  expect(reset.deviceConfig).not.toEqual(before.deviceConfig)
  expect(await reset.request(url, { imei: IMEI })).toBe('00000')
  expect(reset.deviceConfig).toEqual(before.deviceConfig)
  expect(reclaims.map((r) => r.identity)).toEqual([IMEI])
})

test('an unsigned re-claim is refused (10004, HTTP 401) like any unsigned claim; a refusal is never noted', async () => {
  const { reclaims, resolved, claim } = await reclaimServer()
  expect((await claim(IMEI)).body.code).toBe('00000')
  expect(await claim(IMEI, false)).toEqual({ status: 401, body: { code: '10004' } })
  expect(reclaims).toEqual([])
  expect(resolved).toHaveLength(1)
  // Nor does a refused claim count as served: a signed one after it is the only re-claim.
  expect((await claim(IMEI)).body.code).toBe('00000')
  expect(reclaims).toHaveLength(1)
  // An unknown device is answered 10001, not served: its second claim is no re-claim either.
  const unknown = '860000000000999'
  suite.secret(derive(unknown))
  for (let i = 0; i < 2; i++) expect((await claim(unknown)).body.code).toBe('10001')
  expect(reclaims).toHaveLength(1)
})

test('a hook that throws, or a log that fails, goes to onError; the device is answered 00000 all the same', async () => {
  const thrown = new Error('hook failed')
  const { errors, claim } = await reclaimServer({
    onReclaim: () => {
      throw thrown
    },
  })
  expect((await claim(IMEI)).body.code).toBe('00000')
  expect((await claim(IMEI)).body.code).toBe('00000')
  expect(errors).toEqual([thrown])
  const broken: ClaimLog = { served: () => Promise.reject(new Error('database down')) }
  const failing = await reclaimServer({ claims: broken })
  for (let i = 0; i < 2; i++) expect((await failing.claim(IMEI)).body.code).toBe('00000')
  expect(failing.errors.map((e) => (e as Error).message)).toEqual(['database down', 'database down'])
  expect(failing.reclaims).toEqual([])
})

test('an async hook that rejects goes to onError (no unhandled rejection); a log that never answers is given up', {
  timeout: 15_000,
}, async () => {
  const unhandled: unknown[] = []
  const record = (reason: unknown) => unhandled.push(reason)
  process.on('unhandledRejection', record)
  try {
    const rejected = new Error('hook failed later')
    const { errors, claim } = await reclaimServer({ onReclaim: () => Promise.reject(rejected) })
    expect((await claim(IMEI)).body.code).toBe('00000')
    expect((await claim(IMEI)).body.code).toBe('00000')
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(errors).toEqual([rejected])
    expect(unhandled).toEqual([])

    const silent: ClaimLog = { served: () => new Promise(() => {}) } // a store that never answers
    const stuck = await reclaimServer({ claims: silent })
    const started = performance.now()
    expect((await stuck.claim(IMEI)).body.code).toBe('00000')
    expect(performance.now() - started).toBeLessThan(5000)
    expect(stuck.errors.map((e) => (e as Error).message)).toEqual(['the claim log did not answer within 2000 ms'])
  } finally {
    process.off('unhandledRejection', record)
  }
})

test('the log is bounded: beyond maxEntries the least recently served is forgotten (never refused)', async () => {
  expect(new MemoryClaimLog().maxEntries).toBe(100_000)
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    expect(() => new MemoryClaimLog({ maxEntries: bad })).toThrow(/maxEntries/)
  }
  const claims = new MemoryClaimLog({ maxEntries: 3 })
  const { reclaims, claim } = await reclaimServer({ claims })
  for (const imei of FLEET.slice(0, 3)) expect((await claim(imei)).body.code).toBe('00000')
  expect((await claim(FLEET[0] as string)).body.code).toBe('00000') // a re-claim: now the most recently served
  expect(reclaims.map((r) => r.identity)).toEqual([FLEET[0]])
  for (const imei of FLEET.slice(3)) expect((await claim(imei)).body.code).toBe('00000')
  expect(claims.size).toBe(3)
  expect(claims.lastServed(FLEET[1] as string)).toBeUndefined()
  // The forgotten device claims again: answered as ever, just not reported as a re-claim.
  expect((await claim(FLEET[1] as string)).body.code).toBe('00000')
  expect(reclaims.map((r) => r.identity)).toEqual([FLEET[0]])
  // Kept now: FLEET[3], [4], [1] (FLEET[0] went when [1] came back); a kept one is still recognised.
  expect(claims.lastServed(FLEET[0] as string)).toBeUndefined()
  expect((await claim(FLEET[4] as string)).body.code).toBe('00000')
  expect(reclaims.map((r) => r.identity)).toEqual([FLEET[0], FLEET[4]])
})

test('without a verified identity there are no re-claims: no verify, or a registry that says "none"', async () => {
  const seed = await reclaimServer({ verify: undefined })
  for (let i = 0; i < 2; i++) expect((await seed.claim(IMEI, false)).body.code).toBe('00000')
  expect(seed.reclaims).toEqual([])
  const path = join(dir, 'none.json')
  const devices = [{ match: { imei: IMEI }, device: DEVICE }]
  writeFileSync(path, JSON.stringify({ version: 1, attestation: 'none', defaults: { connect: CONNECT }, devices }))
  const registry = new DeviceRegistry(path)
  const none = await reclaimServer({ resolve: registry.resolve, verify: registry.verifier() })
  for (let i = 0; i < 2; i++) expect((await none.claim(IMEI, false)).body.code).toBe('00000')
  expect(none.reclaims).toEqual([])
})

test('over the registry: resolve is idempotent; a configuration changed meanwhile is what the device gets, and said', async () => {
  const path = join(dir, 'group.json')
  const write = (device: object, mtime: Date) => {
    const attestation = { groupKey: GROUP_KEY, identity: 'imei' }
    const devices = [{ match: { imei: IMEI }, device }]
    writeFileSync(path, JSON.stringify({ version: 1, attestation, defaults: { connect: CONNECT }, devices }))
    utimesSync(path, mtime, mtime) // a distinct mtime, whatever the file system's resolution
  }
  write(DEVICE, new Date())
  const registry = new DeviceRegistry(path)
  const { reclaims, errors, claim } = await reclaimServer((clock) => ({
    resolve: registry.resolve,
    verify: registry.verifier({ clock, nonces: new MemoryNonceStore({ clock }) }),
  }))
  const first = await claim(IMEI)
  expect(first.body.code).toBe('00000')
  expect(await claim(IMEI)).toEqual(first)
  expect(reclaims.map((r) => r.sameConfiguration)).toEqual([true])
  // The operator rotated the device's secret in the registry: the re-claim gets the new one, and the hook says so.
  write({ ...DEVICE, deviceSecret: ROTATED }, new Date(Date.now() + 5000))
  const rotated = await claim(IMEI)
  expect((rotated.body.result as { device: { deviceSecret: string } }).device.deviceSecret).toBe(ROTATED)
  expect(reclaims.map((r) => r.sameConfiguration)).toEqual([true, false])
  expect(errors).toEqual([])
})

describe('serve', () => {
  const cli = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
  let child: ChildProcess | undefined
  afterEach(async () => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await once(child, 'close')
    }
    child = undefined
  })

  test('one line per re-claim: time, peer, the identity as the access log shows it; none for a first claim', async () => {
    const registry = join(dir, 'serve.json')
    const devices = [IMEI, OTHER].map((imei) => ({ match: { imei }, device: { ...DEVICE, deviceName: `m-${imei}` } }))
    const attestation = { groupKey: GROUP_KEY, identity: 'imei' }
    writeFileSync(registry, JSON.stringify({ version: 1, attestation, defaults: { connect: CONNECT }, devices }))
    const caOut = join(dir, 'serve-ca.pem')
    const started = startTs(cli, ['serve', '--registry', registry, '--port', '0', '--ca-out', caOut])
    child = started.child
    await until(() => /access log: /.test(started.output()) || started.child.exitCode !== null, 20_000, 'serve')
    const url = /listening on (https:\/\/\S+)/.exec(started.output())?.[1] as string
    expect(url, started.output()).toBeDefined()
    const trusting = new Agent({ connect: { ca: readFileSync(caOut, 'utf8') } })
    closers.push(() => trusting.close())
    const send = async (imei: string, signed = true) => {
      const body = JSON.stringify({ imei })
      const created = Math.floor(Date.now() / 1000)
      const headers = signed
        ? signClaimIndependently({ key: derive(imei), keyId: imei, url, body, created }).headers
        : {}
      const response = await request(url, {
        method: 'POST',
        dispatcher: trusting,
        headers: { 'content-type': 'application/json', ...headers },
        body,
      })
      return ((await response.body.json()) as { code: string }).code
    }
    const lines = () => started.output().split('\n')
    const reclaimLines = () => lines().filter((line) => / re-claim /.test(line))
    const accessLines = () => lines().filter((line) => / POST \/bootstrap /.test(line))
    expect(await send(IMEI)).toBe('00000')
    expect(await send(OTHER)).toBe('00000')
    expect(await send(IMEI, false)).toBe('10004')
    await until(() => accessLines().length === 3, 5000, 'three access-log lines')
    expect(reclaimLines()).toEqual([])
    const before = new Date()
    expect(await send(IMEI)).toBe('00000')
    await until(() => accessLines().length === 4, 5000, 'the fourth access-log line')
    const [line, ...more] = reclaimLines()
    expect(more).toEqual([])
    const match = /^(\S+) (\S+) re-claim - - - (\S+) \(served before (\S+)\)$/.exec(line ?? '')
    expect(match, line).not.toBeNull()
    const [, time, peer, identity, previous] = match as unknown as string[]
    expect(Date.parse(time as string)).toBeGreaterThanOrEqual(before.getTime() - 1000)
    expect(Date.parse(previous as string)).toBeLessThanOrEqual(before.getTime())
    expect(peer).toMatch(/^(::ffff:)?127\.0\.0\.1$/)
    expect(identity).toBe('8600…(15)')
    expect(started.output()).not.toContain(IMEI)
  })
})
