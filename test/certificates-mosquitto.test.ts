/**
 * Issue 17 against Debian's mosquitto: its TLS listener has `require_certificate true`, `use_identity_as_username
 * true` and the issuing CA as its `cafile`, so a client connects by a certificate of that CA alone (its CN becomes its
 * user name) and no password file entry helps. The provisioning server is the real handler with
 * `issueCertificates()`, over HTTPS on 127.0.0.1. What mosquitto did is read from its own log.
 *
 * Without mosquitto these tests are skipped (with the reason), except in CI, where that is a failure.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import https from 'node:https'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { createCertificateRequest, createDeviceKey } from '../packages/mqtt-bootstrap/src/contract-entry.js'
import {
  type BootstrapOptions,
  BrokerError,
  credentialKey,
  FileCredentialStore,
} from '../packages/mqtt-bootstrap/src/index.js'
import {
  type CertificateIssuer,
  createProvisioningHandler,
  issueCertificates,
  type Resolution,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { boot } from './helpers/env.js'
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from './helpers/mosquitto.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { type Authority, authority } from './helpers/x509.js'

const skipReason = mosquittoSkipReason() // throws in CI when mosquitto is missing
if (skipReason !== undefined) console.warn(`test/certificates-mosquitto.test.ts skipped: ${skipReason}`)

const PK = 'a1MtlsPK'

describe.skipIf(skipReason !== undefined)(
  `mosquitto with require_certificate${skipReason === undefined ? '' : ` (skipped: ${skipReason})`}`,
  () => {
    let tls: TlsFixture
    let issuing: Authority
    let other: Authority
    let broker: Mosquitto
    let dir: string
    const servers: Array<{ url: string; requests: unknown[]; close(): Promise<void> }> = []
    const clients: MqttClient[] = []
    /** What the provisioning servers told onError: nothing, in every test. */
    const serverErrors: unknown[] = []

    const issuerOf = (ca: Authority) => issueCertificates({ ca, validitySeconds: 3600 })

    /** A provisioning server whose certificates come from `issue`, for one device named `deviceName`, at `host`. */
    async function provisioningServer(
      issue: CertificateIssuer,
      deviceName: string,
      host = () => `mqtts://127.0.0.1:${broker.tlsPort}`,
    ) {
      const requests: unknown[] = []
      const resolve = (data: unknown): Resolution => {
        requests.push(data)
        return {
          device: { productKey: PK, deviceName },
          connect: { host: host(), qos: 1, cleanSession: 1 },
        }
      }
      const handler = createProvisioningHandler({
        resolve,
        issue,
        onError: (error) => serverErrors.push(error),
      })
      const server = https.createServer({ key: tls.key, cert: tls.cert, noDelay: true }, handler)
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      const entry = {
        url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`,
        requests,
        close: async () => {
          server.closeAllConnections()
          server.close()
          await once(server, 'close')
        },
      }
      servers.push(entry)
      return entry
    }

    beforeAll(async () => {
      tls = await tlsFixture()
      issuing = await authority('mqtt-bootstrap issuing CA')
      other = await authority('some other issuing CA')
      dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-mtls-test-'))
      // The listener's cafile is the issuing CA: what client certificates must chain to.
      broker = await startMosquitto({
        users: { 'password-user': 'unused-password-0001' }, // mosquitto_passwd wants one line
        tls: { ca: issuing.cert, cert: tls.cert, key: tls.key },
        requireCertificate: true,
      })
    })
    afterEach(async () => {
      await Promise.all(clients.splice(0).map((client) => client.endAsync(true)))
      expect(serverErrors.splice(0)).toEqual([])
    })
    afterAll(async () => {
      await Promise.allSettled([broker?.stop(), ...servers.map((s) => s.close())])
      await rm(dir, { recursive: true, force: true })
    })

    const options = (url: string, cache: FileCredentialStore, extra: Partial<BootstrapOptions> = {}) =>
      ({
        url,
        data: { imei: '860000000000042' },
        tls: { ca: tls.ca },
        mqtt: { ca: tls.ca },
        certificate: true,
        cache,
        retry: { retries: 1, minTimeout: 20, maxTimeout: 50 },
        ...extra,
      }) satisfies BootstrapOptions

    test('a device boots with `certificate: true` and mosquitto knows it by its certificate; the next boot is cached', async () => {
      const server = await provisioningServer(issuerOf(issuing), 'mtls-device-1')
      const cache = new FileCredentialStore(join(dir, 'one.json'))
      const since = broker.mark()
      const first = await boot(options(server.url, cache)).boot.connect()
      clients.push(first)
      await broker.waitForLog(/^Sending CONNACK to \S+ \(0, 0\)$/, since)
      // use_identity_as_username: the user name is the certificate's CN, which the server set to the deviceName.
      expect(broker.accepted(since)).toMatchObject([{ clientId: `${PK}.mtls-device-1`, username: 'mtls-device-1' }])
      expect(server.requests).toHaveLength(1)
      await first.endAsync(true)

      // A new process would do the same: a new store over the same file, no request, the same certificate.
      const again = broker.mark()
      const { boot: second, events } = boot(options(server.url, new FileCredentialStore(cache.path)))
      const client = await second.connect()
      clients.push(client)
      await broker.waitForLog(/^Sending CONNACK to \S+ \(0, 0\)$/, again)
      expect(server.requests).toHaveLength(1)
      expect(events.filter(([name]) => name === 'provisioned').map(([, e]) => e)).toMatchObject([{ source: 'cache' }])
      expect(broker.accepted(again)).toMatchObject([{ username: 'mtls-device-1' }])

      // The round trip works: mosquitto routes a message to the device by its certificate identity.
      await client.subscribeAsync('mtls/echo')
      const received = new Promise<[string, Buffer]>((resolve) => client.once('message', (t, p) => resolve([t, p])))
      await client.publishAsync('mtls/echo', 'hello')
      const [topic, payload] = await received
      expect([topic, payload.toString()]).toEqual(['mtls/echo', 'hello'])
    })

    test('a certificate of another CA is refused by mosquitto, and the device reports it', async () => {
      const server = await provisioningServer(issuerOf(other), 'mtls-device-2')
      const cache = new FileCredentialStore(join(dir, 'two.json'))
      const since = broker.mark()
      const { boot: bootstrap, events } = boot(options(server.url, cache, { retry: false }))
      const error = await bootstrap.connect().catch((e: unknown) => e)
      // mosquitto (OpenSSL) answers the handshake with the alert "unknown ca": the credentials are refused.
      expect(error).toBeInstanceOf(BrokerError)
      expect(error).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', transient: false })
      expect((error as BrokerError).message).toMatch(
        /refused the client certificate \(ERR_SSL_TLSV1_ALERT_UNKNOWN_CA\)/,
      )
      expect(events.filter(([name]) => name === 'auth-rejected').map(([, e]) => e)).toEqual([
        { returnCode: 0, source: 'server', reprovision: false },
      ])
      await broker.waitForLog(/certificate verify failed|OpenSSL Error/i, since)
      expect(broker.accepted(since)).toEqual([])
      // Reported as it happened, and the refused credentials were not cached.
      expect(events.some(([name]) => name === 'connecting')).toBe(true)
      expect(await cache.get(credentialKey(server.url, { imei: '860000000000042' }))).toBeUndefined()
    })

    test('a cached certificate the broker refuses is replaced once by a new claim', async () => {
      const server = await provisioningServer(issuerOf(issuing), 'mtls-device-3')
      const cache = new FileCredentialStore(join(dir, 'three.json'))
      const data = { imei: '860000000000042' }
      // What a device holds after its broker moved to another CA: a key and a certificate of the old one.
      const key = await createDeviceKey('p256')
      const old = issueCertificates({ ca: other, validitySeconds: 3600 })
      const checked = await old.check(createCertificateRequest(key))
      if (!checked.ok) throw new Error(checked.problem)
      const certificate = await old.issue(checked.request, { productKey: PK, deviceName: 'mtls-device-3' })
      const connect = { host: `mqtts://127.0.0.1:${broker.tlsPort}`, qos: 1 as const, cleanSession: 1 as const }
      const device = { productKey: PK, deviceName: 'mtls-device-3', deviceSecret: '', productSecret: null, certificate }
      await cache.set(credentialKey(server.url, data), {
        config: { device, connect },
        savedAt: 0,
        privateKey: key.privateKeyPem,
      })
      const since = broker.mark()
      const { boot: bootstrap, events } = boot(options(server.url, cache))
      const client = await bootstrap.connect()
      clients.push(client)
      expect(events.filter(([name]) => name === 'auth-rejected').map(([, e]) => e)).toEqual([
        { returnCode: 0, source: 'cache', reprovision: true },
      ])
      expect(server.requests).toHaveLength(1)
      await broker.waitForLog(/^Sending CONNACK to \S+ \(0, 0\)$/, since)
      expect(broker.accepted(since)).toMatchObject([{ username: 'mtls-device-3' }])
      // The new key and certificate replaced the refused ones.
      const stored = await cache.get(credentialKey(server.url, data))
      expect(stored?.privateKey).not.toBe(key.privateKeyPem)
      expect(stored?.config.device.certificate).not.toBe(certificate)
    })

    test('a certificate refused on a reconnect is replaced in the running session: one refusal, one claim, connected again', async () => {
      // The device's broker moves to one that trusts another CA (a TCP forwarder in front, switched), and the
      // provisioning server issues from that CA now, slowly: while the new certificate is on its way, the refused one
      // must not be tried again and again (mqtt.js's own reconnect timer), and the session must not give up.
      const second = await startMosquitto({
        users: { 'password-user': 'unused-password-0001' },
        tls: { ca: other.cert, cert: tls.cert, key: tls.key },
        requireCertificate: true,
      })
      let target = broker.tlsPort as number
      const sockets = new Set<Socket>()
      const forwarder = createServer((socket) => {
        const upstream = connect(target, '127.0.0.1')
        // Either side gone (closed, reset): the other goes too, as a real network path would end both ways.
        for (const [end, other] of [
          [socket, upstream],
          [upstream, socket],
        ] as const) {
          sockets.add(end)
          end.on('close', () => {
            sockets.delete(end)
            other.destroy()
          })
          end.on('error', () => end.destroy())
        }
        socket.pipe(upstream).pipe(socket)
      })
      forwarder.listen(0, '127.0.0.1')
      await once(forwarder, 'listening')
      const via = `mqtts://127.0.0.1:${(forwarder.address() as AddressInfo).port}`
      let current = issuerOf(issuing)
      let delayMs = 0
      const switchable: CertificateIssuer = {
        check: (csr) => current.check(csr),
        issue: async (request, target) => {
          await new Promise((resolve) => setTimeout(resolve, delayMs))
          return current.issue(request, target)
        },
      }
      try {
        const server = await provisioningServer(switchable, 'mtls-device-4', () => via)
        const cache = new FileCredentialStore(join(dir, 'four.json'))
        const { boot: bootstrap, events } = boot(
          options(server.url, cache, { reconnect: { minDelay: 20, maxDelay: 50, stableAfter: 60_000 } }),
        )
        const client = await bootstrap.connect()
        clients.push(client)
        const first = client.options.cert

        const since = second.mark()
        current = issuerOf(other)
        delayMs = 700
        target = second.tlsPort as number
        const reconnected = new Promise<void>((resolve) => client.once('connect', () => resolve()))
        for (const socket of sockets) socket.destroy()
        await Promise.race([
          reconnected,
          new Promise((_, reject) =>
            setTimeout(
              () =>
                reject(
                  new Error(
                    `not connected again within 10 s: ${JSON.stringify(events.map(([n, e]) => [n, n === 'error' ? String((e as { error: Error }).error) : e]))}`,
                  ),
                ),
              10_000,
            ),
          ),
        ])
        await second.waitForLog(/^Sending CONNACK to \S+ \(0, 0\)$/, since)
        expect(second.accepted(since)).toMatchObject([{ username: 'mtls-device-4' }])
        expect(client.options.cert).not.toBe(first)
        expect(server.requests).toHaveLength(2)
        expect(events.filter(([name]) => name === 'auth-rejected').map(([, e]) => e)).toEqual([
          { returnCode: 0, source: 'server', reprovision: true },
        ])
        expect(events.filter(([name, e]) => name === 'error' && (e as { fatal: boolean }).fatal)).toEqual([])
        // One refused handshake with the old certificate, then the new one: no storm while it was being issued.
        const refusals = second.log.slice(since).filter((line) => /OpenSSL Error|certificate verify failed/i.test(line))
        expect(refusals.length).toBeGreaterThan(0)
        expect(refusals.length).toBeLessThanOrEqual(2)
        // The new key and certificate are what the store keeps once the broker accepted them.
        const key = credentialKey(server.url, { imei: '860000000000042' })
        let stored: string | undefined
        for (let i = 0; i < 100 && stored !== client.options.cert; i++) {
          stored = (await cache.get(key))?.config.device.certificate
          if (stored !== client.options.cert) await new Promise((resolve) => setTimeout(resolve, 20))
        }
        expect(stored).toBe(client.options.cert)
      } finally {
        for (const socket of sockets) socket.destroy()
        forwarder.close()
        await second.stop()
      }
    })
  },
)
