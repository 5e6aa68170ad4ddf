import { createHmac, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  ClaimLimiter,
  type ClaimLimitsOptions,
  createProvisioningHandler,
  type LimitCounterStore,
  MemoryNonceStore,
  type ProvisioningHandlerOptions,
  signedClaims,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { runTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'
import { listenOnLoopback } from './helpers/ports.js'
import { useServeProcesses } from './helpers/serve.js'
import { signClaimIndependently } from './helpers/sign-claim.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const GROUP_KEY = randomBytes(32).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
const IMEI = '860000000000001'
const FLEET = Array.from({ length: 8 }, (_, i) => `86000000000010${i}`)
for (const id of [IMEI, ...FLEET]) suite.secret(derive(id))
suite.secret(GROUP_KEY)
suite.secret(DEVICE.deviceSecret)
const KNOWN = new Set([IMEI, ...FLEET])

let tls: TlsFixture
let agent: Agent
let dir: string
beforeAll(async () => {
  tls = await tlsFixture()
  agent = new Agent({ connect: { ca: tls.ca }, connections: 16 })
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-claims-limits-'))
})
afterAll(async () => {
  await agent.close()
  await rm(dir, { recursive: true, force: true })
})

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const close of closers.splice(0)) await close()
})

/** The handler with signed claims (or none) and the given limits, on a real HTTPS server; the fake clock for both. */
async function limitedServer(
  limits: ClaimLimitsOptions | ClaimLimiter | boolean,
  extra: Partial<ProvisioningHandlerOptions> = {},
  signed = true,
) {
  const clock = new FakeClock()
  const resolved: unknown[] = []
  const limiter =
    limits instanceof ClaimLimiter || typeof limits === 'boolean' ? limits : new ClaimLimiter({ clock, ...limits })
  const handler = createProvisioningHandler({
    resolve: (data) => {
      resolved.push(data)
      return KNOWN.has((data as { imei?: string }).imei ?? '')
        ? { device: DEVICE, connect: { host: 'broker.example:8883' } }
        : undefined
    },
    ...(signed
      ? { verify: signedClaims({ keyFor: derive, identity: 'imei', clock, nonces: new MemoryNonceStore({ clock }) }) }
      : {}),
    limits: limiter,
    ...extra,
  })
  const server = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, handler)
  const { port, close } = await listenOnLoopback(server)
  closers.push(close)
  const url = `https://127.0.0.1:${port}/bootstrap`
  return { url, clock, resolved, limiter }
}

interface Answer {
  status: number
  code: string
  retryAfter: string | undefined
  ms: number
}

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Answer> {
  const start = performance.now()
  const response = await request(url, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    body,
  })
  const answer = (await response.body.json()) as { code: string }
  const retryAfter = response.headers['retry-after']
  return {
    status: response.statusCode,
    code: answer.code,
    retryAfter: retryAfter as string | undefined,
    ms: performance.now() - start,
  }
}

/** A claim for `imei` signed with its key (or `key`), at the clock's time. */
function signed(url: string, imei: string, clock: FakeClock, key = derive(imei)) {
  const body = JSON.stringify({ imei })
  const claim = signClaimIndependently({ key, keyId: imei, url, body, created: Math.floor(clock.now() / 1000) })
  return { body, headers: claim.headers as Record<string, string> }
}

let next = 0
/** An unsigned claim of an identity nobody has: what an enumerator sends. */
const guess = () => JSON.stringify({ imei: `86999${String(++next).padStart(10, '0')}` })
const xff = (address: string) => ({ 'x-forwarded-for': address })

test('an enumerating address: 10 normal refusals, then 429 at once, growing on repeated abuse, capped; normal again after', async () => {
  const { url, clock, resolved } = await limitedServer({})
  for (let i = 0; i < 10; i++) expect(await post(url, guess())).toMatchObject({ status: 401, code: '10004' })
  const limited = await post(url, guess())
  expect(limited).toMatchObject({ status: 429, code: '77777', retryAfter: '60' })
  // A forged signature is limited too (the verifier runs, the signature fails, the 429 replaces the 401).
  const forged = signed(url, IMEI, clock, randomBytes(32).toString('base64'))
  expect(await post(url, forged.body, forged.headers)).toMatchObject({ status: 429, retryAfter: '60' })
  clock.time += 30_000
  expect(await post(url, guess())).toMatchObject({ status: 429, retryAfter: '30' })
  expect(resolved).toHaveLength(0)
  // Each block ends, the address gets 10 normal answers, abuses again at once: the next block doubles, up to 900 s.
  const blocks: number[] = [60]
  clock.time += 30_000
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 10; i++) expect(await post(url, guess())).toMatchObject({ status: 401, code: '10004' })
    const answer = await post(url, guess())
    expect(answer.status).toBe(429)
    blocks.push(Number(answer.retryAfter))
    clock.time += Number(answer.retryAfter) * 1000
  }
  expect(blocks).toEqual([60, 120, 240, 480, 900, 900])
  // Quiet for as long as the last block: forgiven, back to 10 normal answers and a 60 s block.
  clock.time += 900_000
  for (let i = 0; i < 10; i++) expect(await post(url, guess())).toMatchObject({ status: 401 })
  expect(await post(url, guess())).toMatchObject({ status: 429, retryAfter: '60' })
})

test('answered at once, never late: the 429s are no slower than the refusals they replace', async () => {
  const { url } = await limitedServer({})
  const normal: number[] = []
  for (let i = 0; i < 10; i++) normal.push((await post(url, guess())).ms)
  const limited: number[] = []
  for (let i = 0; i < 20; i++) {
    const answer = await post(url, guess())
    expect(answer.status).toBe(429)
    limited.push(answer.ms)
  }
  console.log(`refusal median ${median(normal).toFixed(2)} ms, 429 median ${median(limited).toFixed(2)} ms`)
  expect(median(limited)).toBeLessThan(Math.max(2 * median(normal), median(normal) + 20))
})

test('without verify (the seed contract): unknown devices count, and past the limit resolve is not run', async () => {
  const { url, resolved } = await limitedServer({}, {}, false)
  for (let i = 0; i < 10; i++) expect(await post(url, guess())).toMatchObject({ status: 200, code: '10001' })
  expect(resolved).toHaveLength(10)
  expect(await post(url, JSON.stringify({ imei: IMEI }))).toMatchObject({ status: 429, code: '77777' })
  expect(resolved).toHaveLength(10)
})

test('a counter store that fails after resolve decided: the answer stands, the failure goes to onError', async () => {
  const errors: unknown[] = []
  const failing: LimitCounterStore = {
    update: (_keys, at, change) => {
      if (at.writes) return Promise.reject(new Error('the counter store is away'))
      return change([undefined, undefined]).result
    },
  }
  const { url, resolved } = await limitedServer({ store: failing }, { onError: (e) => errors.push(e) }, false)
  expect(await post(url, guess())).toMatchObject({ status: 200, code: '10001' })
  expect(await post(url, JSON.stringify({ imei: IMEI }))).toMatchObject({ status: 200, code: '00000' })
  expect(resolved).toHaveLength(2)
  expect(errors.map((e) => (e as Error).message)).toEqual(['the counter store is away'])
})

test('limits are off by default in the handler, and with limits: false', async () => {
  for (const extra of [{ limits: undefined }, {}]) {
    const { url } = await limitedServer(false, extra)
    for (let i = 0; i < 15; i++) expect(await post(url, guess())).toMatchObject({ status: 401, code: '10004' })
  }
})

test('signed devices behind the same address as an enumerator are not slowed at all (both at once)', async () => {
  const { url, clock } = await limitedServer({})
  /** Each fleet device claims `rounds` times in turn (a fresh nonce each time); the answers and their latencies. */
  const fleet = async (rounds: number) => {
    const answers = await Promise.all(
      FLEET.map(async (imei) => {
        const mine: Answer[] = []
        for (let i = 0; i < rounds; i++) {
          const claim = signed(url, imei, clock)
          mine.push(await post(url, claim.body, claim.headers))
        }
        return mine
      }),
    )
    return answers.flat()
  }
  await fleet(2) // warm: TLS sessions, JIT
  const baseline = await fleet(10)
  let stop = false
  const enumerated: Answer[] = []
  const enumerator = Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = 0; i < 400 && !stop; i++) enumerated.push(await post(url, guess()))
    }),
  )
  await until(() => enumerated.length >= 20, 10_000, 'the enumerator to be over its limit')
  const mixed = await fleet(10)
  stop = true
  await enumerator
  const codes = (answers: Answer[]) => answers.map((a) => `${a.status} ${a.code}`)
  expect(codes(baseline)).toEqual(Array(80).fill('200 00000'))
  expect(codes(mixed)).toEqual(Array(80).fill('200 00000'))
  expect(enumerated.filter((a) => a.status === 401)).toHaveLength(10)
  expect(enumerated.slice(10).every((a) => a.status === 429 && a.retryAfter === '60')).toBe(true)
  const [base, both] = [median(baseline.map((a) => a.ms)), median(mixed.map((a) => a.ms))]
  console.log(
    `signed fleet, 8 devices x 10 claims: baseline median ${base.toFixed(2)} ms (p90 ${p90(baseline).toFixed(2)}), ` +
      `beside the enumerator median ${both.toFixed(2)} ms (p90 ${p90(mixed).toFixed(2)}); enumerator: ` +
      `${enumerated.length} requests, 10 refused normally, ${enumerated.length - 10} answered 429`,
  )
  // The enumerator shares the CPU (2 cores, other work): noise, but no device waits on purpose.
  expect(both).toBeLessThan(Math.max(3 * base, base + 25))
})

test('a public IMEI hammered with bad signatures from many addresses does not lock out the real device', async () => {
  const { url, clock, resolved } = await limitedServer({}, { trustProxy: ['127.0.0.1'] })
  const answers: Answer[] = []
  for (let a = 0; a < 40; a++) {
    for (let i = 0; i < 3; i++) {
      const forged = signed(url, IMEI, clock, randomBytes(32).toString('base64'))
      answers.push(await post(url, forged.body, { ...forged.headers, ...xff(`198.51.100.${a}`) }))
    }
  }
  // No address is over its own limit: the identity is, after its 10 failures from anywhere.
  expect(answers.slice(0, 10).every((a) => a.status === 401)).toBe(true)
  expect(answers.slice(10).every((a) => a.status === 429)).toBe(true)
  expect(await post(url, JSON.stringify({ imei: IMEI }), xff('203.0.113.9'))).toMatchObject({ status: 429 })
  // Another identity from a fresh address is answered normally; the real device's signed claims go through.
  expect(await post(url, guess(), xff('203.0.113.10'))).toMatchObject({ status: 401, code: '10004' })
  for (const peer of ['198.51.100.1', '203.0.113.9', '192.0.2.1']) {
    const claim = signed(url, IMEI, clock)
    expect(await post(url, claim.body, { ...claim.headers, ...xff(peer) })).toMatchObject({
      status: 200,
      code: '00000',
    })
  }
  expect(resolved).toHaveLength(3)
})

describe('the peer address', () => {
  test('X-Forwarded-For is ignored unless trustProxy names the peer', async () => {
    for (const trustProxy of [undefined, ['10.0.0.0/8', '::1']]) {
      const { url } = await limitedServer({}, trustProxy === undefined ? {} : { trustProxy })
      for (let i = 0; i < 10; i++) expect(await post(url, guess(), xff(`192.0.2.${i}`))).toMatchObject({ status: 401 })
      expect(await post(url, guess(), xff('192.0.2.99'))).toMatchObject({ status: 429 })
    }
  })

  test('with trustProxy, the right-most untrusted address counts, whatever the client wrote left of it', async () => {
    const { url } = await limitedServer({}, { trustProxy: ['127.0.0.1', '10.0.0.0/8'] })
    // The client wrote a new address each time; the trusted proxies appended 198.51.100.7, then 10.1.2.3.
    const hops = (i: number) => xff(`192.0.2.${i}, 198.51.100.7, 10.1.2.3`)
    for (let i = 0; i < 10; i++) expect(await post(url, guess(), hops(i))).toMatchObject({ status: 401 })
    expect(await post(url, guess(), hops(50))).toMatchObject({ status: 429 })
    expect(await post(url, guess(), xff('198.51.100.7'))).toMatchObject({ status: 429 })
    expect(await post(url, guess(), xff('198.51.100.8, 10.9.9.9'))).toMatchObject({ status: 401 })
  })

  test('a forwarded address with a port is the address (a new port is no new counter); garbage is the proxy', async () => {
    const { url } = await limitedServer({}, { trustProxy: ['127.0.0.1'] })
    for (let i = 0; i < 10; i++) {
      expect(await post(url, guess(), xff(`192.0.2.7:${40000 + i}`))).toMatchObject({ status: 401 })
    }
    expect(await post(url, guess(), xff('192.0.2.7'))).toMatchObject({ status: 429 })
    expect(await post(url, guess(), xff('not-an-address'))).toMatchObject({ status: 401 })
  })

  test('IPv6 addresses count per /64; a bad trustProxy entry is a TypeError naming it', async () => {
    const { url } = await limitedServer({}, { trustProxy: ['127.0.0.1'] })
    for (let i = 1; i <= 10; i++)
      expect(await post(url, guess(), xff(`2001:db8:1:2::${i}`))).toMatchObject({ status: 401 })
    expect(await post(url, guess(), xff('2001:db8:1:2:ffff::1'))).toMatchObject({ status: 429 })
    expect(await post(url, guess(), xff('2001:db8:1:3::1'))).toMatchObject({ status: 401 })
    for (const bad of ['10.0.0.0/33', 'proxy.local', '10.0.0.0/', '::1/129']) {
      expect(() => createProvisioningHandler({ resolve: () => undefined, limits: true, trustProxy: [bad] })).toThrow(
        /trustProxy/,
      )
    }
  })
})

test('memory stays bounded under many addresses; an evicted counter forgets, never blocks', async () => {
  const clock = new FakeClock()
  const limiter = new ClaimLimiter({ clock, maxKeys: 100 })
  const { url } = await limitedServer(limiter, { trustProxy: ['127.0.0.1'] })
  for (let i = 0; i < 10; i++) await post(url, guess(), xff('192.0.2.1'))
  expect(await post(url, guess(), xff('192.0.2.1'))).toMatchObject({ status: 429 })
  for (let i = 0; i < 600; i++) {
    expect(await post(url, guess(), xff(`10.${i >> 8}.${i & 255}.1`))).toMatchObject({ status: 401 })
    expect(limiter.size.addresses).toBeLessThanOrEqual(100)
  }
  expect(limiter.size).toEqual({ addresses: 100, identities: 100 })
  // The enumerator's counter was evicted: its abuse is forgotten (a fresh start), nobody else is blocked by it.
  expect(await post(url, guess(), xff('192.0.2.1'))).toMatchObject({ status: 401 })
})

describe('serve', () => {
  const cli = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
  const processes = useServeProcesses()

  async function serve(...more: string[]) {
    const registry = join(dir, `devices-${++next}.json`)
    writeFileSync(
      registry,
      JSON.stringify({
        version: 1,
        attestation: { groupKey: GROUP_KEY, identity: 'imei' },
        defaults: { connect: { host: 'mqtts://broker.example:8883', qos: 1, cleanSession: 1 } },
        devices: [{ match: { imei: IMEI }, device: DEVICE }],
      }),
    )
    const caOut = join(dir, `ca-${next}.pem`)
    const started = await processes.serve(['--registry', registry, '--port', '0', '--ca-out', caOut, ...more])
    const { url } = started
    const trusting = new Agent({ connect: { ca: readFileSync(caOut, 'utf8') } })
    closers.push(() => trusting.close())
    const send = async () => {
      const response = await request(url as string, {
        method: 'POST',
        dispatcher: trusting,
        headers: { 'content-type': 'application/json' },
        body: guess(),
      })
      await response.body.text()
      return { status: response.statusCode, retryAfter: response.headers['retry-after'] }
    }
    return { ...started, send }
  }

  test('limits are on by default: 11 bad claims, then a 429 with Retry-After', async () => {
    const server = await serve()
    expect(server.output()).toMatch(/abuse limits: 10 failed claims a minute/)
    const answers = []
    for (let i = 0; i < 11; i++) answers.push(await server.send())
    expect(answers.slice(0, 10).map((a) => a.status)).toEqual(Array(10).fill(401))
    expect(answers[10]).toEqual({ status: 429, retryAfter: '60' })
    await until(() => / 429 77777 /.test(server.output()), 5000, 'the 429 in the access log')
  })

  test('a --trust-proxy that is no address or CIDR is a usage error (exit 2)', async () => {
    const registry = join(dir, 'none.json')
    writeFileSync(registry, JSON.stringify({ version: 1, attestation: 'none', devices: [] }))
    const run = await runTs(cli, ['serve', '--registry', registry, '--trust-proxy', '10.0.0.0/99'], {
      timeoutMs: 30_000,
    })
    expect(run.output).toMatch(/--trust-proxy: .*trustProxy/)
    expect(run.code).toBe(2)
  })

  test('--no-limits turns them off', async () => {
    const server = await serve('--no-limits')
    expect(server.output()).toMatch(/abuse limits: off/)
    for (let i = 0; i < 15; i++) expect((await server.send()).status).toBe(401)
  })
})

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

function p90(answers: Answer[]): number {
  const sorted = answers.map((a) => a.ms).sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length * 0.9)] ?? Number.NaN
}
