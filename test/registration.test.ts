import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  AliyunRegistration,
  aliyunRegionOf,
  type BootstrapOptions,
  type CredentialStore,
  credentialKey,
  FileCredentialStore,
  MemoryCredentialStore,
  ProvisioningError,
  RegistrationError,
  type RegistrationStrategy,
  signAliyunRegistration,
  TOKENS,
} from '../packages/mqtt-bootstrap/src/index.js'
import { runTs } from './helpers/child.js'
import { abortDuringBackoff, boot, eventTrail, payloads, useTestEnv } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { configAnswer, DEVICE, json } from './helpers/https-server.js'
import { CODES, PRODUCT, type RegistrationServer, startRegistrationServer } from './helpers/registration-server.js'
import 'reflect-metadata'
import { container as rootContainer } from 'tsyringe'
import { freePort } from './helpers/ports.js'

const NAMES = Array.from({ length: 12 }, (_, i) => `meter-${String(i + 1).padStart(4, '0')}`)

const env = useTestEnv()
let registry: RegistrationServer
let dir: string
beforeAll(async () => {
  registry = await startRegistrationServer(env.tls, env.broker, NAMES)
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-registration-'))
})
afterEach(() => {
  registry.registrations.length = 0
  registry.next.length = 0
})
afterAll(async () => {
  await registry.close()
  await rm(dir, { recursive: true, force: true })
})

/** The provisioning server answers the product secret for `deviceName`, no device secret. */
function answerProductSecret(deviceName: string, productSecret: string = PRODUCT.productSecret): void {
  env.server.handle((_req, res) =>
    json(
      res,
      200,
      configAnswer({ host: env.broker.host }, { productKey: PRODUCT.productKey, deviceName, productSecret }),
    ),
  )
}

function options(overrides: Partial<BootstrapOptions> = {}): BootstrapOptions {
  return env.options({ registration: { url: registry.url, tls: { ca: env.tls.ca } }, ...overrides })
}

let files = 0
const newFile = () => join(dir, `credentials-${++files}.json`)

/** The entries of a (plain, unsealed) credential file, read straight from disk. */
function entriesOnDisk(path: string): Array<{ config: { device: Record<string, unknown> } }> {
  return Object.values(JSON.parse(readFileSync(path, 'utf8')).entries)
}

describe('the Alibaba flow against a loopback registration service', () => {
  test('registers as documented, stores the secret before connecting, connects with it; no product secret kept', async () => {
    answerProductSecret('meter-0001')
    const path = newFile()
    const { boot: bootstrap, events } = boot(options({ cache: new FileCredentialStore(path) }))
    let onDiskWhenConnecting: string | undefined
    bootstrap.on('connecting', () => {
      onDiskWhenConnecting = entriesOnDisk(path)[0]?.config.device.deviceSecret as string
    })
    const client = env.track(await bootstrap.connect())

    const issued = registry.issued('meter-0001')
    expect(issued).toMatch(/^DS-/)
    // The request: form-encoded, every documented field, a sign the service could verify (it answered 200).
    expect(registry.registrations).toHaveLength(1)
    const [request] = registry.registrations
    expect(request?.contentType).toBe('application/x-www-form-urlencoded')
    expect(Object.keys(request?.form ?? {}).sort()).toEqual([
      'deviceName',
      'productKey',
      'random',
      'sign',
      'signMethod',
    ])
    expect(request?.form).toMatchObject({
      productKey: PRODUCT.productKey,
      deviceName: 'meter-0001',
      signMethod: 'hmacsha256',
    })
    expect(request?.form.random).toMatch(/^[0-9a-f]{16}$/)
    expect(request?.form.sign).toBe(
      signAliyunRegistration({
        productKey: PRODUCT.productKey,
        deviceName: 'meter-0001',
        productSecret: PRODUCT.productSecret,
        random: request?.form.random as string,
      }),
    )
    // Stored before the connect, and the broker accepted the aliyun signature of the issued secret.
    expect(onDiskWhenConnecting).toBe(issued)
    expect(client.connected).toBe(true)
    expect(env.broker.connects.at(-1)).toMatchObject({ clientId: expect.stringContaining('a1DynRegPK01.meter-0001|') })
    expect(eventTrail(events)).toEqual([
      'cache:miss',
      'provisioning',
      'registering',
      'cache:write',
      'registered',
      'provisioned:server',
      'connecting',
      'connected',
    ])
    expect(payloads(events, 'registered')).toEqual([
      { strategy: 'aliyun', productKey: PRODUCT.productKey, deviceName: 'meter-0001' },
    ])
    // Two entries: under the cache key, and under the device's identity (which outlives a change of url or data).
    const entries = entriesOnDisk(path)
    expect(entries).toHaveLength(2)
    const [entry] = entries
    expect(entries[1]?.config.device).toEqual(entry?.config.device)
    expect(entry?.config.device).toEqual({
      productKey: PRODUCT.productKey,
      deviceName: 'meter-0001',
      deviceSecret: issued,
      productSecret: null,
    })
    expect(readFileSync(path, 'utf8')).not.toContain(PRODUCT.productSecret)
  })

  test('into a store that does not persist (persistent: false), a warning that the issued secret will be lost', async () => {
    const warnings: string[] = []
    const logger = { debug() {}, info() {}, warn: (_: object, m?: string) => warnings.push(m ?? ''), error() {} }
    const volatile = /in-memory credential store: the secret is issued once and lost/
    answerProductSecret('meter-0003')
    env.track(await boot(options({ cache: new MemoryCredentialStore(), logger })).boot.connect())
    expect(warnings.filter((w) => volatile.test(w))).toHaveLength(1)
    answerProductSecret('meter-0004')
    env.track(await boot(options({ cache: new FileCredentialStore(newFile()), logger })).boot.connect())
    expect(warnings.filter((w) => volatile.test(w))).toHaveLength(1) // a file store persists: no second warning
    // Any store that says so, not only the library's own memory store.
    const memory = new MemoryCredentialStore()
    const ownVolatile = {
      persistent: false,
      get: (key: string) => memory.get(key),
      set: (key: string, value: Parameters<MemoryCredentialStore['set']>[1]) => memory.set(key, value),
      delete: (key: string) => memory.delete(key),
    }
    answerProductSecret('meter-0005')
    env.track(await boot(options({ cache: ownVolatile, logger })).boot.connect())
    expect(warnings.filter((w) => volatile.test(w))).toHaveLength(2)
  })

  test('a later boot uses the stored secret: no provisioning, no registration', async () => {
    answerProductSecret('meter-0002')
    const path = newFile()
    env.track(await boot(options({ cache: new FileCredentialStore(path) })).boot.connect())
    registry.devices.get('meter-0002')!.activated = true // it has connected: the service registers it no more
    const requestsBefore = env.server.requests.length
    registry.registrations.length = 0

    const { boot: again, events } = boot(options({ cache: new FileCredentialStore(path) }))
    env.track(await again.connect())
    expect(env.server.requests.length).toBe(requestsBefore)
    expect(registry.registrations).toHaveLength(0)
    expect(eventTrail(events)).toEqual(['cache:hit', 'provisioned:cache', 'connecting', 'connected'])
  })

  test('a process killed right after registering loses nothing: the next boot connects with the stored secret', async () => {
    answerProductSecret('meter-0003')
    const path = newFile()
    const caFile = join(dir, 'ca.pem')
    await writeFile(caFile, env.tls.ca)
    const { code, signal, output } = await runTs('test/fixtures/register-then-crash.ts', [], {
      env: { PROVISION_URL: env.server.url, REGISTRATION_URL: registry.url, CA_FILE: caFile, CREDENTIALS: path },
      timeoutMs: 15_000,
    })
    expect({ code, signal, output }).toMatchObject({ code: null, signal: 'SIGKILL' })
    expect(output).not.toContain('connecting')
    expect(registry.registrations).toHaveLength(1)
    // The crash came after the write: the secret is on disk, and the service would not issue another.
    expect(entriesOnDisk(path)[0]?.config.device.deviceSecret).toBe(registry.issued('meter-0003'))
    registry.devices.get('meter-0003')!.activated = true

    const { boot: after, events } = boot(options({ cache: new FileCredentialStore(path) }))
    env.track(await after.connect())
    expect(registry.registrations).toHaveLength(1)
    expect(eventTrail(events).slice(0, 2)).toEqual(['cache:hit', 'provisioned:cache'])
  })
})

test('cached credentials the broker rejects: provisioned afresh, registered again, connected', async () => {
  answerProductSecret('meter-0008')
  const cache = new MemoryCredentialStore()
  const { url, data } = env.options()
  const stale = { productKey: PRODUCT.productKey, deviceName: 'meter-0008', deviceSecret: 'DS-stale-0008-secret' }
  suite.secret(stale.deviceSecret)
  await cache.set(credentialKey(url, data), {
    savedAt: 1,
    config: { device: { ...stale, productSecret: null }, connect: { host: env.broker.host, qos: 1, cleanSession: 1 } },
  })
  const { boot: bootstrap, events } = boot(options({ cache }))
  env.track(await bootstrap.connect())
  expect(payloads(events, 'auth-rejected')).toEqual([{ returnCode: 4, source: 'cache', reprovision: true }])
  expect(registry.registrations).toHaveLength(1)
  const stored = await cache.get(credentialKey(url, data))
  expect(stored?.config.device.deviceSecret).toBe(registry.issued('meter-0008'))
})

test('a secret registered earlier is used again after the data changes or invalidate(): no second registration', async () => {
  answerProductSecret('meter-0009')
  const path = newFile()
  const first = env.options({ data: { imei: '860000000000009', fw: '1.0' } })
  env.track(await boot({ ...options(), ...first, cache: new FileCredentialStore(path) }).boot.connect())
  registry.devices.get('meter-0009')!.activated = true // the service would refuse another registration now
  const issued = registry.issued('meter-0009')

  const { boot: upgraded, events } = boot({
    ...options(),
    data: { imei: '860000000000009', fw: '1.1' }, // a new cache key: provisioning runs, registration must not
    cache: new FileCredentialStore(path),
  })
  env.track(await upgraded.connect())
  expect(registry.registrations).toHaveLength(1)
  expect(eventTrail(events)).toEqual([
    'cache:miss',
    'provisioning',
    'cache:write',
    'provisioned:server',
    'connecting',
    'connected',
  ])
  expect(env.broker.connects.at(-1)?.clientId).toContain(`${PRODUCT.productKey}.meter-0009|`)

  await upgraded.invalidate()
  const { boot: afterInvalidate } = boot({
    ...options(),
    data: { imei: '860000000000009', fw: '1.1' },
    cache: new FileCredentialStore(path),
  })
  env.track(await afterInvalidate.connect())
  expect(registry.registrations).toHaveLength(1)
  expect(registry.issued('meter-0009')).toBe(issued)
})

describe('failures are classified like provisioning ones', () => {
  test('HTTP 503 with Retry-After and the busy code 429 are retried; then the device registers', async () => {
    answerProductSecret('meter-0004')
    registry.next.push(
      (res) => json(res, 503, '<html>down</html>', { 'content-type': 'text/html', 'retry-after': '7' }),
      (res) => json(res, 200, { code: 429, message: 'too many requests' }),
    )
    const clock = new FakeClock()
    const { boot: bootstrap, events } = boot(options(), { clock })
    env.track(await bootstrap.connect())
    const retries = payloads(events, 'retry')
    expect(retries.map(({ phase, attempt, code }) => ({ phase, attempt, code }))).toEqual([
      { phase: 'register', attempt: 1, code: 'ERR_REGISTER_HTTP_STATUS' },
      { phase: 'register', attempt: 2, code: 'ERR_REGISTER_BUSY' },
    ])
    expect(retries[0]?.delayMs).toBe(7000) // Retry-After wins over the backoff
    expect(clock.sleeps).toEqual([7000, retries[1]?.delayMs])
    expect(registry.registrations).toHaveLength(3)
    expect(registry.issued('meter-0004')).toBeDefined()
  })

  test.each([
    ['an unknown device', 'meter-unknown', PRODUCT.productSecret, CODES.deviceNotFound, 'device not found'],
    ['a wrong product secret', 'meter-0005', 'PS-not-the-product-secret', 401, 'request auth error'],
  ])(
    '%s is refused: a typed error with the service code and message, not retried, nothing cached or connected',
    async (_, deviceName, productSecret, serverCode, serverMessage) => {
      answerProductSecret(deviceName, productSecret)
      const cache = new MemoryCredentialStore()
      const { boot: bootstrap, events } = boot(options({ cache }))
      const error = await bootstrap.connect().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(RegistrationError)
      expect(error).toMatchObject({
        code: 'ERR_REGISTER_REFUSED',
        serverCode,
        serverMessage,
        transient: false,
        attempts: 1,
      })
      expect(registry.registrations).toHaveLength(1)
      expect(payloads(events, 'connecting')).toEqual([])
      const { url, data } = env.options()
      expect(await cache.get(credentialKey(url, data))).toBeUndefined()
      expect(payloads(events, 'error')).toEqual([{ error, fatal: true }])
    },
  )

  test('an activated device cannot register again: refused with the service code', async () => {
    answerProductSecret('meter-0006')
    registry.devices.get('meter-0006')!.activated = true
    const error = await boot(options())
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_REGISTER_REFUSED', serverCode: CODES.alreadyActivated })
  })

  test.each([
    ['200 that is not JSON', (res: import('node:http').ServerResponse) => json(res, 200, 'not json')],
    [
      'code 200 without a deviceSecret',
      (res: import('node:http').ServerResponse) =>
        json(res, 200, { code: 200, data: { productKey: PRODUCT.productKey } }),
    ],
    [
      'a secret for another device',
      (res: import('node:http').ServerResponse) =>
        json(res, 200, {
          code: 200,
          data: { productKey: PRODUCT.productKey, deviceName: 'someone-else', deviceSecret: 'DS-foreign-secret-0001' },
        }),
    ],
  ])('%s is an invalid answer, not retried', async (_, answer) => {
    answerProductSecret('meter-0007')
    registry.next.push(answer)
    const error = await boot(options())
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_REGISTER_INVALID_RESPONSE', transient: false, attempts: 1 })
    expect(registry.registrations).toHaveLength(1)
  })

  test('a service message echoing the product secret is redacted in the error', async () => {
    answerProductSecret('meter-0007')
    registry.next.push((res) => json(res, 200, { code: 6666, message: `bad secret ${PRODUCT.productSecret} given` }))
    const error = (await boot(options())
      .boot.connect()
      .catch((e: unknown) => e)) as RegistrationError
    expect(error.serverMessage).toBe('bad secret [redacted] given')
    expect(error.message).not.toContain(PRODUCT.productSecret)

    registry.next.push((res) => json(res, 200, { code: 6666, message: `got ${PRODUCT.productSecret.slice(0, 12)}…` }))
    const cut = (await boot(options())
      .boot.connect()
      .catch((e: unknown) => e)) as RegistrationError
    expect(cut.serverMessage).toBe('got [redacted]…') // the echo, not the whole message
  })

  test('an answer with both secrets: the product secret is not kept in the cache', async () => {
    const path = newFile()
    env.answerValid({}, { ...DEVICE, productSecret: PRODUCT.productSecret })
    env.track(await boot(options({ cache: new FileCredentialStore(path) })).boot.connect())
    expect(entriesOnDisk(path)[0]?.config.device).toEqual({ ...DEVICE, productSecret: null })
    expect(readFileSync(path, 'utf8')).not.toContain(PRODUCT.productSecret)
  })

  test('an unreachable service is retried (ERR_REGISTER_NETWORK); an HTTP-date Retry-After is read on the clock', async () => {
    answerProductSecret('meter-0010')
    const clock = new FakeClock()
    const closed = await freePort()
    const { boot: unreachable, events } = boot(
      options({ registration: { url: `https://127.0.0.1:${closed}/auth/register/device` }, retry: { retries: 2 } }),
      { clock },
    )
    const error = await unreachable.connect().catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_REGISTER_NETWORK', transient: true, attempts: 3 })
    expect(payloads(events, 'retry').map((r) => r.code)).toEqual(['ERR_REGISTER_NETWORK', 'ERR_REGISTER_NETWORK'])

    const later = new Date(Math.ceil(clock.time / 1000) * 1000 + 5000).toUTCString()
    registry.next.push((res) =>
      json(res, 503, { code: 503, message: 'service not available' }, { 'retry-after': later }),
    )
    const { boot: dated, events: datedEvents } = boot(options(), { clock })
    env.track(await dated.connect())
    const [retry] = payloads(datedEvents, 'retry')
    // Measured from the injected clock: after the one sleep, the clock stands exactly at the Retry-After date.
    expect(clock.time).toBe(Date.parse(later))
    expect(retry?.delayMs).toBeGreaterThan(4000)
    expect(retry?.delayMs).toBeLessThanOrEqual(6000)
  })

  test('an abort during a registration backoff stops it: no further request', async () => {
    answerProductSecret('meter-0011')
    registry.next.push((res) => json(res, 200, { code: 429, message: 'too many requests' }))
    const { error } = await abortDuringBackoff(options())
    expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    expect(registry.registrations).toHaveLength(1)
  })

  test('an untrusted certificate fails closed (ERR_REGISTER_TLS), never retried', async () => {
    answerProductSecret('meter-0007')
    const error = await boot(options({ registration: { url: registry.url } })) // system roots only
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_REGISTER_TLS', transient: false, attempts: 1 })
    expect(registry.registrations).toHaveLength(0) // the handshake failed: no request reached the service
  })

  test('a store that cannot keep the secret stops the boot before any connect', async () => {
    answerProductSecret('meter-0007')
    const failing: CredentialStore = {
      get: async () => undefined,
      set: async () => {
        throw new Error('disk full')
      },
      delete: async () => {},
    }
    const { boot: bootstrap, events } = boot(options({ cache: failing }))
    const error = await bootstrap.connect().catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_STORE_IO' })
    expect(payloads(events, 'connecting')).toEqual([])
    expect(env.broker.connects).toHaveLength(0)
  })
})

describe('the endpoint and other strategies', () => {
  test('the region comes from connect.host, or the option', () => {
    expect(aliyunRegionOf('a1X2bEnP82z.iot-as-mqtt.cn-shanghai.aliyuncs.com:1883')).toBe('cn-shanghai')
    expect(aliyunRegionOf('mqtts://pk.iot-as-mqtt.ap-southeast-1.aliyuncs.com')).toBe('ap-southeast-1')
    expect(aliyunRegionOf('iot-06z00abc.mqtt.iothub.aliyuncs.com')).toBeUndefined()
    expect(aliyunRegionOf('127.0.0.1:1883')).toBeUndefined()
    const fromHost = new AliyunRegistration().endpoint('pk.iot-as-mqtt.us-west-1.aliyuncs.com:1883')
    expect(fromHost.href).toBe('https://iot-auth.us-west-1.aliyuncs.com/auth/register/device')
    expect(new AliyunRegistration({ region: 'eu-central-1' }).endpoint('127.0.0.1').hostname).toBe(
      'iot-auth.eu-central-1.aliyuncs.com',
    )
  })

  test('no region anywhere: ERR_REGISTER_NO_REGION before any request', async () => {
    answerProductSecret('meter-0007')
    const error = await boot(env.options({ registration: {} }))
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_REGISTER_NO_REGION', transient: false })
    expect(registry.registrations).toHaveLength(0)
  })

  test('registration: false refuses such answers (ERR_PROVISION_NO_DEVICE_SECRET)', async () => {
    answerProductSecret('meter-0007')
    const error = await boot(env.options({ registration: false }))
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProvisioningError)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_NO_DEVICE_SECRET' })
  })

  test("a custom strategy through the DI container replaces Alibaba's flow", async () => {
    answerProductSecret('other-cloud-device')
    const secret = 'DS-from-another-cloud-0001'
    env.broker.secrets.set(`${PRODUCT.productKey}.other-cloud-device`, secret)
    const seen: unknown[] = []
    const otherCloud: RegistrationStrategy = {
      name: 'other-cloud',
      register: async (request) => {
        seen.push({ ...request, productSecret: request.productSecret === PRODUCT.productSecret })
        return { deviceSecret: secret }
      },
    }
    const app = rootContainer.createChildContainer()
    app.register(TOKENS.Registration, { useValue: otherCloud })
    const { boot: bootstrap, events } = boot(env.options({ container: app }))
    env.track(await bootstrap.connect())
    expect(seen).toEqual([
      { productKey: PRODUCT.productKey, deviceName: 'other-cloud-device', productSecret: true, host: env.broker.host },
    ])
    expect(payloads(events, 'registered')).toEqual([
      { strategy: 'other-cloud', productKey: PRODUCT.productKey, deviceName: 'other-cloud-device' },
    ])
    expect(registry.registrations).toHaveLength(0)
  })

  test('Alibaba options given as the option win over a strategy registered in the container', async () => {
    answerProductSecret('meter-0012')
    const app = rootContainer.createChildContainer()
    const unused: RegistrationStrategy = {
      name: 'unused',
      register: () => Promise.reject(new Error('the container strategy must not run')),
    }
    app.register(TOKENS.Registration, { useValue: unused })
    const { boot: bootstrap, events } = boot(options({ container: app }))
    env.track(await bootstrap.connect())
    expect(registry.registrations).toHaveLength(1)
    expect(payloads(events, 'registered')).toMatchObject([{ strategy: 'aliyun' }])
  })

  test('a strategy given as the option is used', async () => {
    answerProductSecret('option-strategy-device')
    const secret = 'DS-option-strategy-0001'
    env.broker.secrets.set(`${PRODUCT.productKey}.option-strategy-device`, secret)
    const strategy: RegistrationStrategy = { name: 'by-option', register: async () => ({ deviceSecret: secret }) }
    const { boot: bootstrap, events } = boot(env.options({ registration: strategy }))
    env.track(await bootstrap.connect())
    expect(payloads(events, 'registered')).toMatchObject([{ strategy: 'by-option' }])
  })

  test('AliyunRegistration checks its own options: https only, a real region, a known sign method', () => {
    expect(() => new AliyunRegistration({ url: 'http://127.0.0.1/auth/register/device' })).toThrow(/registration\.url/)
    expect(() => new AliyunRegistration({ region: 'evil.example/#' })).toThrow(/registration\.region/)
    expect(() => new AliyunRegistration({ signMethod: 'sha1' as never })).toThrow(/registration\.signMethod/)
    expect(() => new AliyunRegistration({ url: 'http://127.0.0.1/x', allowInsecureHttp: true })).not.toThrow()
  })

  test('invalid registration options are refused before any I/O', () => {
    expect(() => boot(env.options({ registration: { region: 'Shanghai' } }))).toThrow(/registration\.region/)
    expect(() => boot(env.options({ registration: { url: 'http://127.0.0.1/x' } }))).toThrow(/registration\.url/)
    expect(() => boot(env.options({ registration: { signMethod: 'sha512' as never } }))).toThrow(
      /registration\.signMethod/,
    )
    expect(() => boot(env.options({ registration: { endpoint: 'x' } as never }))).toThrow(/registration\.endpoint/)
  })
})
