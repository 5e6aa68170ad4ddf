import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type CheckReport, checkProvisioningServer } from '../packages/mqtt-bootstrap-server/src/index.js'
import { configAnswer, DEVICE, json, type RecordedRequest, startHttpsServer } from './helpers/https-server.js'
import { KNOWN, startReferenceServer, writeRegistry } from './helpers/reference-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

let tls: TlsFixture
let dir: string
beforeAll(async () => {
  tls = await tlsFixture()
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-check-'))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const statusOf = (report: CheckReport) => Object.fromEntries(report.checks.map((c) => [c.id, c.status]))
const failures = (report: CheckReport) => report.checks.filter((c) => c.status === 'fail').map((c) => c.id)

/** A server that answers the known device with `known`, anyone else with `others` (a refusal by default). */
async function brokenServer(
  known: (res: ServerResponse) => void,
  others: (res: ServerResponse) => void = (res) => json(res, 200, { code: '10001' }, { 'cache-control': 'no-store' }),
  certificate: Partial<TlsFixture> = {},
) {
  return startHttpsServer({ ...tls, ...certificate }, (req: RecordedRequest, res) =>
    JSON.parse(req.body).imei === KNOWN.imei ? known(res) : others(res),
  )
}

const good =
  (connect: Record<string, unknown> = {}, device: Record<string, unknown> = DEVICE) =>
  (res: ServerResponse) =>
    json(res, 200, configAnswer({ host: 'broker.example:8883', ...connect } as { host: string }, device), {
      'cache-control': 'no-store',
    })

describe('the conformance checker', () => {
  test('the reference server passes every check', async () => {
    const registry = join(dir, 'devices.json')
    writeRegistry(registry, 'mqtts://broker.example:8883')
    const server = await startReferenceServer(tls, registry)
    try {
      const report = await checkProvisioningServer({ url: server.url, data: KNOWN, tls: { ca: tls.ca } })
      expect(failures(report)).toEqual([])
      expect(report.ok).toBe(true)
      expect(report.checks.every((c) => c.status === 'pass')).toBe(true)
      expect(JSON.stringify(report)).not.toContain(DEVICE.deviceSecret)
    } finally {
      await server.close()
    }
  })

  const violations: Array<[string, () => Promise<{ url: string; close(): Promise<void> }>, string[], RegExp]> = [
    [
      'a certificate for another host',
      () => brokenServer(good(), undefined, tls.wrongHost),
      ['tls'],
      /ERR_TLS_CERT_ALTNAME_INVALID/,
    ],
    [
      'Content-Type text/plain',
      () =>
        brokenServer((res) =>
          res.writeHead(200, { 'content-type': 'text/plain' }).end(JSON.stringify(configAnswer({ host: 'b:1' }))),
        ),
      ['contentType'],
      /text\/plain/,
    ],
    [
      'a body that is not JSON',
      () => brokenServer((res) => res.writeHead(200, { 'content-type': 'application/json' }).end('<ok/>')),
      ['json'],
      /not JSON/,
    ],
    ['HTTP 500', () => brokenServer((res) => json(res, 500, { code: '77777' })), ['status', 'code'], /HTTP 500/],
    [
      '"10001" for the known device',
      () => brokenServer((res) => json(res, 200, { code: '10001' })),
      ['code'],
      /"10001"/,
    ],
    ['qos 7', () => brokenServer(good({ qos: 7 })), ['qos'], /connect\.qos/],
    ['cleanSession 2', () => brokenServer(good({ cleanSession: 2 })), ['cleanSession'], /cleanSession/],
    [
      'a host with an ftp scheme',
      () => brokenServer(good({ host: 'ftp://broker.example' })),
      ['host'],
      /connect\.host/,
    ],
    [
      'no deviceName',
      () => brokenServer(good({}, { productKey: 'pk', deviceSecret: 's' })),
      ['device'],
      /device\.deviceName/,
    ],
    [
      'an expiresAt in the past (issue 18)',
      () => brokenServer(good({}, { ...DEVICE, expiresAt: '2020-01-01T00:00:00Z' })),
      ['device'],
      /^device\.expiresAt 2020-01-01T00:00:00Z is in the past by this clock/,
    ],
    [
      'an expiresAt a second ago',
      () => brokenServer(good({}, { ...DEVICE, expiresAt: new Date(Date.now() - 1000).toISOString() })),
      ['device'],
      /is in the past by this clock: the secret has expired on arrival/,
    ],
    [
      'an expiresAt on a date that does not exist',
      () => brokenServer(good({}, { ...DEVICE, expiresAt: '2099-02-30T00:00:00Z' })),
      ['device'],
      /^device\.expiresAt "2099-02-30T00:00:00Z" is not a date that exists$/,
    ],
    [
      'an expiresAt without an offset',
      () => brokenServer(good({}, { ...DEVICE, expiresAt: '2099-01-01T00:00:00' })),
      ['device'],
      /device\.expiresAt/,
    ],
    ['credentials for anyone', () => brokenServer(good(), good()), ['unknownDevice'], /anyone/],
    [
      '"77777" for an unknown device',
      () => brokenServer(good(), (res) => json(res, 200, { code: '77777' })),
      ['unknownDevice'],
      /retry/,
    ],
    [
      'a refusal sent with HTTP 500',
      () => brokenServer(good(), (res) => json(res, 500, { code: '10001' })),
      ['unknownDevice'],
      /HTTP 500.*retry/,
    ],
    [
      'a refusal sent with HTTP 429',
      () => brokenServer(good(), (res) => json(res, 429, { code: '10001' })),
      ['unknownDevice'],
      /HTTP 429.*retry/,
    ],
    [
      'a refusal with the reserved "99999"',
      () => brokenServer(good(), (res) => json(res, 200, { code: '99999' })),
      ['unknownDevice'],
      /"99999" must not be "99999", a code the contract reserves/,
    ],
    [
      'a slow answer',
      () => brokenServer((res) => setTimeout(() => good()(res), 400)),
      ['latency'],
      /ms \(at most 150 ms\)/,
    ],
  ]
  test.each(violations)('%s fails, naming the reason', async (_name, start, failed, reason) => {
    const server = await start()
    try {
      const report = await checkProvisioningServer({
        url: server.url,
        data: KNOWN,
        tls: { ca: tls.ca },
        maxLatencyMs: 150,
      })
      expect(report.ok).toBe(false)
      expect(failures(report)).toEqual(failed)
      const detail = report.checks
        .filter((c) => c.status === 'fail')
        .map((c) => c.detail)
        .join(' ')
      expect(detail).toMatch(reason)
      expect(JSON.stringify(report)).not.toContain(DEVICE.deviceSecret)
    } finally {
      await server.close()
    }
  })

  test('plain http fails the HTTPS check (and is still judged on the rest)', async () => {
    const server = http.createServer((req, res) => {
      let body = ''
      req.on('data', (chunk: Buffer) => {
        body += chunk.toString()
      })
      req.on('end', () => (JSON.parse(body).imei === KNOWN.imei ? good()(res) : json(res, 200, { code: '10001' })))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`
      const report = await checkProvisioningServer({ url, data: KNOWN })
      expect(failures(report)).toEqual(['https'])
      expect(statusOf(report)).toMatchObject({ tls: 'skip', code: 'pass', host: 'pass' })
    } finally {
      server.close()
    }
  })

  test('an expiresAt in the future passes, its detail saying when', async () => {
    const inAMonth = new Date(Date.now() + 30 * 86_400_000 + 60_000).toISOString()
    const soon = new Date(Date.now() + 90_000).toISOString().replace('Z', '+00:00')
    for (const [expiresAt, when] of [
      [inAMonth, /in 30 days$/],
      [soon, /in (89|90) s$/],
    ] as const) {
      const server = await brokenServer(good({}, { ...DEVICE, expiresAt }))
      try {
        const report = await checkProvisioningServer({ url: server.url, data: KNOWN, tls: { ca: tls.ca } })
        expect(failures(report)).toEqual([])
        const device = report.checks.find((c) => c.id === 'device')
        expect(device?.status).toBe('pass')
        expect(device?.detail).toMatch(new RegExp(`^device ok; expiresAt ${expiresAt.replace(/[.+]/g, '\\$&')}, `))
        expect(device?.detail).toMatch(when)
      } finally {
        await server.close()
      }
    }
  })

  test('a missing Cache-Control: no-store is a warning, not a failure', async () => {
    const server = await brokenServer((res) => json(res, 200, configAnswer({ host: 'b:1' })))
    try {
      const report = await checkProvisioningServer({ url: server.url, data: KNOWN, tls: { ca: tls.ca } })
      expect(report.ok).toBe(true)
      expect(statusOf(report).noStore).toBe('warn')
    } finally {
      await server.close()
    }
  })
})
