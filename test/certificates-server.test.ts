/**
 * Certificates on the server (issue 17): the handler's `issue` option over a real HTTPS server on 127.0.0.1, a real
 * `serve --issuing-ca/--issuing-key` process (with the JSON registry, and with --database on a real PostgreSQL), and
 * the checker's `certificate` checks (the renewal among them, issue 18). Certificates are judged by the openssl command
 * line and by the device's own chain check; CSRs come from the device's code and from openssl. Only the clock is fake.
 */
import { execFileSync } from 'node:child_process'
import { createHmac, randomBytes, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  checkCertificateChain,
  createCertificateRequest,
  createDeviceKey,
  type DeviceKey,
} from '../packages/mqtt-bootstrap/src/contract-entry.js'
import {
  type CertificateIssuer,
  type CheckReport,
  checkProvisioningServer,
  createProvisioningHandler,
  DeviceRegistry,
  issueCertificates,
  PostgresRegistry,
  type ProvisioningHandlerOptions,
  type Reclaim,
  SERVER_CODES,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { runTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { configAnswer, DEVICE, json, startHttpsServer } from './helpers/https-server.js'
import { type OpensslCa, opensslCa } from './helpers/openssl-ca.js'
import { type Postgres, postgresSkipReason, startPostgres } from './helpers/postgres.js'
import { KNOWN, writeRegistry } from './helpers/reference-server.js'
import { SERVE_CLI, useServeProcesses } from './helpers/serve.js'
import { signClaimIndependently } from './helpers/sign-claim.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const HOST = 'mqtts://broker.example:8883'
const GROUP_KEY = randomBytes(32).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
for (const secret of [GROUP_KEY, derive(KNOWN.imei), DEVICE.deviceSecret]) suite.secret(secret)

let dir: string
let files = 0
const file = (name: string, text: string, mode = 0o644) => {
  const path = join(dir, `${++files}-${name}`)
  writeFileSync(path, text, { mode })
  return path
}
const openssl = (args: string[]) =>
  execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).toString()

let tls: TlsFixture
let ca: OpensslCa
let caFile: string
let caKeyFile: string
let unsignedRegistry: string
let signedRegistry: string
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-certificates-server-'))
  tls = await tlsFixture()
  ca = opensslCa('mqtt-bootstrap issuing CA')
  suite.secret(ca.key)
  caFile = file('issuing-ca.pem', ca.cert)
  caKeyFile = file('issuing-ca.key', ca.key, 0o600)
  unsignedRegistry = file('devices.json', '')
  writeRegistry(unsignedRegistry, HOST)
  signedRegistry = join(dir, 'signed.json')
  writeFileSync(join(dir, 'group.key'), `${GROUP_KEY}\n`, { mode: 0o600 })
  writeRegistry(signedRegistry, HOST, { groupKeyFile: 'group.key', identity: 'imei' })
})
afterAll(() => {
  ca?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function deviceCsr(): Promise<{ key: DeviceKey; csr: string }> {
  const key = await createDeviceKey('p256')
  suite.secret(key.privateKeyPem)
  return { key, csr: createCertificateRequest(key) }
}

/** `openssl verify` of `chain` (leaf first) against the issuing CA, and the leaf's text. */
function opensslJudges(chain: string): { verify: string; text: string } {
  const leaf = file('leaf.pem', chain)
  return {
    verify: openssl(['verify', '-CAfile', caFile, '-purpose', 'sslclient', leaf]),
    text: openssl(['x509', '-in', leaf, '-noout', '-text']),
  }
}

interface Answer {
  status: number
  code: string
  message?: string
  result?: { device: Record<string, string | null>; connect: Record<string, unknown> }
}

async function post(agent: Agent, url: string, data: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await request(url, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof data === 'string' ? data : JSON.stringify(data),
  })
  return { status: response.statusCode, ...((await response.body.json()) as Omit<Answer, 'status'>) }
}

/**
 * The handler over the registry file on 127.0.0.1, port 0; `resolve` counted, errors kept. `clientCa`: client
 * certificates asked for (not required), from that CA, as `serve --issuing-ca` asks for them.
 */
async function startHandler(
  options: Partial<ProvisioningHandlerOptions> = {},
  registryPath = unsignedRegistry,
  clientCa?: string,
) {
  const registry = new DeviceRegistry(registryPath)
  const errors: unknown[] = []
  let resolved = 0
  const handler = createProvisioningHandler({
    resolve: (data, req) => {
      resolved++
      return registry.resolve(data, req)
    },
    onError: (error) => errors.push(error),
    ...options,
  })
  const mutual = clientCa === undefined ? {} : { requestCert: true, rejectUnauthorized: false, ca: clientCa }
  const server = https.createServer({ key: tls.key, cert: tls.cert, noDelay: true, ...mutual }, handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`
  const agent = new Agent({ connect: { ca: tls.ca } })
  return {
    url,
    errors,
    resolved: () => resolved,
    post: (data: unknown, headers?: Record<string, string>) => post(agent, url, data, headers),
    close: async () => {
      await agent.close()
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

const issuer = () => issueCertificates({ ca: { cert: ca.cert, key: ca.key }, validitySeconds: 86_400 })

describe('createProvisioningHandler({ issue })', () => {
  test("a claim with the device's CSR gets the configuration and a certificate for its key, CN the deviceName", async () => {
    const server = await startHandler({ issue: issuer() })
    try {
      const { key, csr } = await deviceCsr()
      const answer = await server.post({ ...KNOWN, csr })
      expect(answer.status).toBe(200)
      expect(answer.code).toBe('00000')
      const device = answer.result?.device ?? {}
      expect(device.deviceSecret).toBe(DEVICE.deviceSecret)
      const chain = device.certificate as string
      expect(checkCertificateChain(chain, key.publicKeyDer, Date.now())).toMatchObject({ ok: true })
      const { verify, text } = opensslJudges(chain)
      expect(verify).toMatch(/: OK/)
      expect(text).toMatch(/Subject: CN\s?=\s?device-001\n/)
      expect(text).toMatch(/CA:FALSE/)
      expect(server.errors).toEqual([])
    } finally {
      await server.close()
    }
  })

  test('a configuration with no secret is answered when a certificate is issued for it, and refused without a CSR', async () => {
    const device = { productKey: DEVICE.productKey, deviceName: 'certificate-only-device' }
    const server = await startHandler({
      issue: issuer(),
      resolve: () => ({ device, connect: { host: HOST, qos: 1, cleanSession: 1 } }),
    })
    try {
      const { key, csr } = await deviceCsr()
      const answer = await server.post({ ...KNOWN, csr })
      expect(answer).toMatchObject({ status: 200, code: '00000' })
      expect(answer.result?.device).toMatchObject({ ...device, deviceSecret: '', productSecret: null })
      const chain = answer.result?.device.certificate as string
      expect(checkCertificateChain(chain, key.publicKeyDer, Date.now())).toMatchObject({ ok: true })
      expect(server.errors).toEqual([])
      // Without a CSR the same configuration has no credential at all: the server's error, never an answer.
      expect(await server.post(KNOWN)).toMatchObject({ status: 500, code: '77777' })
      expect(String(server.errors[0])).toMatch(/invalid configuration: device\.deviceSecret/)
    } finally {
      await server.close()
    }
  })

  test('an openssl CSR asking for CA:TRUE and another name gets a CA:FALSE certificate named from the registry', async () => {
    const server = await startHandler({ issue: issuer() })
    try {
      const keyPath = join(dir, `${++files}-device.key`)
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath])
      const csrPath = join(dir, `${++files}-device.csr`)
      const ask = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']
      openssl(['req', '-new', '-key', keyPath, '-subj', '/CN=evil-root', ...ask, '-out', csrPath])
      const answer = await server.post({ ...KNOWN, csr: readFileSync(csrPath, 'utf8') })
      expect(answer.code).toBe('00000')
      const { verify, text } = opensslJudges(answer.result?.device.certificate as string)
      expect(verify).toMatch(/: OK/)
      expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE/)
      expect(text).toMatch(/Subject: CN\s?=\s?device-001\n/)
      expect(text).not.toMatch(/CA:TRUE|evil-root|Certificate Sign/)
    } finally {
      await server.close()
    }
  })

  test('an unusable CSR is "10008" before resolve is asked, its message naming the problem, never the CSR', async () => {
    const server = await startHandler({ issue: issuer() })
    try {
      const { csr } = await deviceCsr()
      const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64')
      der[der.length - 1] = (der[der.length - 1] as number) ^ 1
      const broken = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`
      for (const [value, problem] of [
        [broken, /signature that does not verify/],
        ['not a csr', /not one PEM block/],
        [42, /not a string/],
        [null, /not a string/],
      ] as const) {
        const answer = await server.post({ ...KNOWN, csr: value })
        expect(answer).toMatchObject({ status: 200, code: SERVER_CODES.BAD_CSR })
        expect(answer.message).toMatch(problem)
        expect(answer.message).not.toContain(der.toString('base64').slice(8, 40))
        expect(answer.result).toBeUndefined()
      }
      expect(server.resolved()).toBe(0)
      expect(SERVER_CODES.BAD_CSR).toBe('10008')
    } finally {
      await server.close()
    }
  })

  test('unusable CSRs count as failed claims: past the limit an unsigned one is answered 429 before any check', async () => {
    const server = await startHandler({ issue: issuer(), limits: { maxFailures: 3 } })
    try {
      const garbage = { ...KNOWN, csr: 'not a CSR' }
      for (let i = 0; i < 3; i++) expect(await server.post(garbage)).toMatchObject({ status: 200, code: '10008' })
      expect(await server.post(garbage)).toMatchObject({ status: 429, code: '77777' })
      expect(server.resolved()).toBe(0)
    } finally {
      await server.close()
    }
  })

  test('without csr the answer is as before; an unknown device with a CSR is "10001", no certificate made', async () => {
    let issued = 0
    const real = issuer()
    const counting: CertificateIssuer = {
      check: real.check,
      issue: (request, device) => {
        issued++
        return real.issue(request, device)
      },
    }
    const server = await startHandler({ issue: counting })
    try {
      const plain = await server.post(KNOWN)
      expect(plain.code).toBe('00000')
      expect(plain.result?.device).not.toHaveProperty('certificate')
      const { csr } = await deviceCsr()
      const unknown = await server.post({ imei: '869999999999999', csr })
      expect(unknown).toMatchObject({ status: 200, code: '10001' })
      const blocked = await server.post({ imei: '860000000000666', csr })
      expect(blocked).toMatchObject({ code: '10003' })
      expect(blocked.result).toBeUndefined()
      expect(issued).toBe(0)
    } finally {
      await server.close()
    }
  })

  test('without `issue`, csr is ignored (the seed contract)', async () => {
    const server = await startHandler()
    try {
      const answer = await server.post({ ...KNOWN, csr: 'anything at all' })
      expect(answer.code).toBe('00000')
      expect(answer.result?.device).not.toHaveProperty('certificate')
    } finally {
      await server.close()
    }
  })

  test('an issuer that fails, or answers no PEM chain, is the server\'s "77777" (HTTP 500), told to onError', async () => {
    const real = issuer()
    const failing: CertificateIssuer = {
      check: real.check,
      issue: () => {
        throw new Error('HSM unreachable')
      },
    }
    const junk: CertificateIssuer = { check: real.check, issue: async () => 'not a certificate' }
    let now = Date.now()
    const expiring = issueCertificates({ ca, validitySeconds: 60, clock: { now: () => now } })
    for (const [issue, told] of [
      [failing, /HSM unreachable/],
      [junk, /issue\(\) returned an invalid certificate/],
      [expiring, /issuing CA expired/],
    ] as const) {
      const server = await startHandler({ issue })
      try {
        now = Date.now() + 5 * 86_400_000 // the openssl CA is valid 2 days
        const answer = await server.post({ ...KNOWN, csr: (await deviceCsr()).csr })
        expect(answer).toMatchObject({ status: 500, code: '77777' })
        expect(answer.result).toBeUndefined()
        expect(server.errors).toHaveLength(1)
        expect((server.errors[0] as Error).message).toMatch(told)
      } finally {
        await server.close()
      }
    }
  })

  test('`issue` that is not an issuer is a TypeError', () => {
    for (const issue of [{}, { check: () => undefined }, 'ca.pem', null]) {
      expect(() => createProvisioningHandler({ resolve: () => undefined, issue } as never)).toThrow(
        /Expected `issue` to be a CertificateIssuer/,
      )
    }
  })

  test('signed claims: the CSR is part of the signed body; a re-claim with a new CSR is the same configuration', async () => {
    const reclaims: Reclaim[] = []
    const registry = new DeviceRegistry(signedRegistry)
    const server = await startHandler(
      { issue: issuer(), verify: registry.verifier(), onReclaim: (reclaim) => reclaims.push(reclaim) },
      signedRegistry,
    )
    try {
      for (let claim = 0; claim < 2; claim++) {
        const body = JSON.stringify({ ...KNOWN, csr: (await deviceCsr()).csr })
        const created = Math.floor(Date.now() / 1000)
        const signed = signClaimIndependently({
          key: derive(KNOWN.imei),
          keyId: KNOWN.imei,
          url: server.url,
          body,
          created,
        })
        const answer = await server.post(body, signed.headers)
        expect(answer.code).toBe('00000')
        expect(answer.result?.device.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/)
      }
      expect(reclaims).toHaveLength(1)
      expect(reclaims[0]?.sameConfiguration).toBe(true)
      // The CSR is covered by the signature: one changed after signing is refused.
      const body = JSON.stringify({ ...KNOWN, csr: (await deviceCsr()).csr })
      const created = Math.floor(Date.now() / 1000)
      const signed = signClaimIndependently({
        key: derive(KNOWN.imei),
        keyId: KNOWN.imei,
        url: server.url,
        body,
        created,
      })
      // Sent as signed it would pass; only the CSR differs.
      expect(await server.post(body, signed.headers)).toMatchObject({ code: '00000' })
      const again = signClaimIndependently({
        key: derive(KNOWN.imei),
        keyId: KNOWN.imei,
        url: server.url,
        body,
        created,
      })
      const swapped = JSON.stringify({ ...KNOWN, csr: (await deviceCsr()).csr })
      expect(await server.post(swapped, again.headers)).toMatchObject({ status: 401, code: '10004' })
    } finally {
      await server.close()
    }
  })
})

describe('checkProvisioningServer({ certificate: true })', () => {
  const certificateIds = [
    'certificate',
    'certificateKey',
    'certificateSubject',
    'certificateNotCa',
    'certificateChain',
    'badCsr',
    'certificateRenewal',
  ]
  const statusOf = (report: CheckReport) => Object.fromEntries(report.checks.map((c) => [c.id, c.status]))

  test('a server with issue passes every certificate check, signed claims too; it renews without client certificates', async () => {
    const registry = new DeviceRegistry(signedRegistry)
    // No client certificates asked for: the renewal is answered as the signed claim it also is.
    const server = await startHandler({ issue: issuer(), verify: registry.verifier() }, signedRegistry)
    try {
      const report = await checkProvisioningServer({
        url: server.url,
        data: KNOWN,
        tls: { ca: tls.ca },
        attestation: { keyId: KNOWN.imei, key: derive(KNOWN.imei) },
        certificate: true,
      })
      expect(report.checks.filter((c) => c.status === 'fail')).toEqual([])
      expect(report.ok).toBe(true)
      const status = statusOf(report)
      for (const id of certificateIds) expect(status[id], id).toBe('pass')
      for (const id of ['unsigned', 'replay', 'tampered', 'otherKey']) expect(status[id], id).toBe('pass')
      const detail = (id: string) => report.checks.find((c) => c.id === id)?.detail
      expect(detail('certificateSubject')).toBe('CN "device-001"')
      expect(detail('badCsr')).toBe('"10008" (HTTP 200)')
      expect(detail('certificateRenewal')).toMatch(
        /^a certificate for the new key, CN "device-001", valid until .*\(whether the server took it for a renewal or a new claim cannot be seen from here\)$/,
      )
    } finally {
      await server.close()
    }
  })

  test('certificateRenewal against renewals recognised; it fails when the renewal is answered another CN', async () => {
    const registry = new DeviceRegistry(signedRegistry)
    const seen: boolean[] = []
    const recognising = await startHandler(
      { issue: issuer(), verify: registry.verifier(), onRequest: ({ renewal }) => seen.push(renewal) },
      signedRegistry,
      ca.cert,
    )
    const options = {
      data: KNOWN,
      tls: { ca: tls.ca },
      attestation: { keyId: KNOWN.imei, key: derive(KNOWN.imei) },
      certificate: true,
    }
    try {
      const report = await checkProvisioningServer({ url: recognising.url, ...options })
      expect(report.checks.filter((c) => c.status === 'fail')).toEqual([])
      expect(statusOf(report).certificateRenewal).toBe('pass')
      await until(() => seen.includes(true), 2000, 'the renewal recognised')
      expect(seen.filter(Boolean)).toHaveLength(1)
    } finally {
      await recognising.close()
    }
    // A server that answers a request with a client certificate the configuration of another device.
    const other = { ...DEVICE, deviceName: 'someone-else' }
    const presents = (req: IncomingMessage) =>
      Buffer.isBuffer((req.socket as import('node:tls').TLSSocket).getPeerCertificate?.()?.raw)
    const real = issuer()
    const wrong = await startHandler(
      {
        issue: { check: real.check, issue: real.issue }, // no renewal(): a custom issuer
        resolve: (data, req) =>
          presents(req)
            ? { device: other, connect: { host: HOST } }
            : new DeviceRegistry(unsignedRegistry).resolve(data, req),
      },
      unsignedRegistry,
      ca.cert,
    )
    try {
      const report = await checkProvisioningServer({
        url: wrong.url,
        data: KNOWN,
        tls: { ca: tls.ca },
        certificate: true,
      })
      expect(report.ok).toBe(false)
      expect(report.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(['certificateRenewal'])
      expect(report.checks.find((c) => c.id === 'certificateRenewal')?.detail).toBe(
        'the renewed certificate\'s CN is "someone-else", not "device-001" as before',
      )
    } finally {
      await wrong.close()
    }
  })

  test('certificateRenewal fails when the renewal is refused', async () => {
    // Certificates for the known device's claims; its third request (claim, broken CSR, renewal) refused "10004".
    const real = issuer()
    let known = 0
    const server = await startHttpsServer(tls, async (recorded, response: ServerResponse) => {
      const data = JSON.parse(recorded.body) as { imei: string; csr: unknown }
      if (data.imei !== KNOWN.imei) return json(response, 200, { code: '10001' })
      if (++known === 3) return json(response, 401, { code: '10004' })
      const checked = await real.check(data.csr)
      if (!checked.ok) return json(response, 200, { code: '10008' })
      const certificate = await real.issue(checked.request, DEVICE)
      return json(response, 200, configAnswer({ host: HOST }, { ...DEVICE, certificate }), {
        'cache-control': 'no-store',
      })
    })
    try {
      const report = await checkProvisioningServer({
        url: server.url,
        data: KNOWN,
        tls: { ca: tls.ca },
        certificate: true,
      })
      expect(report.checks.filter((c) => c.status === 'fail').map((c) => c.id)).toEqual(['certificateRenewal'])
      expect(report.checks.find((c) => c.id === 'certificateRenewal')?.detail).toBe(
        'the renewal was answered "10004" (HTTP 401), not "00000"',
      )
      expect(known).toBe(3)
    } finally {
      await server.close()
    }
  })

  test('a server that ignores the CSR fails: no certificate, and the broken CSR answered "00000"', async () => {
    const server = await startHandler()
    try {
      const report = await checkProvisioningServer({
        url: server.url,
        data: KNOWN,
        tls: { ca: tls.ca },
        certificate: true,
      })
      expect(report.ok).toBe(false)
      const status = statusOf(report)
      expect(status.certificate).toBe('fail')
      expect(report.checks.find((c) => c.id === 'certificate')?.detail).toMatch(/ignored the CSR/)
      expect(status.badCsr).toBe('fail')
      for (const id of [
        'certificateKey',
        'certificateSubject',
        'certificateNotCa',
        'certificateChain',
        'certificateRenewal',
      ]) {
        expect(status[id]).toBe('skip')
      }
      // The contract checks themselves still pass.
      expect(status.code).toBe('pass')
      expect(status.device).toBe('pass')
    } finally {
      await server.close()
    }
  })

  test('a certificate for another key, named otherwise, a CA, sent alone: each check fails', async () => {
    // Signed by openssl for a CSR of its own, CN someone-else, CA:TRUE; every request answered "00000".
    const keyPath = join(dir, `${++files}-other.key`)
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath])
    const csrPath = join(dir, `${++files}-other.csr`)
    openssl(['req', '-new', '-key', keyPath, '-subj', '/CN=x', '-out', csrPath])
    const ext = file('ca.ext', 'basicConstraints=critical,CA:TRUE\n')
    const caKey = file('ca-key.pem', ca.key, 0o600)
    const wrong = openssl([
      'x509',
      '-req',
      '-in',
      csrPath,
      '-CA',
      caFile,
      '-CAkey',
      caKey,
      '-set_serial',
      '99',
      '-subj',
      '/CN=someone-else',
      '-days',
      '1',
      '-extfile',
      ext,
    ])
    const server = await startHttpsServer(tls, (_request, response: ServerResponse) =>
      json(response, 200, configAnswer({ host: HOST }, { ...DEVICE, certificate: wrong })),
    )
    try {
      const report = await checkProvisioningServer({
        url: server.url,
        data: KNOWN,
        tls: { ca: tls.ca },
        certificate: true,
      })
      const status = statusOf(report)
      expect(status.certificate).toBe('pass')
      for (const id of ['certificateKey', 'certificateSubject', 'certificateNotCa', 'certificateChain', 'badCsr']) {
        expect(status[id], id).toBe('fail')
      }
      // Nothing a device would keep: no renewal is tried.
      expect(status.certificateRenewal).toBe('skip')
      const detail = (id: string) => report.checks.find((c) => c.id === id)?.detail
      expect(detail('certificateSubject')).toBe('CN "someone-else", deviceName "device-001"')
      expect(detail('certificateChain')).toMatch(/only the leaf/)
      expect(detail('badCsr')).toMatch(/answered "00000"/)
      // What the checker sent: the known data and a CSR, its private key nowhere.
      const sent = JSON.parse(server.requests[0]?.body ?? '{}') as Record<string, string>
      expect(sent.imei).toBe(KNOWN.imei)
      expect(sent.csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/)
      expect(server.requests.map((r) => r.body).join('')).not.toMatch(/PRIVATE KEY/)
    } finally {
      await server.close()
    }
  })

  test('without the option the certificate checks are not listed; bad options throw before any request', async () => {
    const server = await startHttpsServer(tls, (_request, response: ServerResponse) =>
      json(response, 200, configAnswer({ host: HOST })),
    )
    try {
      const report = await checkProvisioningServer({ url: server.url, data: KNOWN, tls: { ca: tls.ca } })
      for (const id of certificateIds) expect(report.checks.map((c) => c.id)).not.toContain(id)
      const asked = server.requests.length
      for (const options of [
        { data: 'imei', certificate: true },
        { data: ['imei'], certificate: true },
        { data: { ...KNOWN, csr: 'mine' }, certificate: true },
        { data: KNOWN, certificate: 'yes' },
      ]) {
        await expect(
          checkProvisioningServer({ url: server.url, tls: { ca: tls.ca }, ...options } as never),
        ).rejects.toMatchObject({
          code: 'ERR_INVALID_OPTION',
        })
      }
      expect(server.requests.length).toBe(asked)
    } finally {
      await server.close()
    }
  })
})

describe('serve --issuing-ca --issuing-key', () => {
  const processes = useServeProcesses()

  const serve = (...args: string[]) =>
    processes.serve([
      '--registry',
      unsignedRegistry,
      '--port',
      '0',
      '--ca-out',
      join(dir, `${++files}-ca.pem`),
      ...args,
    ])

  test('issues certificates openssl verifies; check --certificate passes against it', { timeout: 60_000 }, async () => {
    const caOut = join(dir, `${++files}-server-ca.pem`)
    const started = await processes.serve([
      '--registry',
      unsignedRegistry,
      '--port',
      '0',
      '--ca-out',
      caOut,
      '--issuing-ca',
      caFile,
      '--issuing-key',
      caKeyFile,
      '--certificate-validity',
      '3600',
    ])
    expect(started.output()).toContain(
      `certificates: for a CSR sent with a claim (CN the deviceName), by the CA in ${caFile}, valid 3600 s (never past the CA's own)`,
    )
    const agent = new Agent({ connect: { ca: readFileSync(caOut, 'utf8') } })
    try {
      const { key, csr } = await deviceCsr()
      const answer = await post(agent, started.url, { ...KNOWN, csr })
      expect(answer.code).toBe('00000')
      const chain = answer.result?.device.certificate as string
      expect(opensslJudges(chain).verify).toMatch(/: OK/)
      expect(checkCertificateChain(chain, key.publicKeyDer, Date.now())).toMatchObject({ ok: true })
      const leaf = new X509Certificate(chain)
      expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBe((3600 + 300) * 1000)
      const bad = await post(agent, started.url, { ...KNOWN, csr: 'nope' })
      expect(bad.code).toBe('10008')
      await until(() => / POST \/bootstrap 200 10008 /.test(started.output()), 5000, 'the 10008 line')

      const check = await runTs(SERVE_CLI, [
        'check',
        started.url,
        '--data',
        JSON.stringify(KNOWN),
        '--ca',
        caOut,
        '--certificate',
      ])
      expect(check.code, check.output).toBe(0)
      expect(check.output).toMatch(/PASS\s+the certificate's CN is the answer's deviceName\s+CN "device-001"/)
      expect(check.output).toMatch(/PASS\s+refuses a CSR whose signature does not verify/)
      expect(check.output).not.toMatch(/PRIVATE KEY/)
    } finally {
      await agent.close()
    }
    expect(started.output()).not.toContain(ca.key.split('\n')[1])
  })

  test('the default validity is 30 days, said at start', { timeout: 30_000 }, async () => {
    const started = await serve('--issuing-ca', caFile, '--issuing-key', caKeyFile)
    // The openssl CA is valid 2 days: the certificates are capped to it.
    expect(started.output()).toMatch(/valid 30 days \(never past the CA's own\)/)
  })

  test('usage errors exit 2 before listening, naming the option and file, never quoting the key', {
    timeout: 60_000,
  }, async () => {
    const loose = file('loose.key', ca.key, 0o644)
    const other = opensslCa('another CA')
    const otherKey = file('other.key', other.key, 0o600)
    other.close()
    const leafCa = file('tls-leaf.pem', tls.cert)
    const cases: Array<[string[], RegExp]> = [
      [['--issuing-ca', caFile], /--issuing-ca and --issuing-key go together/],
      [['--issuing-key', caKeyFile], /--issuing-ca and --issuing-key go together/],
      [['--certificate-validity', '60'], /--certificate-validity goes with --issuing-ca and --issuing-key/],
      [
        ['--issuing-ca', caFile, '--issuing-key', loose],
        new RegExp(`readable by others \\(mode 0644\\): chmod 600 ${loose}`),
      ],
      [
        ['--issuing-ca', caFile, '--issuing-key', otherKey],
        new RegExp(`--issuing-key ${otherKey} to be the private key of --issuing-ca ${caFile}`),
      ],
      [['--issuing-ca', leafCa, '--issuing-key', file('tls.key', tls.key, 0o600)], /to be a CA certificate/],
      [['--issuing-ca', caKeyFile, '--issuing-key', caKeyFile], /--issuing-ca: .* is a private key, not a certificate/],
      [
        ['--issuing-ca', caFile, '--issuing-key', caKeyFile, '--certificate-validity', '0'],
        /--certificate-validity must be a whole number of seconds above 0/,
      ],
      [
        ['--issuing-ca', caFile, '--issuing-key', caKeyFile, '--certificate-validity', '1d'],
        /--certificate-validity must be/,
      ],
      [
        ['--issuing-ca', caFile, '--issuing-key', join(dir, 'missing.key')],
        /--issuing-key: cannot read .* \(no such file\)/,
      ],
    ]
    for (const [args, message] of cases) {
      const run = await runTs(SERVE_CLI, [
        'serve',
        '--registry',
        unsignedRegistry,
        '--port',
        '0',
        '--ca-out',
        join(dir, `${++files}-ca.pem`),
        ...args,
      ])
      expect(run.code, `${args.join(' ')}: ${run.output}`).toBe(2)
      expect(run.output).toMatch(message)
      expect(run.output).not.toMatch(/listening/)
      for (const key of [ca.key, other.key, tls.key]) expect(run.output).not.toContain(key.split('\n')[1])
    }
  })
})

describe.skipIf(postgresSkipReason())('serve --database --issuing-ca: a bad CSR takes no triplet from the pool', () => {
  const processes = useServeProcesses()
  let pg: Postgres
  beforeAll(async () => {
    pg = await startPostgres()
  }, 60_000)
  afterAll(async () => {
    await pg?.stop()
  })

  const IMEIS = ['860000000000001', '860000000000002'] as const
  for (const imei of IMEIS) suite.secret(derive(imei))
  const SECRET = 'FAKE-pool-secret-0001'
  suite.secret(SECRET)

  test('one triplet: a bad CSR is "10008" and leaves it; the next device gets it with a certificate', {
    timeout: 120_000,
  }, async () => {
    const db = await pg.database()
    const registry = (command: string, ...args: string[]) =>
      runTs(SERVE_CLI, ['registry', command, '--database', db, ...args], { timeoutMs: 60_000 })
    const keyFile = join(dir, 'group.key')
    for (const args of [
      ['migrate'],
      ['configure', '--host', HOST, '--group-key-file', keyFile],
      ['import', '--csv', file('pool.csv', `ProductKey,DeviceName,DeviceSecret\na1FakeProd,pool-device-1,${SECRET}\n`)],
      ['allow', '--identity', ...IMEIS],
    ]) {
      const done = await registry(...(args as [string, ...string[]]))
      expect(done.code, done.output).toBe(0)
    }
    const caOut = join(dir, `${++files}-db-ca.pem`)
    const started = await processes.serve([
      '--database',
      db,
      '--port',
      '0',
      '--ca-out',
      caOut,
      '--issuing-ca',
      caFile,
      '--issuing-key',
      caKeyFile,
    ])
    expect(started.output()).toMatch(/\(1 triplets, 1 free\)/)
    const agent = new Agent({ connect: { ca: readFileSync(caOut, 'utf8') } })
    const claim = (imei: string, csr: string) => {
      const body = JSON.stringify({ imei, csr })
      const created = Math.floor(Date.now() / 1000)
      const signed = signClaimIndependently({ key: derive(imei), keyId: imei, url: started.url, body, created })
      return post(agent, started.url, body, signed.headers)
    }
    try {
      expect(await claim(IMEIS[0], 'not a CSR')).toMatchObject({ code: '10008' })
      const { key, csr } = await deviceCsr()
      const second = await claim(IMEIS[1], csr)
      expect(second.code).toBe('00000')
      expect(second.result?.device.deviceName).toBe('pool-device-1')
      const chain = second.result?.device.certificate as string
      expect(checkCertificateChain(chain, key.publicKeyDer, Date.now())).toMatchObject({ ok: true })
      expect(opensslJudges(chain).text).toMatch(/Subject: CN\s?=\s?pool-device-1\n/)
      // The pool is empty now: the first device, this time with a good CSR, finds no triplet left.
      expect(await claim(IMEIS[0], (await deviceCsr()).csr)).toMatchObject({ code: '10006' })
    } finally {
      await agent.close()
    }
  })

  test("renewals: the identity's own triplet by its certificate, never a new one from the pool; each audited", {
    timeout: 60_000,
  }, async () => {
    const registry = await PostgresRegistry.open({ connectionString: await pg.database() })
    const SECRETS = ['FAKE-renewal-secret-0001', 'FAKE-renewal-secret-0002']
    for (const secret of SECRETS) suite.secret(secret)
    const handler = createProvisioningHandler({
      resolve: registry.resolve,
      verify: registry.verifier(),
      issue: issuer(),
      claims: registry.claims,
      onRequest: registry.audit,
    })
    const server = https.createServer(
      { key: tls.key, cert: tls.cert, noDelay: true, requestCert: true, rejectUnauthorized: false, ca: ca.cert },
      handler,
    )
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`
    const agents: Agent[] = []
    const send = (data: object, options: { signed?: boolean; client?: { cert: string; key: string } } = {}) => {
      const agent = new Agent({ connect: { ca: tls.ca, ...options.client } })
      agents.push(agent)
      const body = JSON.stringify(data)
      const imei = (data as { imei: string }).imei
      const created = Math.floor(Date.now() / 1000)
      const headers = options.signed
        ? signClaimIndependently({ key: derive(imei), keyId: imei, url, body, created }).headers
        : {}
      return post(agent, url, body, headers)
    }
    try {
      await registry.migrate()
      // Any signed identity gets a triplet: a renewal must not be a way around the signature to one.
      await registry.configure({
        attestation: { groupKeyFile: join(dir, 'group.key') },
        connect: { host: HOST },
        claims: 'any-signed',
      })
      await registry.importTriplets(
        SECRETS.map((deviceSecret, i) => ({ productKey: 'a1FakeProd', deviceName: `renew-${i + 1}`, deviceSecret })),
      )
      const first = await deviceCsr()
      const claimed = await send({ imei: IMEIS[0], csr: first.csr }, { signed: true })
      expect(claimed).toMatchObject({ status: 200, code: '00000' })
      expect(claimed.result?.device.deviceName).toBe('renew-1')
      const current = { cert: claimed.result?.device.certificate as string, key: first.key.privateKeyPem }

      const next = await deviceCsr()
      const renewed = await send({ imei: IMEIS[0], csr: next.csr }, { client: current })
      expect(renewed).toMatchObject({ status: 200, code: '00000' })
      expect(renewed.result?.device).toMatchObject({ deviceName: 'renew-1', deviceSecret: SECRETS[0] })
      const chain = renewed.result?.device.certificate as string
      expect(checkCertificateChain(chain, next.key.publicKeyDer, Date.now())).toMatchObject({ ok: true })
      // Another identity, never claimed: with renew-1's certificate it gets nothing, and the pool keeps its triplet.
      expect(await send({ imei: IMEIS[1], csr: next.csr }, { client: current })).toEqual({ status: 401, code: '10004' })
      expect(await registry.counts()).toMatchObject({ total: 2, free: 1 })
      // Under an allow-list: not on it, "10001" as for a claim; on it without a triplet yet, "10004" and none taken.
      await registry.configure({ claims: 'allow-list' })
      expect(await send({ imei: IMEIS[1], csr: next.csr }, { client: current })).toEqual({ status: 200, code: '10001' })
      await registry.allow([IMEIS[1]])
      expect(await send({ imei: IMEIS[1], csr: next.csr }, { client: current })).toEqual({ status: 401, code: '10004' })
      expect(await registry.counts()).toMatchObject({ total: 2, free: 1 })
      await registry.revoke([IMEIS[0]])
      expect(await send({ imei: IMEIS[0], csr: next.csr }, { client: current })).toMatchObject({ code: '10007' })
      const rows = async () =>
        (
          await registry.pool.query<{ identity: string; code: string; status: number; assigned: boolean }>(
            'SELECT identity, code, status, triplet_id IS NOT NULL AS assigned FROM mqtt_bootstrap.claims ORDER BY id',
          )
        ).rows
      // Each written by resolve with its claim (not after the answer, by onRequest's audit).
      expect(await rows()).toEqual([
        { identity: IMEIS[0], code: '00000', status: 200, assigned: true },
        { identity: IMEIS[0], code: '00000', status: 200, assigned: true },
        { identity: IMEIS[1], code: '10004', status: 401, assigned: false },
        { identity: IMEIS[1], code: '10001', status: 200, assigned: false },
        { identity: IMEIS[1], code: '10004', status: 401, assigned: false },
        { identity: IMEIS[0], code: '10007', status: 200, assigned: false },
      ])
    } finally {
      await Promise.all(agents.map((agent) => agent.close()))
      server.closeAllConnections()
      server.close()
      await registry.close()
    }
  })
})
