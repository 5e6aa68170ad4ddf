/**
 * Against a real mosquitto 2.0 (test/helpers/mosquitto.ts), for what aedes (MQTT 3.1.1 only) cannot show: MQTT 5
 * reason codes, re-provisioning on a real refusal, a real TLS listener and a real password file. Every device uses
 * `auth: 'plain'` (clientId `${productKey}.${deviceName}`, username deviceName, password deviceSecret), so the password
 * file decides; provisioning is a real HTTPS server on 127.0.0.1. What mosquitto did is read from its own log.
 *
 * Without mosquitto these tests are skipped (with the reason), except in CI, where that is a failure.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { TLSSocket } from 'node:tls'
import type { MqttClient } from 'mqtt'
import { generate } from 'selfsigned'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  type BootstrapOptions,
  BrokerError,
  connectProvisioned,
  credentialKey,
  type DeviceConfig,
  FileCredentialStore,
  type Logger,
  MemoryCredentialStore,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot, eventTrail, FIRST_BOOT_TRAIL, nextEvent, payloads, REPROVISIONED_TRAIL } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { configAnswer, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from './helpers/mosquitto.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const skipReason = mosquittoSkipReason() // throws in CI when mosquitto is missing
if (skipReason !== undefined) console.warn(`test/mosquitto.test.ts skipped: ${skipReason}`)

const PK = 'a1MosqPK'
type Device = { productKey: string; deviceName: string; deviceSecret: string }
const device = (deviceName: string, deviceSecret: string): Device =>
  Object.freeze({ productKey: PK, deviceName, deviceSecret })

// In the password file (username deviceName, password deviceSecret):
const V5 = device('mqtt5-device', 'mqtt5-secret-current-0001')
const V311 = device('mqtt311-device', 'mqtt311-secret-current-0001')
const TLS_DEVICE = device('tls-device', 'tls-secret-current-0001')
const PLAIN = device('plain-device', 'plain-secret-current-0001')
const USERS = Object.fromEntries([V5, V311, TLS_DEVICE, PLAIN].map((d) => [d.deviceName, d.deviceSecret]))
// Not in it: revoked secrets of known devices, and a device the broker has never heard of.
const V5_REVOKED = device(V5.deviceName, 'mqtt5-secret-revoked-0000')
const V5_ALSO_REVOKED = device(V5.deviceName, 'mqtt5-secret-revoked-9999')
const V311_REVOKED = device(V311.deviceName, 'mqtt311-secret-revoked-0000')
const PLAIN_WRONG = device(PLAIN.deviceName, 'plain-secret-wrong-0000')
const LATE = device('late-device', 'late-secret-current-0001')
// Rotated while connected: the old secret is in the password file at first, then replaced by the new one.
const ROTATING_OLD = device('rotating-device', 'rotating-secret-old-0001')
const ROTATING_NEW = device('rotating-device', 'rotating-secret-new-0002')
for (const d of [V5_REVOKED, V5_ALSO_REVOKED, V311_REVOKED, PLAIN_WRONG, LATE, ROTATING_OLD, ROTATING_NEW])
  suite.secret(d.deviceSecret)

const clientIdOf = (d: Device) => `${d.productKey}.${d.deviceName}`

describe.skipIf(skipReason !== undefined)(
  `mosquitto${skipReason === undefined ? '' : ` (skipped: ${skipReason})`}`,
  () => {
    let tls: TlsFixture
    let broker: Mosquitto | undefined
    let server: TestServer | undefined
    let dir: string | undefined
    /** A CA that signed nothing mosquitto presents. */
    let unknownCa: string
    const clients: MqttClient[] = []

    beforeAll(async () => {
      tls = await tlsFixture()
      const other = await generate([{ name: 'commonName', value: 'some other CA' }], {
        keyType: 'ec',
        algorithm: 'sha256',
        extensions: [{ name: 'basicConstraints', cA: true, critical: true }],
      })
      unknownCa = other.cert
      dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-mosquitto-test-'))
      broker = await startMosquitto({ users: USERS, tls: { ca: tls.ca, cert: tls.cert, key: tls.key } })
      server = await startHttpsServer(tls, (_req, res) => json(res, 200, { code: '10001' }))
    })
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((client) => client.endAsync(true)))
      if (server) server.requests.length = 0
    })
    afterAll(async () => {
      await Promise.all(clients.splice(0).map((client) => client.endAsync(true)))
      await Promise.allSettled([
        broker?.stop(),
        server?.close(),
        dir ? rm(dir, { recursive: true, force: true }) : undefined,
      ])
    })

    const mosquitto = (): Mosquitto => broker as Mosquitto
    /**
     * mosquitto's log reaches us through a pipe: a client may have its CONNACK before the broker's lines about it.
     * Wait for the line of the accepting CONNACK (after `since`) before reading what the broker saw.
     */
    const connackLogged = (since: number) => mosquitto().waitForLog(/^Sending CONNACK to \S+ \(\d, 0\)$/, since)
    const provisioning = (): TestServer => server as TestServer

    /** The provisioning server answers `answered` with this connect block (by default, mosquitto's plain listener). */
    function answer(answered: Device, connect: { host?: string; qos?: number; cleanSession?: number } = {}): void {
      const host = `mqtt://${mosquitto().host}`
      provisioning().handle((_req, res) =>
        json(res, 200, configAnswer({ host, qos: 1, cleanSession: 1, ...connect }, answered)),
      )
    }

    function options(data: object, overrides: Partial<BootstrapOptions> = {}): BootstrapOptions {
      return {
        url: provisioning().url,
        data,
        tls: { ca: tls.ca },
        auth: 'plain',
        // Small waits: a retry that should not happen shows as a count, not as a slow test.
        retry: { retries: 2, minTimeout: 20, maxTimeout: 50 },
        ...overrides,
      }
    }

    /** What a cache holds for a device that was provisioned `revoked` credentials earlier. */
    function cachedEntry(revoked: Device): { config: DeviceConfig; savedAt: number } {
      const connect = { qos: 1 as const, host: `mqtt://${mosquitto().host}`, cleanSession: 1 as const }
      return { savedAt: 0, config: { device: { ...revoked, productSecret: null }, connect } }
    }

    /** Every line the library logs, kept, and also handed to the suite's leak check. */
    function recordingLogger(): { logger: Logger; lines: Array<{ level: string; fields: object; message?: string }> } {
      const exposed = suite.exposure.logger()
      const lines: Array<{ level: string; fields: object; message?: string }> = []
      const at =
        (level: keyof Logger) =>
        (fields: object, message?: string): void => {
          lines.push({ level, fields, ...(message === undefined ? {} : { message }) })
          exposed[level](fields, message)
        }
      return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines }
    }

    function track(client: MqttClient): MqttClient {
      clients.push(client)
      suite.objects.push(client) // inspected for secrets after the test
      return client
    }

    /** The next message on `topic`, bounded in time. */
    function nextMessage(client: MqttClient, topic: string, timeoutMs = 5000) {
      const message = new Promise<{ payload: string; qos: number }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no message on ${topic} within ${timeoutMs} ms`)), timeoutMs)
        timer.unref()
        client.on('message', (t, payload, packet) => {
          if (t !== topic) return
          clearTimeout(timer)
          resolve({ payload: payload.toString(), qos: packet.qos })
        })
      })
      message.catch(() => {}) // a test that fails before awaiting it reports its own failure, not this one
      return message
    }

    describe('MQTT 5', () => {
      test('provisions, connects, publishes with the provisioned qos and receives its own message', async () => {
        answer(V5, { qos: 1 })
        const since = mosquitto().mark()
        const data = { imei: 'mqtt5-basic' }
        const { boot: bootstrap, events } = boot(options(data, { mqtt: { protocolVersion: 5, keepalive: 30 } }))
        const client = track(await bootstrap.connect())
        await connackLogged(since)

        expect(provisioning().requests.map((r) => JSON.parse(r.body))).toEqual([data])
        expect(eventTrail(events)).toEqual(FIRST_BOOT_TRAIL)
        expect(payloads(events, 'connected')).toEqual([
          { url: `mqtt://${mosquitto().host}`, clientId: clientIdOf(V5), source: 'server' },
        ])
        // What mosquitto saw: an MQTT 5 CONNECT (p5) with the plain clientId and username, and the caller's keepalive.
        expect(mosquitto().accepted(since)).toEqual([
          { clientId: clientIdOf(V5), protocol: 5, clean: true, keepalive: 30, username: V5.deviceName },
        ])
        expect(mosquitto().connacks(since)).toEqual([{ to: clientIdOf(V5), sessionPresent: false, code: 0 }])

        const topic = `devices/${V5.deviceName}/echo`
        const received = nextMessage(client, topic)
        // No qos given: subscribe and publish both take the provisioned one (1); mosquitto grants it.
        expect(await client.subscribeAsync(topic)).toEqual([expect.objectContaining({ topic, qos: 1 })])
        // mqtt.js resolves a qos 1 publish with the packet it sent, once mosquitto has acknowledged it.
        expect(await client.publishAsync(topic, 'hello from mqtt 5')).toMatchObject({ cmd: 'publish', qos: 1 })
        expect(await received).toEqual({ payload: 'hello from mqtt 5', qos: 1 })
      })

      test('stale cached credentials: mosquitto refuses with 135, one fresh provisioning, connected, cache replaced', async () => {
        const path = join(dir as string, 'reprovision.json')
        const data = { imei: 'mqtt5-reprovision' }
        const key = credentialKey(provisioning().url, data)
        await new FileCredentialStore(path).set(key, cachedEntry(V5_REVOKED))
        answer(V5)
        const since = mosquitto().mark()
        const { logger, lines } = recordingLogger()
        const { boot: bootstrap, events } = boot(
          options(data, { cache: new FileCredentialStore(path), logger, mqtt: { protocolVersion: 5 } }),
        )
        const client = track(await bootstrap.connect())
        await connackLogged(since)
        expect(client.connected).toBe(true)

        expect(payloads(events, 'auth-rejected')).toEqual([{ returnCode: 135, source: 'cache', reprovision: true }])
        expect(lines.filter((l) => l.message === 'credentials rejected').map((l) => l.fields)).toEqual([
          { returnCode: 135, source: 'cache', reprovision: true },
        ])
        expect(eventTrail(events)).toEqual(REPROVISIONED_TRAIL)
        expect(payloads(events, 'cache')[1]).toMatchObject({ action: 'invalidate', reason: 'auth-rejected' })
        expect(provisioning().requests).toHaveLength(1)
        // mosquitto's side: the revoked secret refused (135, before it named the client), the fresh one accepted.
        expect(
          mosquitto()
            .connacks(since)
            .map((c) => c.code),
        ).toEqual([135, 0])
        expect(mosquitto().accepted(since)).toMatchObject([{ clientId: clientIdOf(V5), protocol: 5 }])
        // The file now holds the new credentials (read back by another store instance, from disk).
        const entry = await new FileCredentialStore(path).get(key)
        expect(entry?.savedAt).toBeGreaterThan(0)
        expect(entry?.config.device.deviceSecret === V5.deviceSecret).toBe(true)
      })

      test('fresh credentials refused too: connectProvisioned() rejects ERR_BROKER_AUTH_REJECTED (135), no loop', async () => {
        const data = { imei: 'mqtt5-refused-twice' }
        const cache = new MemoryCredentialStore()
        const key = credentialKey(provisioning().url, data)
        await cache.set(key, cachedEntry(V5_REVOKED))
        answer(V5_ALSO_REVOKED) // the server keeps handing out credentials mosquitto does not know
        const since = mosquitto().mark()
        const error = await connectProvisioned(
          options(data, { cache, logger: suite.exposure.logger(), mqtt: { protocolVersion: 5 } }),
        ).catch((e: unknown) => e)
        suite.objects.push(error)
        expect(error).toBeInstanceOf(BrokerError)
        expect(error).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', returnCode: 135, transient: false })
        await sleep(300) // nothing goes on behind our back
        expect(provisioning().requests).toHaveLength(1)
        expect(
          mosquitto()
            .connacks(since)
            .map((c) => c.code),
        ).toEqual([135, 135])
        expect(mosquitto().accepted(since)).toEqual([])
        // Refused fresh credentials are never cached: the entry is the one from before.
        expect((await cache.get(key))?.savedAt).toBe(0)
      })
    })

    describe('MQTT 3.1.1', () => {
      test('connects (mosquitto sees 3.1.1, and cleanSession 0 as a persistent session)', async () => {
        answer(V311, { cleanSession: 0 })
        const since = mosquitto().mark()
        const { boot: bootstrap, events } = boot(options({ imei: 'mqtt311-basic' }, { mqtt: { protocolVersion: 4 } }))
        const client = track(await bootstrap.connect())
        await connackLogged(since)
        expect(client.connected).toBe(true)
        expect(payloads(events, 'connected')).toHaveLength(1)
        // mosquitto numbers MQTT 3.1.1 as protocol 2 (mosq_p_mqtt311).
        expect(mosquitto().accepted(since)).toEqual([
          { clientId: clientIdOf(V311), protocol: 2, clean: false, keepalive: 60, username: V311.deviceName },
        ])
        expect(
          mosquitto()
            .connacks(since)
            .map((c) => c.code),
        ).toEqual([0])
      })

      test('stale cached credentials: mosquitto refuses with 5, one fresh provisioning, connected', async () => {
        const data = { imei: 'mqtt311-reprovision' }
        const cache = new MemoryCredentialStore()
        const key = credentialKey(provisioning().url, data)
        await cache.set(key, cachedEntry(V311_REVOKED))
        answer(V311)
        const since = mosquitto().mark()
        const { boot: bootstrap, events } = boot(options(data, { cache, mqtt: { protocolVersion: 4 } }))
        track(await bootstrap.connect())
        await connackLogged(since)
        expect(payloads(events, 'auth-rejected')).toEqual([{ returnCode: 5, source: 'cache', reprovision: true }])
        expect(provisioning().requests).toHaveLength(1)
        expect(
          mosquitto()
            .connacks(since)
            .map((c) => c.code),
        ).toEqual([5, 0])
        expect(mosquitto().accepted(since)).toMatchObject([{ clientId: clientIdOf(V311), protocol: 2 }])
        expect((await cache.get(key))?.config.device.deviceSecret === V311.deviceSecret).toBe(true)
      })
    })

    describe('TLS', () => {
      test('a bare host gets mqtts://: the device connects to the TLS listener, verified with the test CA', async () => {
        const tlsHost = mosquitto().tlsHost as string
        answer(TLS_DEVICE, { host: tlsHost }) // bare 127.0.0.1:<port>: mqtts by default (README "Broker URL and auth strategies")
        const since = mosquitto().mark()
        const { boot: bootstrap, events } = boot(
          options({ imei: 'tls-basic' }, { mqtt: { ca: tls.ca, protocolVersion: 5 } }),
        )
        const client = track(await bootstrap.connect())
        await connackLogged(since)
        expect(payloads(events, 'connected')).toEqual([
          { url: `mqtts://${tlsHost}`, clientId: clientIdOf(TLS_DEVICE), source: 'server' },
        ])
        expect(client.stream).toBeInstanceOf(TLSSocket)
        expect((client.stream as TLSSocket).authorized).toBe(true)
        expect(mosquitto().accepted(since)).toMatchObject([{ clientId: clientIdOf(TLS_DEVICE), protocol: 5 }])
        const topic = `devices/${TLS_DEVICE.deviceName}/echo`
        const received = nextMessage(client, topic)
        await client.subscribeAsync(topic)
        await client.publishAsync(topic, 'over tls')
        expect(await received).toEqual({ payload: 'over tls', qos: 1 })
      })

      test('a broker certificate from an unknown CA fails closed: ERR_BROKER_CONNECT, one attempt, no CONNECT sent', async () => {
        answer(TLS_DEVICE, { host: `mqtts://${mosquitto().tlsHost}` })
        const since = mosquitto().mark()
        const cache = new MemoryCredentialStore()
        const data = { imei: 'tls-unknown-ca' }
        const { boot: bootstrap, events } = boot(options(data, { cache, mqtt: { ca: unknownCa, protocolVersion: 5 } }))
        const error = await bootstrap.connect().catch((e: unknown) => e)
        expect(error).toBeInstanceOf(BrokerError)
        expect(error).toMatchObject({ code: 'ERR_BROKER_CONNECT', transient: false, attempts: 1 })
        // mosquitto sends its certificate with the CA from its cafile (OpenSSL builds the chain from it): Node says
        // SELF_SIGNED_CERT_IN_CHAIN; a broker that sends the leaf alone gives UNABLE_TO_VERIFY_LEAF_SIGNATURE.
        expect((error as Error).message).toMatch(
          /^broker TLS certificate verification failed \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\), at mqtts:\/\/127\.0\.0\.1:\d+$/,
        )
        expect(payloads(events, 'connecting')).toHaveLength(1)
        expect(payloads(events, 'retry')).toEqual([])
        expect(payloads(events, 'error')).toMatchObject([{ fatal: true, error: { code: 'ERR_BROKER_CONNECT' } }])
        await sleep(200) // an insecure second try would show up at mosquitto
        expect(mosquitto().accepted(since)).toEqual([])
        expect(mosquitto().connacks(since)).toEqual([])
        expect(await cache.get(credentialKey(provisioning().url, data))).toBeUndefined()
      })
    })

    describe('plain auth against the password file', () => {
      test('the right password connects as clientId productKey.deviceName, username deviceName', async () => {
        answer(PLAIN)
        const since = mosquitto().mark()
        const { boot: bootstrap } = boot(options({ imei: 'plain-ok' })) // mqtt.js's default protocol: 3.1.1
        track(await bootstrap.connect())
        await connackLogged(since)
        expect(mosquitto().accepted(since)).toEqual([
          { clientId: clientIdOf(PLAIN), protocol: 2, clean: true, keepalive: 60, username: PLAIN.deviceName },
        ])
      })

      test.each([
        { protocolVersion: 4 as const, code: 5 },
        { protocolVersion: 5 as const, code: 135 },
      ])(
        'a wrong password is refused: MQTT $protocolVersion gives $code, no re-provisioning of fresh credentials',
        async ({ protocolVersion, code }) => {
          answer(PLAIN_WRONG)
          const since = mosquitto().mark()
          const { boot: bootstrap, events } = boot(
            options({ imei: `plain-wrong-${protocolVersion}` }, { mqtt: { protocolVersion } }),
          )
          const error = await bootstrap.connect().catch((e: unknown) => e)
          expect(error).toBeInstanceOf(BrokerError)
          expect(error).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', returnCode: code, transient: false })
          expect(payloads(events, 'auth-rejected')).toEqual([
            { returnCode: code, source: 'server', reprovision: false },
          ])
          expect(provisioning().requests).toHaveLength(1)
          expect(
            mosquitto()
              .connacks(since)
              .map((c) => c.code),
          ).toEqual([code])
          expect(mosquitto().accepted(since)).toEqual([])
        },
      )

      test('a device unknown to the broker is refused, and connects once the password file lists it (SIGHUP)', async () => {
        answer(LATE)
        const data = { imei: 'plain-late' }
        const first = await boot(options(data, { mqtt: { protocolVersion: 5 } }))
          .boot.connect()
          .catch((e: unknown) => e)
        expect(first).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', returnCode: 135 })
        try {
          await mosquitto().setUsers({ ...USERS, [LATE.deviceName]: LATE.deviceSecret })
          const since = mosquitto().mark()
          track(await boot(options(data, { mqtt: { protocolVersion: 5 } })).boot.connect())
          await connackLogged(since)
          expect(mosquitto().accepted(since)).toMatchObject([{ clientId: clientIdOf(LATE), username: LATE.deviceName }])
          expect(provisioning().requests).toHaveLength(2) // one per boot: refused credentials were not cached
        } finally {
          await mosquitto().setUsers(USERS)
        }
      })

      test('credentials revoked while connected (password file reloaded): the same client re-provisions, reconnects', async () => {
        const data = { imei: 'plain-rotating' }
        const cache = new MemoryCredentialStore()
        try {
          await mosquitto().setUsers({ ...USERS, [ROTATING_OLD.deviceName]: ROTATING_OLD.deviceSecret })
          answer(ROTATING_OLD)
          const { boot: bootstrap, events } = boot(
            options(data, { cache, mqtt: { protocolVersion: 5 }, reconnect: { minDelay: 20, maxDelay: 50 } }),
          )
          const client = track(await bootstrap.connect())
          const topic = `devices/${ROTATING_OLD.deviceName}/echo`
          await client.subscribeAsync(topic)
          answer(ROTATING_NEW)
          const reconnected = nextEvent(bootstrap, 'connected') // the boot's own 'connected' is behind us
          const since = mosquitto().mark()
          await mosquitto().setUsers({ ...USERS, [ROTATING_NEW.deviceName]: ROTATING_NEW.deviceSecret })
          await reconnected
          expect(client.connected).toBe(true)
          // mosquitto's log is read as it comes: the CONNACK the client has may not be in it yet.
          await connackLogged(since)
          // mosquitto dropped the client at the reload, refused the old secret on the reconnect, took the new one.
          expect(
            mosquitto()
              .connacks(since)
              .map((c) => c.code),
          ).toEqual([135, 0])
          expect(payloads(events, 'auth-rejected')).toEqual([{ returnCode: 135, source: 'server', reprovision: true }])
          expect(provisioning().requests).toHaveLength(2)
          // The new credentials are cached once mosquitto has accepted them (a write after the boot's own).
          await until(
            () => payloads(events, 'cache').filter((e) => e.action === 'write').length === 2,
            2000,
            'cache write',
          )
          const entry = await cache.get(credentialKey(provisioning().url, data))
          expect(entry?.config.device.deviceSecret === ROTATING_NEW.deviceSecret).toBe(true)
          // mqtt.js resubscribed on the same client: its own message still comes back.
          const received = nextMessage(client, topic)
          await client.publishAsync(topic, 'after rotation')
          expect(await received).toEqual({ payload: 'after rotation', qos: 1 })
        } finally {
          await mosquitto().setUsers(USERS)
        }
      })
    })
  },
)
