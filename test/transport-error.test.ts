import { afterAll, beforeAll, describe, expect, expectTypeOf, test } from 'vitest'
import {
  AbortError,
  AliyunRegistration,
  type CacheEvent,
  type CredentialStore,
  type CredentialStoreError,
  errorCode,
  FileCredentialStore,
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
  MemoryCredentialStore,
  MqttBootstrapError,
  PointAccess,
  ProvisioningError,
  RegistrationError,
  type RetryEvent,
  TransportError,
  type TransportErrorCode,
  UndiciTransport,
} from '../packages/mqtt-bootstrap/src/index.js'
import { configAnswer, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { freePort } from './helpers/ports.js'
import { type SilentServer, startSilentServer } from './helpers/silent-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

let tls: TlsFixture
let server: TestServer
/** Accepts TCP connections and never says a word: no TLS, no HTTP. */
let silent: SilentServer

beforeAll(async () => {
  tls = await tlsFixture()
  server = await startHttpsServer(tls, (_req, res) => json(res, 200, configAnswer({ host: 'broker.example:1883' })))
  silent = await startSilentServer()
})
afterAll(async () => {
  await Promise.all([server.close(), silent.close()])
})

const post = (transport: HttpTransport, url: string, overrides: Partial<HttpRequest> = {}) =>
  transport
    .post({ url: new URL(url), headers: {}, body: '{}', timeoutMs: 2000, maxResponseBytes: 65536, ...overrides })
    .catch((error: unknown) => error)

describe('UndiciTransport fails with TransportErrors, never with provisioning errors', () => {
  const transports: UndiciTransport[] = []
  const undici = (trusted = true) => {
    const transport = new UndiciTransport(trusted ? { ca: tls.ca } : {})
    transports.push(transport)
    return transport
  }
  afterAll(() => Promise.all(transports.map((transport) => transport.close())))

  const expectSeamError = (error: unknown) => {
    expect(error).toBeInstanceOf(TransportError)
    expect(error).toBeInstanceOf(MqttBootstrapError)
    expect(error).not.toBeInstanceOf(ProvisioningError)
    expect(error).not.toHaveProperty('resultCode')
    expect((error as Error).message).not.toMatch(/provision|registration|77777|99999/)
  }

  test('nothing listening: ERR_TRANSPORT_NETWORK, transient, with the reason', async () => {
    const error = await post(undici(), `https://127.0.0.1:${await freePort()}/provision`)
    expectSeamError(error)
    expect(error).toMatchObject({ code: 'ERR_TRANSPORT_NETWORK', transient: true, reason: 'ECONNREFUSED' })
    expect((error as Error).message).toBe('HTTP request failed (ECONNREFUSED)')
  })

  test('an untrusted certificate: ERR_TRANSPORT_TLS, not transient', async () => {
    const error = await post(undici(false), server.url)
    expectSeamError(error)
    expect(error).toMatchObject({ code: 'ERR_TRANSPORT_TLS', transient: false })
    expect(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN']).toContain((error as TransportError).reason)
  })

  test('a server that never answers: ERR_TRANSPORT_TIMEOUT after timeoutMs, transient', async () => {
    const { port } = silent
    const started = performance.now()
    const error = await post(undici(), `https://127.0.0.1:${port}/provision`, { timeoutMs: 150 })
    expect(performance.now() - started).toBeLessThan(2000)
    expectSeamError(error)
    expect(error).toMatchObject({ code: 'ERR_TRANSPORT_TIMEOUT', transient: true, timeoutMs: 150 })
  })

  test('an answer over maxResponseBytes: ERR_TRANSPORT_TOO_LARGE with the limit and the status', async () => {
    const error = await post(undici(), server.url, { maxResponseBytes: 10 })
    expectSeamError(error)
    expect(error).toMatchObject({ code: 'ERR_TRANSPORT_TOO_LARGE', transient: false, limit: 10, status: 200 })
  })
})

/** A transport that fails the way it is told to (the seam a device developer replaces). */
class FailingTransport implements HttpTransport {
  readonly requests: HttpRequest[] = []
  constructor(readonly failure: (request: HttpRequest) => unknown) {}
  async post(request: HttpRequest): Promise<HttpResponse> {
    this.requests.push(request)
    throw this.failure(request)
  }
}

const URL_ = 'https://provision.test/provision'
const REG_URL = 'https://iot-auth.test/auth/register/device'

async function provisionWith(failure: (request: HttpRequest) => unknown) {
  const transport = new FailingTransport(failure)
  const pa = new PointAccess({ timeoutMs: 1234, maxResponseBytes: 4321 }, { transport })
  const code = await pa.request(URL_, { imei: '1' })
  expect(transport.requests).toHaveLength(1)
  return { code, error: pa.lastError }
}

async function registerWith(failure: (request: HttpRequest) => unknown) {
  const transport = new FailingTransport(failure)
  const registration = new AliyunRegistration({ url: REG_URL, timeoutMs: 1234, maxResponseBytes: 4321 }, { transport })
  const request = { productKey: 'pk', deviceName: 'dn', productSecret: 'product-secret-0001', host: 'h' }
  const error = await registration.register(request, { signal: undefined, now: () => 0 }).catch((e: unknown) => e)
  expect(error).toBeInstanceOf(RegistrationError)
  return error as RegistrationError
}

// Each TransportError code, and what each side makes of it: code, result code, transient flag and message as before.
const cases = [
  {
    failure: new TransportError('ERR_TRANSPORT_NETWORK', 'whatever the transport says', { reason: 'ECONNRESET' }),
    provision: ['ERR_PROVISION_NETWORK', '77777', true, 'provisioning request failed (ECONNRESET)'],
    register: ['ERR_REGISTER_NETWORK', true, 'registration request failed (ECONNRESET)'],
  },
  {
    failure: new TransportError('ERR_TRANSPORT_TIMEOUT', 'provisioning answer exceeds 1 bytes', { timeoutMs: 99 }),
    provision: ['ERR_PROVISION_TIMEOUT', '77777', true, 'provisioning request timed out after 99 ms'],
    register: ['ERR_REGISTER_TIMEOUT', true, 'registration request timed out after 99 ms'],
  },
  {
    failure: new TransportError('ERR_TRANSPORT_TIMEOUT', 'no limit given: the request says it'),
    provision: ['ERR_PROVISION_TIMEOUT', '77777', true, 'provisioning request timed out after 1234 ms'],
    register: ['ERR_REGISTER_TIMEOUT', true, 'registration request timed out after 1234 ms'],
  },
  {
    failure: new TransportError('ERR_TRANSPORT_TLS', 'x', { reason: 'CERT_HAS_EXPIRED' }),
    provision: ['ERR_PROVISION_TLS', '77777', false, 'TLS certificate verification failed (CERT_HAS_EXPIRED)'],
    register: ['ERR_REGISTER_TLS', false, 'TLS certificate verification failed (CERT_HAS_EXPIRED)'],
  },
  {
    failure: new TransportError('ERR_TRANSPORT_TOO_LARGE', 'x', { limit: 10, status: 200 }),
    provision: ['ERR_PROVISION_RESPONSE_TOO_LARGE', '99999', false, 'provisioning answer exceeds 10 bytes'],
    register: ['ERR_REGISTER_INVALID_RESPONSE', false, 'registration answer exceeds 10 bytes'],
  },
  {
    failure: new TransportError('ERR_TRANSPORT_TOO_LARGE', 'x'),
    provision: ['ERR_PROVISION_RESPONSE_TOO_LARGE', '99999', false, 'provisioning answer exceeds 4321 bytes'],
    register: ['ERR_REGISTER_INVALID_RESPONSE', false, 'registration answer exceeds 4321 bytes'],
  },
  // The transport's own transient flag is kept: a network failure it knows to be permanent is not retried.
  {
    failure: new TransportError('ERR_TRANSPORT_NETWORK', 'x', { reason: 'EHOSTUNREACH', transient: false }),
    provision: ['ERR_PROVISION_NETWORK', '77777', false, 'provisioning request failed (EHOSTUNREACH)'],
    register: ['ERR_REGISTER_NETWORK', false, 'registration request failed (EHOSTUNREACH)'],
  },
] as const

describe('provisioning and registration map a TransportError by its code', () => {
  test.each(cases)('$failure.code: $provision.0 / $register.0', async ({ failure, provision, register }) => {
    const { code, error } = await provisionWith(() => failure)
    const [provisionCode, resultCode, transient, message] = provision
    expect(code).toBe(resultCode)
    expect(error).toBeInstanceOf(ProvisioningError)
    expect(error).toMatchObject({ code: provisionCode, resultCode, transient, cause: failure })
    expect(error?.message).toBe(`${message}, at ${URL_}`)

    const registered = await registerWith(() => failure)
    const [registerCode, registerTransient, registerMessage] = register
    expect(registered).toMatchObject({ code: registerCode, transient: registerTransient, cause: failure })
    expect(registered.message).toBe(`${registerMessage}, at ${REG_URL}`)
  })

  test('a TransportError without a reason, or a TLS one said to be transient: messages name a reason, TLS is final', async () => {
    const bare = new TransportError('ERR_TRANSPORT_NETWORK', 'x')
    expect(bare.reason).toBe('unknown error')
    const coded = new TransportError('ERR_TRANSPORT_NETWORK', 'x', {
      cause: Object.assign(new Error(), { code: 'EHOSTUNREACH' }),
    })
    expect(coded.reason).toBe('EHOSTUNREACH')
    const { error } = await provisionWith(() => new TransportError('ERR_TRANSPORT_TLS', 'x', { transient: true }))
    expect(error).toMatchObject({ code: 'ERR_PROVISION_TLS', transient: false })
    expect(error?.message).toBe(`TLS certificate verification failed (unknown error), at ${URL_}`)
    const registered = await registerWith(() => new TransportError('ERR_TRANSPORT_TLS', 'x', { transient: true }))
    expect(registered).toMatchObject({ code: 'ERR_REGISTER_TLS', transient: false })
  })

  test('the defaults of the transient flag: network and timeout yes, TLS and too large no', () => {
    expect(new TransportError('ERR_TRANSPORT_NETWORK', 'x').transient).toBe(true)
    expect(new TransportError('ERR_TRANSPORT_TIMEOUT', 'x').transient).toBe(true)
    expect(new TransportError('ERR_TRANSPORT_TLS', 'x').transient).toBe(false)
    expect(new TransportError('ERR_TRANSPORT_TOO_LARGE', 'x').transient).toBe(false)
  })
})

describe("a custom transport's plain error is a transient network failure", () => {
  // Even one whose code or message looks like something else: nothing is read from a message, and the seam's contract
  // says a transport reports a certificate failure as ERR_TRANSPORT_TLS.
  const plain = [
    ['an Error', () => new Error('socket hang up'), 'Error'],
    [
      'an Error with a certificate code',
      () => Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' }),
      'CERT_HAS_EXPIRED',
    ],
    ['a timeout-worded Error', () => new Error('provisioning request timed out after 5 ms'), 'Error'],
    [
      'a ProvisioningError (the seam before issue 13)',
      () => new ProvisioningError('ERR_PROVISION_TLS', 'x', { resultCode: '77777', transient: false }),
      'ERR_PROVISION_TLS',
    ],
    ['a string', () => 'nope', 'unknown error'],
  ] as const

  test.each(plain)('%s', async (_name, make, reason) => {
    const thrown: unknown[] = []
    const failure = () => {
      thrown.push(make())
      return thrown.at(-1)
    }
    const { code, error } = await provisionWith(failure)
    expect(code).toBe('77777')
    expect(error).toMatchObject({ code: 'ERR_PROVISION_NETWORK', resultCode: '77777', transient: true })
    expect(error?.message).toBe(`provisioning request failed (${reason}), at ${URL_}`)
    expect(error?.cause).toBe(thrown[0]) // what the transport threw, as ever

    const registered = await registerWith(failure)
    expect(registered).toMatchObject({ code: 'ERR_REGISTER_NETWORK', transient: true })
    expect(registered.message).toBe(`registration request failed, at ${REG_URL}`)
    expect(registered.cause).toBe(thrown[1])
  })

  test("an abort is an abort: the library's AbortError, or anything thrown once the signal fired", async () => {
    for (const failure of [() => new AbortError('stop'), () => new DOMException('aborted', 'AbortError')]) {
      const controller = new AbortController()
      const transport = new FailingTransport(() => {
        controller.abort('stop')
        return failure()
      })
      const pa = new PointAccess({}, { transport })
      await expect(pa.request(URL_, { imei: '1' }, { signal: controller.signal })).rejects.toBeInstanceOf(AbortError)
      expect(pa.lastError).toBeNull()
    }
  })
})

describe("the seams' contracts, as types and values", () => {
  test('TransportError: its own codes, on the one error base with transient, attempts and retryAfterMs', () => {
    expectTypeOf<TransportError['code']>().toEqualTypeOf<TransportErrorCode>()
    expectTypeOf<TransportError['transient']>().toEqualTypeOf<boolean>()
    expectTypeOf<MqttBootstrapError['attempts']>().toEqualTypeOf<number | undefined>()
    expectTypeOf<ProvisioningError['retryAfterMs']>().toEqualTypeOf<number | undefined>()
    const wrapped = new ProvisioningError('ERR_PROVISION_NETWORK', 'x', {
      resultCode: '77777',
      transient: true,
      cause: new TransportError('ERR_TRANSPORT_NETWORK', 'y', { reason: 'ECONNRESET' }),
    })
    // One errorCode(): the error's own code first, then its causes'.
    expect(errorCode(wrapped)).toBe('ERR_PROVISION_NETWORK')
    expect(errorCode(new Error('x', { cause: wrapped.cause }))).toBe('ERR_TRANSPORT_NETWORK')
    expect(errorCode(new Error('x'))).toBeUndefined()
  })

  test('RetryEvent and CacheEvent are discriminated unions, with the fields they always had', () => {
    expectTypeOf<Extract<RetryEvent, { phase: 'provision' }>['code']>().toEqualTypeOf<'77777'>()
    expectTypeOf<Extract<RetryEvent, { phase: 'provision' }>['error']>().toEqualTypeOf<ProvisioningError>()
    expectTypeOf<Extract<RetryEvent, { phase: 'connect' }>['code']>().toEqualTypeOf<string>()
    expectTypeOf<Extract<CacheEvent, { action: 'miss' }>['reason']>().toEqualTypeOf<
      'absent' | 'corrupt' | 'version' | 'key' | 'io' | 'certificate' | 'expired'
    >()
    expectTypeOf<Extract<CacheEvent, { action: 'invalidate' }>['reason']>().toEqualTypeOf<
      'auth-rejected' | 'requested'
    >()
    expectTypeOf<Extract<CacheEvent, { action: 'hit' }>['reason']>().toEqualTypeOf<undefined>()
    // Read without narrowing, as callers always have.
    expectTypeOf<CacheEvent['error']>().toEqualTypeOf<CredentialStoreError | undefined>()
  })

  test('a credential store says whether it persists', () => {
    expectTypeOf<CredentialStore['persistent']>().toEqualTypeOf<boolean | undefined>()
    expect(new MemoryCredentialStore().persistent).toBe(false)
    expect(new FileCredentialStore('/nonexistent/credentials.json').persistent).toBe(true)
  })
})
