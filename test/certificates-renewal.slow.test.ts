/**
 * Issue 18's acceptance case, in real time against Debian's mosquitto with `require_certificate true`: certificates
 * valid for a minute, a device publishing a numbered QoS 1 stream through two renewals. Nothing published is lost
 * (duplicates are allowed), and the device ends connected with the third certificate, each renewal having been
 * asked with the certificate before it as the TLS client certificate. About 85 s: a renewal comes 40 s after each
 * certificate arrived (a third of its minute before notAfter). Real time, so on the machine's Node only in CI
 * (`*.slow.test.ts`); test/certificates-renewal-aedes.slow.test.ts has the device's cases against aedes. Then a renewed
 * certificate mosquitto refuses (another CA's): the device stays on the old one, reported.
 *
 * Without mosquitto this is skipped (with the reason), except in CI, where that is a failure.
 */

import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { credentialKey, FileCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import {
  type CertificateIssuer,
  createProvisioningHandler,
  issueCertificates,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { boot } from './helpers/env.js'
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from './helpers/mosquitto.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { type Authority, authority } from './helpers/x509.js'

const skipReason = mosquittoSkipReason() // throws in CI when mosquitto is missing
if (skipReason !== undefined) console.warn(`test/certificates-renewal.slow.test.ts skipped: ${skipReason}`)

const PK = 'a1RotatePK'
const NAME = 'rotate-device-001'
const DATA = { imei: '860000000000019' }
const USER = { name: 'stream-reader', password: 'stream-reader-password-01' }

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256

describe.skipIf(skipReason !== undefined)(
  `renewal through a QoS 1 stream, mosquitto with require_certificate${skipReason === undefined ? '' : ` (skipped: ${skipReason})`}`,
  () => {
    let tls: TlsFixture
    let issuing: Authority
    /** What the provisioning server issues with: one-minute certificates of the CA mosquitto trusts, unless a test says. */
    let issuer: CertificateIssuer
    let broker: Mosquitto
    let server: https.Server
    let url: string
    let dir: string
    /** The client certificate each provisioning request presented (its fingerprint), in order. */
    const presented: Array<string | undefined> = []
    const serverErrors: unknown[] = []

    beforeAll(async () => {
      tls = await tlsFixture()
      issuing = await authority('mqtt-bootstrap rotating CA')
      issuer = issueCertificates({ ca: issuing, validitySeconds: 60 })
      dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-rotate-test-'))
      broker = await startMosquitto({
        users: { [USER.name]: USER.password },
        tls: { ca: issuing.cert, cert: tls.cert, key: tls.key },
        requireCertificate: true,
      })
      const handler = createProvisioningHandler({
        resolve: () => ({
          device: { productKey: PK, deviceName: NAME },
          connect: { host: `mqtts://127.0.0.1:${broker.tlsPort}`, qos: 1, cleanSession: 0 },
        }),
        issue: {
          check: (csr) => issuer.check(csr),
          issue: (request, target) => issuer.issue(request, target),
        },
        onError: (error) => serverErrors.push(error),
      })
      // Asks every client for a certificate (a renewal presents the current one), and lets one without it in.
      server = https.createServer(
        { key: tls.key, cert: tls.cert, requestCert: true, rejectUnauthorized: false, ca: issuing.cert },
        (request, response) => {
          presented.push((request.socket as TLSSocket).getPeerCertificate()?.fingerprint256)
          handler(request, response)
        },
      )
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/provision`
    })

    afterAll(async () => {
      server?.closeAllConnections()
      server?.close()
      await broker?.stop()
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    })

    test('two renewals of one-minute certificates, no QoS 1 message lost, connected with the third certificate', async () => {
      const reader = await mqtt.connectAsync(`mqtt://${broker.host}`, {
        username: USER.name,
        password: USER.password,
        reconnectPeriod: 0,
      })
      const received = new Set<number>()
      reader.on('message', (_topic, payload) => received.add(Number(payload.toString())))
      await reader.subscribeAsync('rotate/stream', { qos: 1 })

      const cache = new FileCredentialStore(join(dir, 'rotate.json'))
      const { boot: bootstrap, events } = boot({
        url,
        data: DATA,
        tls: { ca: tls.ca },
        mqtt: { ca: tls.ca },
        certificate: true,
        cache,
        retry: { retries: 3, minTimeout: 200, maxTimeout: 1000 },
        reconnect: { minDelay: 100, maxDelay: 1000 },
      })
      let device: MqttClient | undefined
      let published = 0
      let failed = 0
      let timer: NodeJS.Timeout | undefined
      try {
        device = await bootstrap.connect()
        const client = device
        let renewals = 0
        const twice = new Promise<void>((resolve, reject) => {
          const limit = setTimeout(() => reject(new Error('no second renewal within 150 s')), 150_000)
          bootstrap.on('renewed', () => {
            if (++renewals < 2) return
            clearTimeout(limit)
            resolve()
          })
        })
        // One message every 50 ms, numbered: about 1,700 across the two switches (bounded: 4,000 at most).
        timer = setInterval(() => {
          if (published >= 4000) return
          client.publishAsync('rotate/stream', String(++published), { qos: 1 }).catch(() => failed++)
        }, 50)
        await twice
        await new Promise((resolve) => setTimeout(resolve, 1000)) // a second more on the third certificate
        clearInterval(timer)
        timer = undefined
        const last = published
        await expect.poll(() => received.size >= last, { timeout: 10_000, interval: 100 }).toBe(true)
        const missing = Array.from({ length: last }, (_, i) => i + 1).filter((n) => !received.has(n))
        expect({ last, failed, missing }).toEqual({ last, failed: 0, missing: [] })
        expect(last).toBeGreaterThan(1000)

        // Three certificates: the claim had none to show, each renewal showed the one before.
        const stored = (await cache.get(credentialKey(url, DATA)))?.config.device.certificate as string
        const third = fingerprint(stored)
        expect(presented).toHaveLength(3)
        expect(presented[0]).toBeUndefined()
        expect(new Set(presented).size).toBe(3)
        expect(presented).not.toContain(third)
        // Connected now, with the third: the TLS socket's own certificate is the stored one.
        expect(client.connected).toBe(true)
        const local = (client.stream as TLSSocket).getCertificate() as { fingerprint256?: string } | null
        expect(local?.fingerprint256).toBe(third)
        expect(broker.accepted().filter((c) => c.username === NAME)).toHaveLength(3)
        expect(events.filter(([name]) => name === 'renewing').map(([, e]) => e)).toMatchObject([
          { credential: 'certificate', expired: false, attempt: 1 },
          { credential: 'certificate', expired: false, attempt: 1 },
        ])
        expect(events.filter(([name, e]) => name === 'error' && e.fatal === false)).toEqual([])
        expect(serverErrors).toEqual([])
      } finally {
        if (timer !== undefined) clearInterval(timer)
        await device?.endAsync(true)
        await reader.endAsync(true)
      }
    }, 180_000)

    test('a renewed certificate mosquitto refuses leaves the device on the old one, reported; the cache keeps the old', async () => {
      // Six-second certificates (a renewal 4 s in), the renewal answered one of a CA mosquitto does not trust.
      issuer = issueCertificates({ ca: issuing, validitySeconds: 6 })
      const other = await authority('a CA mosquitto does not trust')
      const cache = new FileCredentialStore(join(dir, 'refused.json'))
      const { boot: bootstrap, events } = boot({
        url,
        data: { imei: '860000000000021' },
        tls: { ca: tls.ca },
        mqtt: { ca: tls.ca },
        certificate: true,
        cache,
        retry: { retries: 1, minTimeout: 20, maxTimeout: 50 },
        reconnect: { minDelay: 20, maxDelay: 50 },
      })
      const client = await bootstrap.connect()
      try {
        const key = credentialKey(url, { imei: '860000000000021' })
        const first = (await cache.get(key))?.config.device.certificate as string
        issuer = issueCertificates({ ca: other, validitySeconds: 6 })
        const since = broker.mark()
        const reported = new Promise<{ error: Error; fatal: boolean }>((resolve, reject) => {
          const limit = setTimeout(() => reject(new Error('no error event within 15 s')), 15_000)
          bootstrap.once('error', (event) => {
            clearTimeout(limit)
            resolve(event)
          })
        })
        const { error, fatal } = await reported
        // mosquitto (OpenSSL) refuses with the alert "unknown ca": a refusal, so back to the old one at once.
        expect(fatal).toBe(false)
        expect(error).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', returnCode: 0 })
        expect(error.message).toMatch(/renewed client certificate .*: the device stays on the previous ones/)
        expect(events.filter(([name]) => name === 'auth-rejected').map(([, e]) => e)).toEqual([
          { returnCode: 0, source: 'server', reprovision: false },
        ])
        await broker.waitForLog(/^Sending CONNACK to \S+ \([01], 0\)$/, since) // session present or not: cleanSession 0
        await expect.poll(() => client.connected).toBe(true)
        expect(client.options.cert).toBe(first)
        const local = (client.stream as TLSSocket).getCertificate() as { fingerprint256?: string } | null
        expect(local?.fingerprint256).toBe(fingerprint(first))
        expect((await cache.get(key))?.config.device.certificate).toBe(first)
        expect(events.some(([name]) => name === 'renewed')).toBe(false)
        expect(serverErrors).toEqual([])
      } finally {
        await client.endAsync(true)
        issuer = issueCertificates({ ca: issuing, validitySeconds: 60 })
      }
    }, 30_000)
  },
)
