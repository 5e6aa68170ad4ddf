/**
 * Signed claims, server side (issue 14): `createProvisioningHandler({ resolve, verify: signedClaims(...) })` over a
 * real HTTPS server, judged with claims made by an independent signer (test/helpers/sign-claim.ts: no
 * http-message-signatures), by http-message-signatures itself, and by the device's own PointAccess. Every refusal is HTTP 401 with a body of `{ code }`
 * only, never reaches `resolve`, and burns no nonce; an unknown identity looks like a bad signature.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer, request as httpsRequest, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { inspect } from 'node:util'
import { httpbis } from 'http-message-signatures'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import {
  type ClaimVerifier,
  createProvisioningHandler,
  MemoryNonceStore,
  NonceStoreFullError,
  type ProvisioningHandlerOptions,
  type Resolution,
  SERVER_CODES,
  type SignedClaimsOptions,
  signedClaims,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'
import { type ClaimSpec, contentDigestOf, signClaimIndependently } from './helpers/sign-claim.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

const GROUP_KEY = randomBytes(32).toString('base64')
/** deriveDeviceKey, computed here (DESIGN.md's formula), not with the product's function. */
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
const IMEI = '860000000000001'
const OTHER = '860000000000002'
const UNKNOWN = '860000000000999'
for (const secret of [GROUP_KEY, derive(IMEI), derive(OTHER), derive(UNKNOWN)]) suite.secret(secret)
suite.secret(DEVICE.deviceSecret)

let tls: TlsFixture
let agent: Agent
beforeAll(async () => {
  tls = await tlsFixture()
  agent = new Agent({ connect: { ca: tls.ca } })
})
afterAll(() => agent.close())

interface ClaimServer {
  url: string
  resolved: unknown[]
  errors: unknown[]
  close(): Promise<void>
}

const servers: ClaimServer[] = []
afterAll(async () => {
  for (const server of servers) await server.close()
})

/** createProvisioningHandler({ resolve, verify }) on a real HTTPS server; `front` may read the body first. */
async function claimServer(
  verify: ClaimVerifier | undefined,
  front?: (handler: ReturnType<typeof createProvisioningHandler>, req: IncomingMessage, res: ServerResponse) => void,
  extra: Partial<ProvisioningHandlerOptions> = {},
): Promise<ClaimServer> {
  const resolved: unknown[] = []
  const errors: unknown[] = []
  const handler = createProvisioningHandler({
    resolve: (data): Resolution | undefined => {
      resolved.push(data)
      const imei = (data as { imei?: unknown }).imei
      return imei === IMEI || imei === OTHER ? { device: DEVICE, connect: { host: 'broker.example:8883' } } : undefined
    },
    ...(verify === undefined ? {} : { verify }),
    onError: (error) => errors.push(error),
    ...extra,
  })
  const server: Server = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, (req, res) =>
    front === undefined ? handler(req, res) : front(handler, req, res),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`
  const entry: ClaimServer = {
    url,
    resolved,
    errors,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
  servers.push(entry)
  return entry
}

interface Answer {
  status: number
  body: unknown
  headers: Record<string, string | string[] | undefined>
}

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await request(url, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    body,
  })
  const text = await response.body.text()
  return { status: response.statusCode, body: JSON.parse(text), headers: response.headers }
}

const clock = new FakeClock()
const nowSeconds = () => Math.floor(clock.now() / 1000)

/** A claim for `imei` signed by the independent signer, with `spec` overriding any part. */
function claim(url: string, imei: string, spec: Partial<ClaimSpec> = {}) {
  const body = JSON.stringify({ imei })
  const signed = signClaimIndependently({
    key: derive(imei),
    keyId: imei,
    url,
    body,
    created: nowSeconds(),
    ...spec,
  })
  return { body, headers: signed.headers as Record<string, string>, nonce: signed.nonce }
}

const refusal = (code: string) => ({ status: 401, body: { code } })

test("the refusal codes are the contract's, named in SERVER_CODES", () => {
  expect(SERVER_CODES).toMatchObject({ INVALID_SIGNATURE: '10004', STALE_CLAIM: '10005' })
})

describe('the independent signer', () => {
  test('reproduces RFC 9421 Appendix B.2.5 (hmac-sha256, key of B.1.5)', () => {
    const signed = signClaimIndependently({
      key: 'uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==',
      keyId: 'test-shared-secret',
      url: 'https://example.com/foo?param=Value&Pet=dog',
      body: '{"hello": "world"}',
      created: 1618884473,
      nonce: null,
      alg: null,
      label: 'sig-b25',
      components: ['date', '@authority', 'content-type'],
      headers: { date: 'Tue, 20 Apr 2021 02:07:55 GMT', 'content-type': 'application/json' },
    })
    expect(signed.headers['signature-input']).toBe(
      'sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"',
    )
    expect(signed.headers.signature).toBe('sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:')
  })
})

describe('signedClaims over HTTPS', () => {
  let server: ClaimServer
  let nonces: MemoryNonceStore
  let keyFor: SignedClaimsOptions['keyFor']
  beforeAll(async () => {
    server = await claimServer(
      signedClaims({
        keyFor: (id) => keyFor(id),
        identity: (data) => (data as { imei?: unknown }).imei,
        nonces: {
          remember: (keyId, nonce, expiresAtMs) => nonces.remember(keyId, nonce, expiresAtMs),
        },
        clock,
      }),
    )
  })
  beforeEach(() => {
    nonces = new MemoryNonceStore({ clock })
    keyFor = derive
    server.resolved.length = 0
    server.errors.length = 0
  })

  test('a valid claim gets its configuration, and resolve sees the data once', async () => {
    const { body, headers } = claim(server.url, IMEI)
    const answer = await post(server.url, body, headers)
    expect(answer.status).toBe(200)
    expect(answer.body).toMatchObject({ code: '00000', result: { device: { deviceName: DEVICE.deviceName } } })
    expect(server.resolved).toEqual([{ imei: IMEI }])
    expect(nonces.size).toBe(1)
  })

  test('claims signed by http-message-signatures (another implementation), any label and parameter order, are accepted', async () => {
    const url = new URL(server.url)
    const sign = async (label: string, params: string[], body: string) => {
      const key = Buffer.from(derive(IMEI), 'base64')
      const paramValues = {
        created: new Date(clock.time),
        nonce: randomBytes(16).toString('base64url'),
        alg: 'hmac-sha256',
        keyid: IMEI,
      }
      const signed = await httpbis.signMessage(
        {
          key: {
            id: IMEI,
            alg: 'hmac-sha256',
            sign: async (data: Buffer) => createHmac('sha256', key).update(data).digest(),
          },
          name: label,
          params: params as never,
          fields: ['content-digest', '@method', '@target-uri'],
          paramValues,
        },
        { method: 'POST', url, headers: { 'content-digest': contentDigestOf(body) } },
      )
      return Object.fromEntries(Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), String(v)]))
    }
    const body = JSON.stringify({ imei: IMEI })
    for (const [label, params] of [
      ['sig1', ['created', 'nonce', 'alg', 'keyid']],
      ['device-claim', ['keyid', 'alg', 'nonce', 'created']],
    ] as const) {
      const headers = await sign(label, [...params], body)
      expect(headers['signature-input']).toMatch(
        new RegExp(`^${label}=\\("content-digest" "@method" "@target-uri"\\);`),
      )
      const answer = await post(server.url, body, { 'content-type': 'application/json', ...headers })
      expect(answer.body).toMatchObject({ code: '00000' })
    }
    // The same library's claim over a body other than the one sent: refused.
    const headers = await sign('sig1', ['created', 'nonce', 'alg', 'keyid'], JSON.stringify({ imei: OTHER }))
    const answer = await post(server.url, body, { 'content-type': 'application/json', ...headers })
    expect(answer).toMatchObject({ status: 401, body: { code: '10004' } })
  })

  test('a device whose clock is an hour ahead is refused with 10005, and its error says how far off its clock is', async () => {
    clock.time = Date.now() // the server's window follows its real Date header here
    try {
      const ahead = new FakeClock()
      ahead.time = Date.now() + 3_600_000
      const attestation = { keyId: IMEI, key: derive(IMEI) }
      const device = new PointAccess({ tls: { ca: tls.ca }, attestation }, { clock: ahead })
      expect(await device.request(server.url, { imei: IMEI })).toBe('10005')
      expect(device.lastError?.code).toBe('ERR_PROVISION_REFUSED')
      expect(device.lastError?.message).toMatch(/the device clock is 360[01] s ahead of the server's Date/)
      expect(nonces.size).toBe(0)
    } finally {
      clock.time = new FakeClock().time
    }
  })

  test("the device's own signer (PointAccess with attestation) is accepted", async () => {
    clock.time = Date.now() // PointAccess signs with the system clock
    try {
      const device = new PointAccess({ tls: { ca: tls.ca }, attestation: { keyId: IMEI, key: derive(IMEI) } })
      expect(await device.request(server.url, { imei: IMEI })).toBe('00000')
      expect(device.deviceConfig.device.deviceName).toBe(DEVICE.deviceName)
      // The same key on another identity's claim: refused.
      const other = new PointAccess({ tls: { ca: tls.ca }, attestation: { keyId: IMEI, key: derive(IMEI) } })
      expect(await other.request(server.url, { imei: OTHER })).toBe('10004')
    } finally {
      clock.time = new FakeClock().time
    }
  })

  /** Each refused with `code`, HTTP 401, a body of `{ code }` only, before resolve and without burning the nonce. */
  const refusals: Array<[string, string, (url: string) => { body: string; headers: Record<string, string> }]> = [
    ['unsigned', '10004', () => ({ body: JSON.stringify({ imei: IMEI }), headers: {} })],
    [
      'a signature without its Signature-Input',
      '10004',
      (url) => {
        const { body, headers } = claim(url, IMEI)
        return {
          body,
          headers: { 'content-digest': headers['content-digest'] as string, signature: headers.signature as string },
        }
      },
    ],
    ['a bad signature (another key)', '10004', (url) => claim(url, IMEI, { key: randomBytes(32) })],
    [
      "the claimed identity's keyid signed with another device's key",
      '10004',
      (url) => claim(url, IMEI, { key: derive(OTHER) }),
    ],
    [
      "another device's keyid and its own valid key",
      '10004',
      (url) => claim(url, IMEI, { keyId: OTHER, key: derive(OTHER) }),
    ],
    ['no keyid', '10004', (url) => claim(url, IMEI, { keyId: undefined })],
    [
      'a tampered body (the digest of the signed one)',
      '10004',
      (url) => ({ ...claim(url, IMEI), body: JSON.stringify({ imei: IMEI, x: 1 }) }),
    ],
    [
      'a tampered body with its own digest (not the signed one)',
      '10004',
      (url) => {
        const signed = claim(url, IMEI)
        const body = `${signed.body} `
        return { body, headers: { ...signed.headers, 'content-digest': contentDigestOf(body) } }
      },
    ],
    [
      'no Content-Digest',
      '10004',
      (url) => {
        const { body, headers } = claim(url, IMEI)
        const { 'content-digest': _, ...rest } = headers
        return { body, headers: rest }
      },
    ],
    [
      'fewer components (no content-digest)',
      '10004',
      (url) => claim(url, IMEI, { components: ['@method', '@target-uri'] }),
    ],
    [
      'fewer components (no @target-uri)',
      '10004',
      (url) => claim(url, IMEI, { components: ['@method', 'content-digest'] }),
    ],
    [
      'other components (@authority for @target-uri)',
      '10004',
      (url) => claim(url, IMEI, { components: ['@method', '@authority', 'content-digest'] }),
    ],
    [
      'more components',
      '10004',
      (url) =>
        claim(url, IMEI, {
          components: ['@method', '@target-uri', 'content-digest', 'content-type'],
          headers: { 'content-type': 'application/json' },
        }),
    ],
    ['wrong alg', '10004', (url) => claim(url, IMEI, { alg: 'hmac-sha512' })],
    ['no alg', '10004', (url) => claim(url, IMEI, { alg: null })],
    ['no created', '10004', (url) => claim(url, IMEI, { created: undefined })],
    ['no nonce', '10004', (url) => claim(url, IMEI, { nonce: null })],
    ['a short nonce (15 bytes)', '10004', (url) => claim(url, IMEI, { nonce: randomBytes(15).toString('base64url') })],
    [
      'a nonce that is not base64url',
      '10004',
      (url) => claim(url, IMEI, { nonce: `${randomBytes(16).toString('base64')}+/` }),
    ],
    ['another target (path)', '10004', (url) => claim(url, IMEI, { url: url.replace('/bootstrap', '/other') })],
    ['another target (host)', '10004', (url) => claim(url, IMEI, { url: url.replace('127.0.0.1', 'localhost') })],
    ['another method', '10004', (url) => claim(url, IMEI, { method: 'PUT' })],
    [
      'two signatures',
      '10004',
      (url) => {
        const first = claim(url, IMEI)
        const second = claim(url, IMEI, { label: 'sig2' })
        return {
          body: first.body,
          headers: {
            ...first.headers,
            'signature-input': `${first.headers['signature-input']}, ${second.headers['signature-input']}`,
            signature: `${first.headers.signature}, ${second.headers.signature}`,
          },
        }
      },
    ],
    [
      'a malformed Signature-Input',
      '10004',
      (url) => ({ ...claim(url, IMEI), headers: { ...claim(url, IMEI).headers, 'signature-input': 'sig1=(((' } }),
    ],
    ['a created 301 s ago', '10005', (url) => claim(url, IMEI, { created: nowSeconds() - 301 })],
    ['a created 301 s ahead', '10005', (url) => claim(url, IMEI, { created: nowSeconds() + 301 })],
    [
      'a stale created with a bad signature: the signature first',
      '10004',
      (url) => claim(url, IMEI, { created: nowSeconds() - 3600, key: randomBytes(32) }),
    ],
  ]
  test.each(refusals)('%s: refused with %s', async (_name, code, make) => {
    const { body, headers } = make(server.url)
    const answer = await post(server.url, body, headers)
    expect({ status: answer.status, body: answer.body }).toEqual(refusal(code))
    expect(answer.headers['content-type']).toBe('application/json')
    expect(server.resolved).toEqual([])
    expect(nonces.size, 'no nonce recorded for a refused claim').toBe(0)
    expect(server.errors).toEqual([])
  })

  test('a refused claim burns no nonce: the valid claim with the same nonce is accepted afterwards', async () => {
    const valid = claim(server.url, IMEI)
    const forged = claim(server.url, IMEI, { key: randomBytes(32), nonce: valid.nonce as string })
    expect((await post(server.url, forged.body, forged.headers)).status).toBe(401)
    expect((await post(server.url, valid.body, valid.headers)).status).toBe(200)
  })

  test('the window is ±300 s inclusive', async () => {
    for (const created of [nowSeconds() - 300, nowSeconds() + 300]) {
      const { body, headers } = claim(server.url, IMEI, { created })
      expect((await post(server.url, body, headers)).status).toBe(200)
    }
  })

  test('a replayed claim is refused with 10005, also after a while within the window; a fresh one is accepted', async () => {
    const { body, headers } = claim(server.url, IMEI)
    expect((await post(server.url, body, headers)).status).toBe(200)
    expect(await post(server.url, body, headers)).toMatchObject(refusal('10005'))
    clock.time += 250_000
    expect(await post(server.url, body, headers)).toMatchObject(refusal('10005'))
    clock.time += 60_000 // now outside the window: refused for its created, still 10005
    expect(await post(server.url, body, headers)).toMatchObject(refusal('10005'))
    const fresh = claim(server.url, IMEI)
    expect((await post(server.url, fresh.body, fresh.headers)).status).toBe(200)
    expect(server.resolved).toHaveLength(2)
  })

  test('concurrent replays: exactly one of ten identical claims is accepted', async () => {
    const { body, headers } = claim(server.url, IMEI)
    const answers = await Promise.all(Array.from({ length: 10 }, () => post(server.url, body, headers)))
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(1)
    expect(answers.filter((answer) => (answer.body as { code: string }).code === '10005')).toHaveLength(9)
  })

  test('an identity with no key (keyFor answers undefined) is refused like a bad signature', async () => {
    const keys = new Map([[IMEI, derive(IMEI)]])
    keyFor = async (id) => keys.get(id) // async too
    const unknown = claim(server.url, UNKNOWN, { key: randomBytes(32) })
    const forged = claim(server.url, IMEI, { key: randomBytes(32) })
    const a = await post(server.url, unknown.body, unknown.headers)
    const b = await post(server.url, forged.body, forged.headers)
    expect(a.status).toBe(b.status)
    expect(a.body).toEqual(b.body)
    expect(a.body).toEqual({ code: '10004' })
    const names = (answer: Answer) => Object.keys(answer.headers).sort()
    expect(names(a)).toEqual(names(b))
    for (const name of names(a).filter((n) => n !== 'date')) expect(a.headers[name]).toEqual(b.headers[name])
    // Even with the key it would have: no key, no claim.
    const signed = claim(server.url, UNKNOWN)
    expect(await post(server.url, signed.body, signed.headers)).toMatchObject(refusal('10004'))
    expect(server.resolved).toEqual([])
  })

  test('with a group key, an unknown identity with a valid derived-key signature reaches resolve (10001)', async () => {
    const { body, headers } = claim(server.url, UNKNOWN)
    const answer = await post(server.url, body, headers)
    expect(answer.body).toMatchObject({ code: SERVER_CODES.UNKNOWN_DEVICE })
    expect(server.resolved).toEqual([{ imei: UNKNOWN }])
  })

  test('keyFor throwing (or rejecting) is a transient failure, "77777", told to onError', async () => {
    keyFor = () => {
      throw new Error('key vault down')
    }
    const first = claim(server.url, IMEI)
    expect(await post(server.url, first.body, first.headers)).toMatchObject({ status: 500, body: { code: '77777' } })
    keyFor = () => Promise.reject(new Error('key vault timeout'))
    const second = claim(server.url, IMEI)
    expect(await post(server.url, second.body, second.headers)).toMatchObject({ status: 500, body: { code: '77777' } })
    expect(server.errors.map((error) => (error as Error).message)).toEqual(['key vault down', 'key vault timeout'])
    expect(server.resolved).toEqual([])
    expect(nonces.size).toBe(0)
  })

  test('an onError that throws itself changes nothing: still "77777", no unhandled rejection', async () => {
    const unhandled: unknown[] = []
    const record = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', record)
    try {
      const throwing = await claimServer(
        signedClaims({ keyFor: () => Promise.reject(new Error('key vault down')), identity: 'imei', clock }),
        undefined,
        {
          onError: () => {
            throw new Error('the logger is broken too')
          },
        },
      )
      const { body, headers } = claim(throwing.url, IMEI)
      expect(await post(throwing.url, body, headers)).toMatchObject({ status: 500, body: { code: '77777' } })
      await new Promise((resolve) => setTimeout(resolve, 50)) // a rejection is reported after its microtasks
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', record)
    }
  })

  test('keyFor returning something that is no key: "77777", the error does not show it', async () => {
    keyFor = () => 'not base64!' as string
    const { body, headers } = claim(server.url, IMEI)
    expect(await post(server.url, body, headers)).toMatchObject({ status: 500, body: { code: '77777' } })
    expect(String(server.errors[0])).not.toContain('not base64!')
  })

  test('a nonce store that fails: "77777"; a full one: 503 "77777" with a Retry-After', async () => {
    nonces = { remember: () => Promise.reject(new Error('database down')) } as unknown as MemoryNonceStore
    const first = claim(server.url, IMEI)
    expect(await post(server.url, first.body, first.headers)).toMatchObject({ status: 500, body: { code: '77777' } })
    nonces = {
      remember: () => {
        throw new NonceStoreFullError(42)
      },
    } as unknown as MemoryNonceStore
    const second = claim(server.url, IMEI)
    const full = await post(server.url, second.body, second.headers)
    expect({ status: full.status, body: full.body, retry: full.headers['retry-after'] }).toEqual({
      status: 503,
      body: { code: '77777' },
      retry: '42',
    })
    expect(server.resolved).toEqual([])
  })

  test('the group key and the device keys never show in errors or inspected verifiers', () => {
    const verifier = signedClaims({ keyFor: derive, identity: 'imei' })
    suite.objects.push(verifier, nonces, ...server.errors)
    expect(inspect(verifier, { depth: 10, showHidden: true })).not.toContain(GROUP_KEY.slice(0, 10))
  })
})

describe('MemoryNonceStore is bounded in size and time', () => {
  test('full of unexpired nonces it refuses (never forgets one early); expired ones make room', () => {
    const time = new FakeClock()
    const store = new MemoryNonceStore({ maxEntries: 3, clock: time })
    const t0 = time.now()
    expect(store.remember('a', 'n1', t0 + 10_000)).toBe(true)
    expect(store.remember('a', 'n2', t0 + 20_000)).toBe(true)
    expect(store.remember('b', 'n1', t0 + 30_000)).toBe(true) // the same nonce for another key: another pair
    expect(store.remember('a', 'n1', t0 + 40_000)).toBe(false)
    let full: unknown
    try {
      store.remember('a', 'n4', t0 + 40_000)
    } catch (error) {
      full = error
    }
    expect(full).toBeInstanceOf(NonceStoreFullError)
    expect((full as NonceStoreFullError).retryAfterSeconds).toBe(10)
    // Every replay is still refused while full.
    expect([store.remember('a', 'n1', 0), store.remember('a', 'n2', 0), store.remember('b', 'n1', 0)]).toEqual([
      false,
      false,
      false,
    ])
    time.time = t0 + 10_000 // n1 of a expires
    expect(store.remember('a', 'n4', t0 + 40_000)).toBe(true)
    expect(store.size).toBe(3)
    // a's n1 has expired: new again, but the store is full once more.
    expect(() => store.remember('a', 'n1', t0 + 50_000)).toThrow(NonceStoreFullError)
    time.time = t0 + 100_000
    expect(store.remember('c', 'n9', t0 + 110_000)).toBe(true)
    expect(store.size).toBe(1)
  })

  test('stays within maxEntries under a stream of claims over many windows', () => {
    const time = new FakeClock()
    const store = new MemoryNonceStore({ maxEntries: 500, clock: time })
    let refused = 0
    for (let i = 0; i < 20_000; i++) {
      time.time += 100 // 10 claims a second, each kept 60 s: 600 would be needed
      try {
        store.remember(`k${i % 50}`, `nonce-${i}`, time.time + 60_000) // 50 devices, 12 nonces each at most
      } catch (error) {
        if (!(error instanceof NonceStoreFullError)) throw error
        refused++
      }
      expect(store.size).toBeLessThanOrEqual(500)
    }
    expect(refused).toBeGreaterThan(0)
    expect(refused).toBeLessThan(20_000 / 3)
  })

  test('one key id cannot take the store: beyond maxPerKey its claims wait, every other key is still taken', () => {
    const time = new FakeClock()
    const store = new MemoryNonceStore({ maxEntries: 1000, maxPerKey: 4, clock: time })
    for (let i = 0; i < 4; i++) {
      time.time += 1000
      expect(store.remember('stolen', `n${i}`, time.time + 60_000)).toBe(true)
    }
    let full: unknown
    try {
      store.remember('stolen', 'n4', time.time + 60_000)
    } catch (error) {
      full = error
    }
    expect(full).toBeInstanceOf(NonceStoreFullError)
    // The oldest of the four expires 57 s from now (each kept 60 s, the first made 3 s ago).
    expect((full as NonceStoreFullError).retryAfterSeconds).toBe(57)
    expect((full as Error).message).toMatch(/this key id has 4 unexpired nonces/)
    expect(store.remember('other', 'n0', time.time + 60_000)).toBe(true)
    expect(store.remember('stolen', 'n1', time.time + 60_000)).toBe(false) // a replay is still a replay
    time.time += 57_001 // the first expires: one more for that key
    expect(store.remember('stolen', 'n5', time.time + 60_000)).toBe(true)
    expect(() => store.remember('stolen', 'n6', time.time + 60_000)).toThrow(NonceStoreFullError)
    expect(store.size).toBe(5)
  })

  test('checks its options', () => {
    expect(() => new MemoryNonceStore({ maxEntries: 0 })).toThrow(TypeError)
    expect(() => new MemoryNonceStore({ maxEntries: 1.5 })).toThrow(/maxEntries/)
    expect(() => new MemoryNonceStore({ maxPerKey: 0 })).toThrow(/maxPerKey/)
  })
})

describe('through the handler, a full store answers 503 "77777" with Retry-After', () => {
  test('a full store refuses new claims transiently and still refuses replays', async () => {
    const time = new FakeClock()
    const store = new MemoryNonceStore({ maxEntries: 2, clock: time })
    const server = await claimServer(signedClaims({ keyFor: derive, identity: 'imei', nonces: store, clock: time }))
    const at = Math.floor(time.now() / 1000)
    const first = claim(server.url, IMEI, { created: at })
    for (const signed of [first, claim(server.url, IMEI, { created: at })]) {
      expect((await post(server.url, signed.body, signed.headers)).status).toBe(200)
    }
    const third = claim(server.url, IMEI, { created: at })
    const full = await post(server.url, third.body, third.headers)
    expect({ status: full.status, body: full.body }).toEqual({ status: 503, body: { code: '77777' } })
    expect(Number(full.headers['retry-after'])).toBe(301)
    expect(await post(server.url, first.body, first.headers)).toMatchObject(refusal('10005'))
    time.time += 301_000
    const later = claim(server.url, IMEI, { created: Math.floor(time.now() / 1000) })
    expect((await post(server.url, later.body, later.headers)).status).toBe(200)
  })
})

describe('the target URI and the raw body', () => {
  test('origin pins the public origin (behind a proxy): the Host header no longer counts', async () => {
    const server = await claimServer(
      signedClaims({ keyFor: derive, identity: 'imei', clock, origin: 'https://provision.example.com' }),
    )
    const pinned = claim(server.url, IMEI, { url: 'https://provision.example.com/bootstrap' })
    expect((await post(server.url, pinned.body, pinned.headers)).status).toBe(200)
    const direct = claim(server.url, IMEI)
    expect(await post(server.url, direct.body, direct.headers)).toMatchObject(refusal('10004'))
    expect(() => signedClaims({ keyFor: derive, identity: 'imei', origin: 'https://a.example/path' })).toThrow(/origin/)
  })

  test('a target path the URL parser would rewrite (dot segments) is not the one signed: refused', async () => {
    const server = await claimServer(signedClaims({ keyFor: derive, identity: 'imei', clock }))
    const { body, headers } = claim(server.url, IMEI) // signed for …/bootstrap
    const { hostname, port } = new URL(server.url)
    // node:https sends the path as given (undici would normalise it first, as a device does).
    const send = (path: string) =>
      new Promise<{ status: number | undefined; body: unknown }>((resolve, reject) => {
        const options = { hostname, port, path, method: 'POST', ca: tls.ca }
        const sent = httpsRequest(
          { ...options, headers: { 'content-type': 'application/json', ...headers } },
          (got) => {
            const chunks: Buffer[] = []
            got.on('data', (chunk: Buffer) => chunks.push(chunk))
            got.on('end', () => resolve({ status: got.statusCode, body: JSON.parse(Buffer.concat(chunks).toString()) }))
          },
        )
        sent.on('error', reject)
        sent.end(body)
      })
    expect(await send('/x/../bootstrap')).toMatchObject(refusal('10004'))
    expect(await send('/%2e/bootstrap')).toMatchObject(refusal('10004'))
    expect((await send('/bootstrap')).status).toBe(200)
  })

  test('hosts binds a claim to the names given; each must be host[:port]', async () => {
    const server = await claimServer(
      signedClaims({ keyFor: derive, identity: 'imei', clock, hosts: ['provision.example'] }),
    )
    const elsewhere = claim(server.url, IMEI) // signed for 127.0.0.1:<port>, the Host sent
    expect(await post(server.url, elsewhere.body, elsewhere.headers)).toMatchObject(refusal('10004'))
    let listedVerifier: ClaimVerifier | undefined
    const listed = await claimServer((c) => (listedVerifier as ClaimVerifier)(c))
    const { port } = new URL(listed.url)
    // Names as a URL's host says them (lower case): `LOCALHOST:<port>` and `localhost:<port>` are one.
    const hosts = [`LOCALHOST:${port}`, `127.0.0.1:${port}`]
    listedVerifier = signedClaims({ keyFor: derive, identity: 'imei', clock, hosts })
    const here = claim(listed.url, IMEI)
    expect((await post(listed.url, here.body, here.headers)).status).toBe(200)
    for (const bad of ['https://a.example', 'a.example/path', 'user@a.example', '']) {
      expect(() => signedClaims({ keyFor: derive, identity: 'imei', hosts: [bad] }), bad).toThrow(/hosts/)
    }
  })

  test('a body read in front of the handler: verified from rawBody or a string third argument, refused without', async () => {
    let mode: 'rawBody' | 'string' | 'parsed only' = 'rawBody'
    const server = await claimServer(signedClaims({ keyFor: derive, identity: 'imei', clock }), (handler, req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        const raw = Buffer.concat(chunks)
        if (mode === 'string') return handler(req, res, raw.toString())
        if (mode === 'rawBody') Object.assign(req, { rawBody: raw })
        handler(req, res, JSON.parse(raw.toString()))
      })
    })
    const send = () => {
      const { body, headers } = claim(server.url, IMEI)
      return post(server.url, body, headers)
    }
    expect((await send()).status).toBe(200)
    mode = 'string'
    expect((await send()).status).toBe(200)
    mode = 'parsed only'
    expect(await send()).toMatchObject({ status: 500, body: { code: '77777' } })
    expect(String(server.errors[0])).toMatch(/raw|as received/)
    expect(server.resolved).toHaveLength(2)
  })

  test('identity readers that throw, or name no string, make a claim of no identity (10004)', async () => {
    const server = await claimServer(
      signedClaims({
        keyFor: derive,
        identity: (data) => (data as { device: { imei: string } }).device.imei,
        clock,
      }),
    )
    const { body, headers } = claim(server.url, IMEI)
    expect(await post(server.url, body, headers)).toMatchObject(refusal('10004'))
    const numeric = await claimServer(signedClaims({ keyFor: derive, identity: 'imei', clock }))
    const signed = signClaimIndependently({
      key: derive(IMEI),
      keyId: IMEI,
      url: numeric.url,
      body: `{"imei":${IMEI}}`,
      created: nowSeconds(),
    })
    expect(await post(numeric.url, `{"imei":${IMEI}}`, signed.headers)).toMatchObject(refusal('10004'))
    expect(server.errors).toEqual([])
  })
})

describe('an unknown identity costs what a known one does', () => {
  test('verification times of unknown and known identities with bad signatures are alike', async () => {
    const keys = new Map([[IMEI, derive(IMEI)]])
    const verify = signedClaims({ keyFor: (id) => keys.get(id), identity: 'imei', clock })
    const fake = (imei: string) => {
      const body = JSON.stringify({ imei })
      const signed = signClaimIndependently({
        key: randomBytes(32),
        keyId: imei,
        url: 'https://provision.test/bootstrap',
        body,
        created: nowSeconds(),
      })
      const request = {
        method: 'POST',
        url: '/bootstrap',
        headers: { host: 'provision.test', 'content-type': 'application/json', ...signed.headers },
        socket: { encrypted: true },
      } as unknown as IncomingMessage
      return { request, body: Buffer.from(body), data: { imei } }
    }
    const known = fake(IMEI)
    const unknown = fake(UNKNOWN)
    const times: Record<'known' | 'unknown', number[]> = { known: [], unknown: [] }
    for (let i = 0; i < 400; i++) {
      for (const [name, claimed] of [
        ['known', known],
        ['unknown', unknown],
      ] as const) {
        const start = performance.now()
        const verdict = await verify(claimed)
        times[name].push(performance.now() - start)
        expect(verdict).toEqual({ ok: false, code: '10004', status: 401 })
      }
    }
    const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] as number
    const ratio = median(times.unknown) / median(times.known)
    console.log(
      `verify, bad signature: known ${median(times.known).toFixed(3)} ms, unknown ${median(times.unknown).toFixed(3)} ms (median of 400)`,
    )
    expect(ratio).toBeGreaterThan(0.6)
    expect(ratio).toBeLessThan(1.6)
  })
})
