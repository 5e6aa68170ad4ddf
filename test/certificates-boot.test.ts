/**
 * The `certificate` option end to end on the device side (issue 17): the first boot makes a P-256 key, sends its CSR
 * with the caller's data, accepts only a chain for that key that is valid now, and connects by mutual TLS to a real
 * aedes broker that requires a client certificate; the next boot connects from the cache. Certificates are issued by
 * the openssl command line (test/helpers/openssl-ca.ts), not by the project's own issuer, so that both the CSR and
 * the checks are judged by another implementation.
 */
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  type BootstrapOptions,
  connectProvisioned,
  credentialKey,
  FileCredentialStore,
  InvalidOptionError,
  MemoryCredentialStore,
  ProvisioningError,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { json, type RecordedRequest, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { type MtlsBroker, startMtlsBroker } from './helpers/mtls-broker.js'
import { foreignCsr, type OpensslCa, opensslCa } from './helpers/openssl-ca.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

const PK = 'a1CertPK'
const NAME = 'cert-device-001'
const DATA = { imei: '860000000000017' }

let tls: TlsFixture
let ca: OpensslCa
let otherCa: OpensslCa
let broker: MtlsBroker
let server: TestServer
let dir: string
const clients: MqttClient[] = []
/** What the server issues, by request: the chain it answered (or the answer it was told to give). */
let answer: (request: RecordedRequest) => unknown

const csrOf = (request: RecordedRequest) => (JSON.parse(request.body) as { csr: string }).csr
const issued = (request: RecordedRequest, by: OpensslCa = ca, days = 1) => ({
  code: '00000',
  result: {
    device: { productKey: PK, deviceName: NAME, certificate: `${by.issue(csrOf(request), NAME, days)}${by.cert}` },
    connect: { host: broker.host, qos: 1, cleanSession: 1 },
  },
})

beforeAll(async () => {
  tls = await tlsFixture()
  ca = opensslCa('device CA')
  otherCa = opensslCa('another CA')
  broker = await startMtlsBroker(tls, ca.cert)
  server = await startHttpsServer(tls, (request, response) => json(response, 200, answer(request)))
})

afterAll(async () => {
  await server?.close()
  await broker?.close()
  ca?.close()
  otherCa?.close()
})

afterEach(async () => {
  for (const client of clients.splice(0)) await client.endAsync(true)
  server.requests.length = 0
  broker.clients.length = 0
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

/**
 * A clock at the real time (the certificates are issued now), whose sleeps pass at once; it never moves by itself, so
 * no renewal comes (the renewal waits real time: test/certificates-renewal-aedes.slow.test.ts renews).
 */
function clockNow(offsetMs = 0): FakeClock {
  const clock = new FakeClock()
  clock.time = Date.now() + offsetMs
  return clock
}

function options(extra: Partial<BootstrapOptions> = {}): BootstrapOptions {
  return {
    url: server.url,
    data: DATA,
    tls: { ca: tls.ca },
    mqtt: { ca: tls.ca },
    certificate: true,
    retry: { retries: 2, minTimeout: 1, maxTimeout: 1 },
    ...extra,
  }
}

/** The private key's base64 lines, as secrets the suite looks for in everything the library showed. */
function keyIsSecret(privateKey: string): string[] {
  const lines = privateKey.split('\n').filter((line) => line !== '' && !line.startsWith('-----'))
  for (const line of lines) suite.secret(line)
  return lines
}

async function storeIn(name: string, encryptionKey?: Buffer): Promise<FileCredentialStore> {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-cert-boot-'))
  return new FileCredentialStore(join(dir, name), encryptionKey === undefined ? {} : { encryptionKey })
}

describe('first boot and cached boot', () => {
  test('the device sends its data and a CSR, and connects by the certificate issued for it', async () => {
    answer = (request) => issued(request)
    const cache = await storeIn('credentials.json')
    const { boot: bootstrap, events } = boot(options({ cache }), { clock: clockNow() })
    const client = await bootstrap.connect()
    clients.push(client)

    expect(server.requests).toHaveLength(1)
    const body = JSON.parse(server.requests[0]!.body) as Record<string, string>
    expect(Object.keys(body)).toEqual(['imei', 'csr'])
    expect(body.imei).toBe(DATA.imei)
    expect(server.requests[0]!.body).not.toMatch(/PRIVATE KEY/)
    // openssl verifies the CSR's self-signature, and it is for a P-256 key.
    const text = execFileSync('openssl', ['req', '-verify', '-noout', '-text'], { input: body.csr }).toString()
    expect(text).toMatch(/prime256v1|P-256/)

    // The broker saw the issued certificate, and the x509 CONNECT: no password.
    const leaf = new X509Certificate(client.options.cert as string)
    expect(broker.clients).toHaveLength(1)
    expect(broker.clients[0]).toMatchObject({
      fingerprint256: leaf.fingerprint256,
      cn: NAME,
      clientId: `${PK}.${NAME}`,
      username: NAME,
      password: undefined,
    })
    expect(client.options.password).toBeUndefined()

    // The key is stored with its certificate, and is the key the CSR was for.
    const stored = await cache.get(credentialKey(server.url, DATA))
    expect(stored?.config.device.certificate).toBe(client.options.cert)
    const privateKey = stored?.privateKey as string
    keyIsSecret(privateKey)
    const fromKey = execFileSync('openssl', ['pkey', '-pubout'], { input: privateKey }).toString()
    const fromCsr = execFileSync('openssl', ['req', '-pubkey', '-noout'], { input: body.csr }).toString()
    expect(fromKey).toBe(fromCsr)
    expect(events.filter(([name]) => name === 'provisioned').map(([, e]) => e)).toMatchObject([{ source: 'server' }])
  })

  test('a second boot connects from the cache, with the same certificate and no request', async () => {
    answer = (request) => issued(request)
    const cache = await storeIn('credentials.json')
    const first = await connectProvisioned({ ...options({ cache }), container: undefined })
    clients.push(first)
    const fingerprint = new X509Certificate(first.options.cert as string).fingerprint256
    await first.endAsync(true)
    server.requests.length = 0
    broker.clients.length = 0

    const { boot: again, events } = boot(options({ cache: new FileCredentialStore(cache.path) }), {
      clock: clockNow(),
    })
    const second = await again.connect()
    clients.push(second)
    expect(server.requests).toHaveLength(0)
    expect(broker.clients.map((c) => c.fingerprint256)).toEqual([fingerprint])
    expect(events.filter(([name]) => name === 'cache').map(([, e]) => e)).toMatchObject([{ action: 'hit' }])
  })

  test('with an encryptionKey the stored private key is sealed; without one the file is 0600', async () => {
    answer = (request) => issued(request)
    const sealed = await storeIn('sealed.json', Buffer.alloc(32, 7))
    clients.push(await boot(options({ cache: sealed }), { clock: clockNow() }).boot.connect())
    const privateKey = (await sealed.get(credentialKey(server.url, DATA)))?.privateKey
    const lines = keyIsSecret(privateKey as string)
    const text = await readFile(sealed.path, 'utf8')
    expect(text).not.toMatch(/PRIVATE KEY/)
    for (const line of lines) expect(text).not.toContain(line)

    const open = new FileCredentialStore(join(dir, 'open.json'))
    clients.push(await boot(options({ cache: open }), { clock: clockNow() }).boot.connect())
    expect((await stat(open.path)).mode & 0o777).toBe(0o600)
    expect(await readFile(open.path, 'utf8')).toMatch(/PRIVATE KEY/) // what the README says: the file mode protects it
  })

  test('a product secret that came with a certificate is not kept in the cache', async () => {
    answer = (request) => {
      const good = issued(request) as { result: { device: Record<string, string> } }
      good.result.device.productSecret = 'product-secret-with-cert-0001'
      return good
    }
    suite.secret('product-secret-with-cert-0001')
    const cache = await storeIn('credentials.json')
    clients.push(await boot(options({ cache }), { clock: clockNow() }).boot.connect())
    expect((await cache.get(credentialKey(server.url, DATA)))?.config.device.productSecret).toBeNull()
    expect(await readFile(cache.path, 'utf8')).not.toContain('product-secret-with-cert-0001')
  })

  test('a cached certificate that has expired is a miss: the device claims a new one', async () => {
    answer = (request) => issued(request)
    const cache = new MemoryCredentialStore()
    clients.push(await boot(options({ cache }), { clock: clockNow() }).boot.connect())
    server.requests.length = 0
    // Two days on, the one-day certificate has expired; the server issues one valid then (the CA's own is 2 days).
    answer = (request) => issued(request, ca, 3)
    const { boot: later, events } = boot(options({ cache }), { clock: clockNow(36 * 3600_000) })
    clients.push(await later.connect())
    expect(server.requests).toHaveLength(1)
    expect(events.filter(([name]) => name === 'cache').map(([, e]) => e)).toMatchObject([
      { action: 'miss', reason: 'certificate' },
      { action: 'write' },
    ])
  })
})

describe('answers the device cannot use are "99999", never retried', () => {
  const refused = async (respond: (request: RecordedRequest) => unknown, clock = clockNow()) => {
    answer = respond
    const error = await boot(options(), { clock })
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ProvisioningError)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_INVALID_RESPONSE', resultCode: '99999' })
    expect(server.requests).toHaveLength(1)
    return (error as Error).message
  }

  test('no certificate in the answer', async () => {
    const message = await refused(() => ({
      code: '00000',
      result: {
        device: { productKey: PK, deviceName: NAME, deviceSecret: 'a-secret-instead-0001' },
        connect: { host: broker.host },
      },
    }))
    suite.secret('a-secret-instead-0001')
    expect(message).toMatch(/no certificate/)
  })

  test("a certificate for another key (the server's own CSR)", async () => {
    const otherCsr = foreignCsr()
    const message = await refused((request) => {
      const good = issued(request) as { result: { device: { certificate: string } } }
      good.result.device.certificate = `${ca.issue(otherCsr, NAME)}${ca.cert}`
      return good
    })
    expect(message).toMatch(/cannot use/)
  })

  test('a certificate not valid yet by the device clock', async () => {
    const message = await refused((request) => issued(request), clockNow(-3 * 86_400_000))
    expect(message).toMatch(/not valid yet/)
  })

  test('a certificate and no secret for a device that sent no CSR', async () => {
    const someCsr = foreignCsr()
    const certificate = `${ca.issue(someCsr, NAME)}${ca.cert}`
    answer = () => ({
      code: '00000',
      result: { device: { productKey: PK, deviceName: NAME, certificate }, connect: { host: broker.host } },
    })
    const error = await boot(options({ certificate: undefined, data: DATA }), { clock: clockNow() })
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'ERR_PROVISION_INVALID_RESPONSE', resultCode: '99999' })
    expect((error as Error).message).toMatch(/sent no CSR/)
  })

  test('text that is not a PEM chain', async () => {
    const message = await refused(() => ({
      code: '00000',
      result: { device: { productKey: PK, deviceName: NAME, certificate: 'not a certificate' }, connect: {} },
    }))
    expect(message).toMatch(/certificate/)
  })
})

describe('mutual TLS against the broker', () => {
  test('a certificate of another CA is refused by a broker on Node TLS, which resets the connection', async () => {
    // Node's TLS server sends no alert (mosquitto does: test/certificates-mosquitto.test.ts), so the device sees a
    // connection closed before CONNACK, a transient failure, as for any broker that drops it.
    answer = (request) => issued(request, otherCa)
    const error = await boot(options({ retry: false }), { clock: clockNow() })
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toMatchObject({ name: 'BrokerError', code: 'ERR_BROKER_CONNECT' })
    expect(broker.clients).toHaveLength(0)
    expect(broker.refused.length).toBeGreaterThan(0)
  })

  test("auth 'x509' without `certificate` connects with the caller's own key and certificate", async () => {
    dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-cert-own-'))
    const keyPath = join(dir, 'own.key')
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath])
    const key = await readFile(keyPath)
    const csr = execFileSync('openssl', ['req', '-new', '-key', keyPath, '-subj', '/CN=own'])
    const cert = ca.issue(csr.toString(), 'own-device')
    keyIsSecret(key.toString())
    answer = () => ({
      code: '00000',
      result: {
        device: { productKey: PK, deviceName: 'own-device', deviceSecret: 'unused-secret-0001' },
        connect: { host: broker.host },
      },
    })
    suite.secret('unused-secret-0001')
    const client = await boot(
      options({ certificate: undefined, auth: 'x509', mqtt: { ca: tls.ca, key: key.toString(), cert } }),
      { clock: clockNow() },
    ).boot.connect()
    clients.push(client)
    expect(broker.clients.at(-1)).toMatchObject({ cn: 'own-device', clientId: `${PK}.own-device`, password: undefined })
  })
})

describe('options are checked at the door', () => {
  const refusedOption = (extra: Partial<BootstrapOptions>, option: string) => {
    const error = (() => {
      try {
        boot(options(extra))
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option })
  }

  test('data that already has a csr, or is not an object', () => {
    refusedOption({ data: { imei: '1', csr: 'mine' } }, 'data')
    refusedOption({ data: '860000000000017' }, 'data')
    refusedOption({ data: ['860000000000017'] }, 'data')
  })

  test('a key type the library does not make, or an unknown field', () => {
    refusedOption({ certificate: { keyType: 'rsa' as 'p256' } }, 'certificate.keyType')
    refusedOption({ certificate: { keyType: 'p256', size: 1 } as never }, 'certificate.size')
    refusedOption({ certificate: 'yes' as never }, 'certificate')
  })

  test('a key or certificate of its own besides `certificate`', () => {
    refusedOption({ mqtt: { key: 'k' } }, 'mqtt.key')
    refusedOption({ mqtt: { cert: 'c' } }, 'mqtt.cert')
    refusedOption({ mqtt: { wsOptions: { key: 'k' } } }, 'mqtt.wsOptions.key')
  })

  test("auth 'x509' without a client certificate", () => {
    refusedOption({ certificate: undefined, auth: 'x509' }, 'auth')
    refusedOption({ certificate: undefined, auth: 'x509', mqtt: { key: 'k' } }, 'auth')
  })
})

describe('over wss://', () => {
  test("each client gets a wsOptions of its own with its key and certificate; the caller's object is left alone", async () => {
    answer = (request) => issued(request)
    const shared = { headers: { 'x-fleet': 'one' } }
    const optionsOf = async () => {
      const { boot: bootstrap } = boot(options({ mqtt: { ca: tls.ca, wsOptions: shared } }), { clock: clockNow() })
      return bootstrap.connectOptions()
    }
    const [a, b] = [await optionsOf(), await optionsOf()]
    // mqtt.js copies key and cert into wsOptions only where they are absent, into the object it is given.
    expect(shared).toEqual({ headers: { 'x-fleet': 'one' } })
    const wsA = a.wsOptions as { key: Buffer; cert: string; headers: object }
    const wsB = b.wsOptions as { key: Buffer; cert: string }
    expect(wsA).not.toBe(shared)
    expect(wsA.headers).toEqual(shared.headers)
    expect([wsA.key, wsA.cert]).toEqual([a.key, a.cert])
    expect([wsB.key, wsB.cert]).toEqual([b.key, b.cert])
    expect(wsA.cert).not.toBe(wsB.cert)
    expect(JSON.stringify(a)).not.toMatch(/PRIVATE KEY/)
  })
})

describe('the private key shows nowhere', () => {
  test('not in client.options as inspected or as JSON, nor in connectOptions()', async () => {
    answer = (request) => issued(request)
    const cache = new MemoryCredentialStore()
    const { boot: bootstrap } = boot(options({ cache }), { clock: clockNow() })
    const client = await bootstrap.connect()
    clients.push(client)
    const privateKey = (await cache.get(credentialKey(server.url, DATA)))?.privateKey as string
    const lines = keyIsSecret(privateKey)
    const opts = await bootstrap.connectOptions()
    const config = await bootstrap.provision()
    const shownAll = [
      inspect(client.options, { depth: 5 }),
      JSON.stringify(client.options),
      inspect(opts),
      JSON.stringify(opts),
      inspect(config, { depth: 5 }),
      JSON.stringify(config),
    ]
    for (const shown of shownAll) {
      for (const line of lines) expect(shown).not.toContain(line)
    }
    const entry = await cache.get(credentialKey(server.url, DATA))
    expect(inspect(entry)).not.toContain(lines[0])
    // …while the key itself is what mqtt.js hands to TLS.
    expect(Buffer.from(client.options.key as Buffer).toString()).toBe(privateKey)
  })
})
