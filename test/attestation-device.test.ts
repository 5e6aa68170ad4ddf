/**
 * The device's signed claims as a real HTTPS server receives them, verified by this suite's own RFC 9421 code
 * (test/helpers/verify-claim.ts: no http-message-signatures) and by http-message-signatures, another implementation
 * (the device signs with code of its own, src/attestation/sign.ts), from the bootstrap (connect, provision) and
 * PointAccess:
 * exactly the three components, alg, created from the injected clock, a fresh nonce per request and per retry, the
 * keyid, and a Content-Digest of the body as sent. The key shows nowhere; bad options are typed errors.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { inspect } from 'node:util'
import 'reflect-metadata'
import { httpbis } from 'http-message-signatures'
import { container as rootContainer } from 'tsyringe'
import { describe, expect, test } from 'vitest'
import {
  type BootstrapOptions,
  connectProvisioned,
  createBootstrap,
  deriveDeviceKey,
  InvalidOptionError,
  PointAccess,
  TOKENS,
} from '../packages/mqtt-bootstrap/src/index.js'
import { resolveOptions } from '../packages/mqtt-bootstrap/src/options.js'
import { boot, useTestEnv } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { configAnswer, json, type RecordedRequest } from './helpers/https-server.js'
import { PRODUCT, startRegistrationServer } from './helpers/registration-server.js'
import { verifyClaim } from './helpers/verify-claim.js'

const env = useTestEnv()

const IMEI = '860000000000001'
const GROUP_KEY = randomBytes(64).toString('base64')
/** The device's key as the factory burns it in: derived from the group key, base64. */
const KEY = deriveDeviceKey(GROUP_KEY, IMEI)
const KEY_BYTES = Buffer.from(KEY, 'base64')
const attestation = { keyId: IMEI, key: KEY }
for (const secret of [GROUP_KEY, KEY, KEY_BYTES.toString('hex'), KEY_BYTES.toString('base64url')]) suite.secret(secret)

const CLAIM_HEADERS = ['content-digest', 'signature', 'signature-input'] as const

/** What http-message-signatures says of the request's signature under `key` (its time checks off: the clock is fake). */
function libraryVerifies(request: RecordedRequest, key: Uint8Array): Promise<boolean | null> {
  return httpbis.verifyMessage(
    {
      keyLookup: async (params) => ({
        id: String(params.keyid),
        algs: ['hmac-sha256'],
        async verify(base, signature) {
          const expected = createHmac('sha256', key).update(base).digest()
          return expected.length === signature.length && timingSafeEqual(expected, signature)
        },
      }),
      requiredFields: ['@method', '@target-uri', 'content-digest'],
      requiredParams: ['created', 'nonce', 'keyid', 'alg'],
      tolerance: 1e12,
    },
    {
      method: request.method,
      url: `https://${request.headers.host}${request.path}`,
      headers: request.headers as Record<string, string>,
    },
  )
}

/** Verify one recorded request as a claim by IMEI signed at `nowMs` (both verifiers); its nonce. */
async function expectClaim(request: RecordedRequest | undefined, nowMs: number): Promise<string> {
  if (request === undefined) throw new Error('no request')
  expect(await libraryVerifies(request, KEY_BYTES)).toBe(true)
  expect(await libraryVerifies(request, randomBytes(32))).toBe(false)
  const verified = verifyClaim(request, KEY_BYTES)
  expect(verified.label).toBe('sig1')
  expect(verified.components).toEqual(['@method', '@target-uri', 'content-digest'])
  expect(Object.keys(verified.params).sort()).toEqual(['alg', 'created', 'keyid', 'nonce'])
  expect(verified.params).toMatchObject({ alg: 'hmac-sha256', keyid: IMEI, created: Math.floor(nowMs / 1000) })
  const nonce = verified.params.nonce
  if (typeof nonce !== 'string') throw new Error('the nonce is not a string')
  expect(nonce).toMatch(/^[A-Za-z0-9_-]+$/)
  expect(Buffer.from(nonce, 'base64url').length).toBeGreaterThanOrEqual(16)
  expect(request.method).toBe('POST')
  expect(request.body).toBe(JSON.stringify({ imei: IMEI }))
  return nonce
}

/** Record the fake clock's time at each request the server receives (the device signed at that time). */
function answerRecordingTime(clock: FakeClock, times: number[], answers: Array<(res: never) => void> = []): void {
  env.server.handle((_req, res) => {
    times.push(clock.time)
    const next = answers.shift()
    if (next) next(res as never)
    else json(res, 200, configAnswer({ host: env.broker.host }))
  })
}

const options = (overrides: Partial<BootstrapOptions> = {}) =>
  env.options({ data: { imei: IMEI }, attestation, ...overrides })

describe('the bootstrap signs its claims', () => {
  test('connect(): the request carries a claim the independent verifier accepts', async () => {
    const clock = new FakeClock()
    const times: number[] = []
    answerRecordingTime(clock, times)
    const { boot: bootstrap } = boot(options(), { clock })
    env.track(await bootstrap.connect())
    expect(env.server.requests).toHaveLength(1)
    await expectClaim(env.server.requests[0], times[0] as number)
  })

  test('connectProvisioned(), the drop-in: signed too, created from the clock in its container', async () => {
    const clock = new FakeClock()
    clock.time = 1_750_000_000_999
    const times: number[] = []
    answerRecordingTime(clock, times)
    const container = rootContainer.createChildContainer()
    container.register(TOKENS.Clock, { useValue: clock })
    env.track(await connectProvisioned(options({ container, logger: suite.exposure.logger() })))
    expect(times).toEqual([1_750_000_000_999])
    await expectClaim(env.server.requests[0], times[0] as number)
  })

  test('every retry is signed afresh: a 503 then a 200 shows two claims, new nonce, created from the clock', async () => {
    const clock = new FakeClock()
    clock.time = 1_800_000_000_400
    const times: number[] = []
    const busy = (res: never) => json(res, 503, { code: '77777' }, { 'retry-after': '30' })
    answerRecordingTime(clock, times, [busy])
    const { boot: bootstrap } = boot(options(), { clock })
    const config = await bootstrap.provision()
    expect(config.device.deviceName).toBe('device-001')
    expect(env.server.requests).toHaveLength(2)
    const first = await expectClaim(env.server.requests[0], times[0] as number)
    const second = await expectClaim(env.server.requests[1], times[1] as number)
    expect(second).not.toBe(first)
    expect((times[1] as number) - (times[0] as number)).toBeGreaterThanOrEqual(30_000) // Retry-After, on the fake clock
    const signed = env.server.requests.map((r) => r.headers['signature-input'])
    expect(signed[0]).toContain(`created=${Math.floor(1_800_000_000_400 / 1000)};`)
    expect(signed[1]).not.toBe(signed[0])
  })

  test("a caller's Signature, Signature-Input or Content-Digest header never replaces the device's own", async () => {
    const clock = new FakeClock()
    const times: number[] = []
    answerRecordingTime(clock, times)
    const headers = {
      Signature: 'sig1=:AAAA:',
      'SIGNATURE-INPUT': 'sig1=("@method");created=1;keyid="someone-else"',
      'content-digest': 'sha-256=:AAAA:',
      'x-api-token': 'kept',
    }
    const { boot: bootstrap } = boot(options({ headers }), { clock })
    await bootstrap.provision()
    const [request] = env.server.requests
    await expectClaim(request, times[0] as number)
    expect(request?.headers['x-api-token']).toBe('kept')
    for (const name of CLAIM_HEADERS) expect(request?.headers[name]).not.toContain('AAAA')
    expect(request?.headers['signature-input']).not.toContain('someone-else')
  })

  test('without attestation nothing is signed, and caller headers of those names pass as they are', async () => {
    const { boot: bootstrap } = boot(env.options({ headers: { signature: 'sig1=:AAAA:' } }))
    await bootstrap.provision()
    const [request] = env.server.requests
    expect(request?.headers.signature).toBe('sig1=:AAAA:')
    expect(request?.headers['signature-input']).toBeUndefined()
    expect(request?.headers['content-digest']).toBeUndefined()
  })

  test('a cached boot sends nothing at all; a key given as bytes signs the same way', async () => {
    const clock = new FakeClock()
    const times: number[] = []
    answerRecordingTime(clock, times)
    const first = boot(options({ attestation: { keyId: IMEI, key: new Uint8Array(KEY_BYTES) } }), { clock })
    await first.boot.provision()
    await first.boot.provision() // cached: no second request, so nothing to sign
    expect(env.server.requests).toHaveLength(1)
    await expectClaim(env.server.requests[0], times[0] as number)
  })
})

test('dynamic registration, another protocol, is not signed; the provisioning request before it is', async () => {
  const registry = await startRegistrationServer(env.tls, env.broker, ['meter-0001'])
  try {
    const clock = new FakeClock()
    const times: number[] = []
    const device = { productKey: PRODUCT.productKey, deviceName: 'meter-0001', productSecret: PRODUCT.productSecret }
    answerRecordingTime(clock, times, [(res) => json(res, 200, configAnswer({ host: env.broker.host }, device))])
    const { boot: bootstrap } = boot(options({ registration: { url: registry.url, tls: { ca: env.tls.ca } } }), {
      clock,
    })
    expect((await bootstrap.provision()).device.deviceSecret).toBe(registry.issued('meter-0001'))
    await expectClaim(env.server.requests[0], times[0] as number)
    expect(registry.server.requests).toHaveLength(1)
    for (const name of CLAIM_HEADERS) expect(registry.server.requests[0]?.headers[name]).toBeUndefined()
  } finally {
    await registry.close()
  }
})

describe('PointAccess signs its claims', () => {
  const pointAccess = (clock: FakeClock, key: string | Uint8Array = KEY) =>
    new PointAccess({ tls: { ca: env.tls.ca }, timeoutMs: 5000, attestation: { keyId: IMEI, key } }, { clock })

  test('each request a claim of its own: verified, a new nonce each time, created from the clock', async () => {
    const clock = new FakeClock()
    const times: number[] = []
    answerRecordingTime(clock, times)
    const pa = pointAccess(clock) // not inspected for secrets once provisioned: deviceConfig shows its own, by contract
    expect(await pa.request(env.server.url, { imei: IMEI })).toBe('00000')
    clock.time += 61_000
    expect(await pa.request(env.server.url, { imei: IMEI })).toBe('00000')
    const nonces = await Promise.all(env.server.requests.map((request, i) => expectClaim(request, times[i] as number)))
    expect(new Set(nonces).size).toBe(2)
    expect(times[1]).toBe((times[0] as number) + 61_000)
  })

  test('a URL with an empty query or credentials is signed as it is sent (no `?`, no userinfo)', async () => {
    const clock = new FakeClock()
    const times: number[] = []
    answerRecordingTime(clock, times)
    const withUser = env.server.url.replace('https://', 'https://user:pw@')
    for (const url of [`${env.server.url}?`, withUser]) {
      expect(await pointAccess(clock).request(url, { imei: IMEI }), url).toBe('00000')
    }
    for (const [i, request] of env.server.requests.entries()) await expectClaim(request, times[i] as number)
    expect(env.server.requests.map((request) => request.path)).toEqual(['/provision', '/provision'])
  })

  test('a key given as a Buffer signs as its base64 does', async () => {
    const clock = new FakeClock()
    const times: number[] = []
    answerRecordingTime(clock, times)
    expect(await pointAccess(clock, Buffer.from(KEY_BYTES)).request(env.server.url, { imei: IMEI })).toBe('00000')
    await expectClaim(env.server.requests[0], times[0] as number)
  })

  test('a claim refusal (401, "10004") is the server\'s code; its error holds no key', async () => {
    env.server.handle((_req, res) => json(res, 401, { code: '10004' }))
    const pa = pointAccess(new FakeClock())
    expect(await pa.request(env.server.url, { imei: IMEI })).toBe('10004')
    suite.objects.push(pa.lastError, pa)
    expect(`${pa.lastError?.message} ${inspect(pa.lastError)}`).not.toContain(KEY)
  })
})

describe('the key shows nowhere', () => {
  test('not in the resolved options, the bootstrap or PointAccess: inspect and JSON show only the key id', () => {
    const resolved = resolveOptions(options())
    const pa = new PointAccess({ attestation: { keyId: IMEI, key: KEY_BYTES } })
    const bootstrap = createBootstrap(options())
    suite.objects.push(resolved, pa, bootstrap)
    const shown = [resolved, pa, bootstrap, resolved.attestation].flatMap((value) => [
      inspect(value, { depth: Number.POSITIVE_INFINITY, showHidden: true, getters: true }),
      JSON.stringify(value) ?? '',
      String(value),
    ])
    for (const text of shown) {
      expect(text).not.toContain(KEY)
      expect(text).not.toContain(KEY_BYTES.toString('hex'))
      expect(text).not.toContain(KEY_BYTES.toString('latin1'))
    }
    expect(JSON.stringify(resolved.attestation)).toBe(JSON.stringify({ keyId: IMEI }))
    expect(inspect(resolved)).toContain(IMEI) // the key id is no secret: it names the identity claimed
  })
})

describe('bad attestation options: typed errors before any I/O, the key never quoted', () => {
  const good = { keyId: IMEI, key: KEY }
  test.each([
    ['not an object', 'attestation', 'a-key'],
    ['null', 'attestation', null],
    ['an array', 'attestation', [IMEI, KEY]],
    ['without keyId', 'attestation.keyId', { key: KEY }],
    ['with an empty keyId', 'attestation.keyId', { ...good, keyId: '' }],
    ['with a non-string keyId', 'attestation.keyId', { ...good, keyId: 860000000000001 }],
    ['with a keyId beyond printable ASCII', 'attestation.keyId', { ...good, keyId: 'dev\n1' }],
    ['without key', 'attestation.key', { keyId: IMEI }],
    ['with a numeric key', 'attestation.key', { ...good, key: 42 }],
    ['with an array key', 'attestation.key', { ...good, key: [...KEY_BYTES] }],
    ['with a key that is not base64', 'attestation.key', { ...good, key: 'not base64!' }],
    ['with a key and a trailing newline', 'attestation.key', { ...good, key: `${KEY}\n` }],
    ['with a base64url key', 'attestation.key', { ...good, key: KEY_BYTES.toString('base64url') }],
    ['with an empty key string', 'attestation.key', { ...good, key: '' }],
    ['with an empty key buffer', 'attestation.key', { ...good, key: Buffer.alloc(0) }],
    ['with an unknown field', 'attestation.alg', { ...good, alg: 'hmac-sha256' }],
  ])('%s: InvalidOptionError on %s', (_what, option, value) => {
    const errors: unknown[] = []
    for (const make of [
      () => createBootstrap(env.options({ attestation: value as never })),
      () => new PointAccess({ attestation: value as never }),
    ]) {
      try {
        make()
      } catch (error) {
        errors.push(error)
      }
    }
    expect(errors).toHaveLength(2)
    for (const error of errors) {
      expect(error).toBeInstanceOf(InvalidOptionError)
      expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option })
      expect((error as Error).message).not.toContain(KEY.slice(0, 10))
    }
    suite.objects.push(...errors)
    expect(env.server.requests).toHaveLength(0)
  })

  test('`attestation: undefined` is no attestation, on both', async () => {
    expect(() => new PointAccess({ attestation: undefined })).not.toThrow()
    expect(resolveOptions(env.options({ attestation: undefined })).attestation).toBeUndefined()
  })

  test('a non-object PointAccess option still fails as `options`', () => {
    expect(() => new PointAccess(7 as never)).toThrow(expect.objectContaining({ option: 'options' }))
  })
})
