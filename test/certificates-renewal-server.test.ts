/**
 * Renewals on the server (issue 18, DESIGN.md "Certificates": a request whose TLS client certificate chains to the
 * issuing CA with the same subject is a renewal): the handler over real HTTPS servers on 127.0.0.1 that ask for client
 * certificates, certificates issued by issueCertificates (and by openssl with the same CA key, and by a foreign openssl
 * CA), real undici clients presenting them; then one `serve --issuing-ca` process renewing over real mutual TLS, with
 * `check --certificate` against it. Only the issuer's clock is fake.
 */
import { createHmac, randomBytes, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http, { type IncomingMessage } from 'node:http'
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
  type ClaimVerifier,
  createProvisioningHandler,
  DeviceRegistry,
  issueCertificates,
  type ProvisioningHandlerOptions,
  type Reclaim,
  type RequestOutcome,
  renewedDeviceName,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { runTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { type OpensslCa, opensslCa } from './helpers/openssl-ca.js'
import { SERVE_CLI, useServeProcesses } from './helpers/serve.js'
import { signClaimIndependently } from './helpers/sign-claim.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const HOST = 'mqtts://broker.example:8883'
const A = { imei: '860000000000001' }
const B = { imei: '860000000000002' }
const DEVICE_A = {
  productKey: 'a1TestPK001',
  deviceName: 'device-001',
  deviceSecret: 'S3cr3t-renewal-device-A-XXXXXXX',
}
const DEVICE_B = {
  productKey: 'a1TestPK001',
  deviceName: 'device-002',
  deviceSecret: 'S3cr3t-renewal-device-B-XXXXXXX',
}
const GROUP_KEY = randomBytes(32).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
for (const secret of [GROUP_KEY, derive(A.imei), derive(B.imei), DEVICE_A.deviceSecret, DEVICE_B.deviceSecret]) {
  suite.secret(secret)
}

let dir: string
let tls: TlsFixture
let issuing: OpensslCa
let foreign: OpensslCa
let registryPath: string
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-renewal-server-'))
  tls = await tlsFixture()
  issuing = opensslCa('mqtt-bootstrap issuing CA')
  foreign = opensslCa('mqtt-bootstrap issuing CA') // the same name, another key: names prove nothing
  for (const ca of [issuing, foreign]) suite.secret(ca.key)
  writeFileSync(join(dir, 'group.key'), `${GROUP_KEY}\n`, { mode: 0o600 })
  registryPath = join(dir, 'devices.json')
  writeFileSync(
    registryPath,
    JSON.stringify({
      version: 1,
      attestation: { groupKeyFile: 'group.key', identity: 'imei' },
      defaults: { connect: { host: HOST, qos: 1, cleanSession: 1 } },
      devices: [
        { match: A, device: DEVICE_A },
        { match: B, device: DEVICE_B },
      ],
    }),
  )
})
afterAll(() => {
  issuing?.close()
  foreign?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function deviceCsr(): Promise<{ key: DeviceKey; csr: string }> {
  const key = await createDeviceKey('p256')
  suite.secret(key.privateKeyPem)
  return { key, csr: createCertificateRequest(key) }
}

/** A TLS client certificate: a chain (leaf first) and its key. */
interface Client {
  cert: string
  key: string
}

/** A certificate from `issuer` for a new device key, named `deviceName`, as a first claim would have got it. */
async function issuedTo(issuer: CertificateIssuer, deviceName: string): Promise<Client> {
  const { key, csr } = await deviceCsr()
  const checked = await issuer.check(csr)
  if (!checked.ok) throw new Error(checked.problem)
  const cert = await issuer.issue(checked.request, { productKey: DEVICE_A.productKey, deviceName })
  return { cert, key: key.privateKeyPem }
}

/** The same, signed by an openssl CA (the issuing CA's key through another implementation, or a foreign CA). */
async function opensslIssued(ca: OpensslCa, subject: string): Promise<Client> {
  const { key, csr } = await deviceCsr()
  return { cert: ca.issue(csr, subject) + ca.cert, key: key.privateKeyPem }
}

interface Answer {
  status: number
  code: string
  message?: string
  result?: { device: Record<string, string | null>; connect: Record<string, unknown> }
}

const issuer = (clock?: { now(): number }) =>
  issueCertificates({
    ca: { cert: issuing.cert, key: issuing.key },
    validitySeconds: 3600,
    ...(clock === undefined ? {} : { clock }),
  })

/**
 * The handler over the registry on 127.0.0.1, port 0, asking for client certificates as `serve --issuing-ca` does;
 * `verify` and `resolve` counted, outcomes and errors kept.
 */
async function startHandler(options: Partial<ProvisioningHandlerOptions> = {}) {
  const registry = new DeviceRegistry(registryPath)
  const errors: unknown[] = []
  const outcomes: RequestOutcome[] = []
  const renewedNames: Array<string | undefined> = []
  let verified = 0
  let resolved = 0
  const verifier = registry.verifier()
  const verify: ClaimVerifier = (claim) => {
    verified++
    return verifier(claim)
  }
  const handler = createProvisioningHandler({
    resolve: (data, req) => {
      resolved++
      renewedNames.push(renewedDeviceName(req))
      return registry.resolve(data, req)
    },
    verify,
    issue: issuer(),
    onError: (error) => errors.push(error),
    onRequest: (outcome) => outcomes.push(outcome),
    ...options,
  })
  const server = https.createServer(
    { key: tls.key, cert: tls.cert, noDelay: true, requestCert: true, rejectUnauthorized: false, ca: issuing.cert },
    handler,
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`
  const agents: Agent[] = []
  /** POST `data` (JSON), over a connection presenting `client` (none: no certificate). */
  const post = async (data: unknown, client?: Client, headers: Record<string, string> = {}): Promise<Answer> => {
    const agent = new Agent({ connect: { ca: tls.ca, ...client } })
    agents.push(agent)
    const response = await request(url, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof data === 'string' ? data : JSON.stringify(data),
    })
    return { status: response.statusCode, ...((await response.body.json()) as Omit<Answer, 'status'>) }
  }
  return {
    url,
    errors,
    outcomes,
    renewedNames,
    verified: () => verified,
    resolved: () => resolved,
    post,
    /** A claim signed with the identity's own key (derived from the group key). */
    signed: (data: { imei: string; csr?: string }, client?: Client) => {
      const body = JSON.stringify(data)
      const claim = signClaimIndependently({
        key: derive(data.imei),
        keyId: data.imei,
        url,
        body,
        created: Math.floor(Date.now() / 1000),
      })
      return post(body, client, claim.headers)
    },
    close: async () => {
      await Promise.all(agents.map((agent) => agent.close()))
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}

/** The leaf of `chain`: its CN line and its key's SPKI. */
function leafOf(chain: string): X509Certificate {
  return new X509Certificate(chain)
}

describe('createProvisioningHandler({ issue }): renewals', () => {
  test('the current certificate as TLS client certificate, no signature: a new certificate for the new key, same CN', async () => {
    const server = await startHandler()
    try {
      // First claim, signed, with a CSR: the certificate the device then holds.
      const first = await deviceCsr()
      const claimed = await server.signed({ ...A, csr: first.csr })
      expect(claimed).toMatchObject({ status: 200, code: '00000' })
      const current = { cert: claimed.result?.device.certificate as string, key: first.key.privateKeyPem }
      expect(server.verified()).toBe(1)

      const next = await deviceCsr()
      const renewed = await server.post({ ...A, csr: next.csr }, current)
      expect(renewed).toMatchObject({ status: 200, code: '00000' })
      expect(renewed.result?.device).toMatchObject(DEVICE_A)
      const chain = renewed.result?.device.certificate as string
      expect(checkCertificateChain(chain, next.key.publicKeyDer, Date.now())).toMatchObject({ ok: true })
      expect(checkCertificateChain(chain, first.key.publicKeyDer, Date.now())).toMatchObject({ ok: false })
      expect(leafOf(chain).subject).toBe('CN=device-001')
      expect(leafOf(chain).serialNumber).not.toBe(leafOf(current.cert).serialNumber)
      // The certificate was the proof: verify was not asked; resolve was, and knew it was a renewal.
      expect(server.verified()).toBe(1)
      expect(server.renewedNames).toEqual([undefined, 'device-001'])
      await until(() => server.outcomes.length === 2, 2000, 'both outcomes')
      expect(server.outcomes.map((o) => [o.code, o.renewal])).toEqual([
        ['00000', false],
        ['00000', true],
      ])
      // Without a certificate the same unsigned request is refused, as without renewals.
      expect(await server.post({ ...A, csr: next.csr })).toEqual({ status: 401, code: '10004' })
      expect(server.errors).toEqual([])
    } finally {
      await server.close()
    }
  })

  test('a certificate openssl signed with the issuing CA is a renewal too; a foreign CA of the same name is not', async () => {
    const server = await startHandler()
    try {
      const { csr } = await deviceCsr()
      const ours = await opensslIssued(issuing, 'device-001')
      expect(await server.post({ ...A, csr }, ours)).toMatchObject({ status: 200, code: '00000' })
      const theirs = await opensslIssued(foreign, 'device-001')
      // Not a renewal: verify runs, and an unsigned claim is refused with its code only.
      expect(await server.post({ ...A, csr }, theirs)).toEqual({ status: 401, code: '10004' })
      expect(server.verified()).toBe(1)
      // Signed, the same request with the foreign certificate is a claim like any other.
      expect(await server.signed({ ...A, csr }, theirs)).toMatchObject({ status: 200, code: '00000' })
      await until(() => server.outcomes.length === 3, 2000, 'three outcomes')
      expect(server.outcomes.map((o) => o.renewal)).toEqual([true, false, false])
    } finally {
      await server.close()
    }
  })

  test('expired, not yet valid (by the issuer clock), a CA, two CNs: not renewals', async () => {
    let now = Date.now()
    const clock = { now: () => now }
    const server = await startHandler({ issue: issuer(clock) })
    try {
      const { csr } = await deviceCsr()
      const current = await issuedTo(issuer(), 'device-001')
      expect(await server.post({ ...A, csr }, current)).toMatchObject({ code: '00000' })
      now = Date.now() + 2 * 3600_000 // past the certificate's hour
      expect(await server.post({ ...A, csr }, current)).toEqual({ status: 401, code: '10004' })
      now = Date.now() - 3600_000 // before its notBefore (5 minutes before its issue)
      expect(await server.post({ ...A, csr }, current)).toEqual({ status: 401, code: '10004' })
      now = Date.now()
      expect(await server.post({ ...A, csr }, { cert: issuing.cert, key: issuing.key })).toEqual({
        status: 401,
        code: '10004',
      })
      expect(await server.post({ ...A, csr }, await opensslIssued(issuing, 'device-001/CN=device-002'))).toEqual({
        status: 401,
        code: '10004',
      })
      expect(await server.post({ ...A, csr }, current)).toMatchObject({ code: '00000' })
      expect(server.verified()).toBe(4)
    } finally {
      await server.close()
    }
  })

  test('the certificate of device A with the data of device B: "10004", HTTP 401, no configuration; counted', async () => {
    const server = await startHandler({ limits: { maxFailures: 2 } })
    try {
      const certificateOfA = await issuedTo(issuer(), DEVICE_A.deviceName)
      const { csr } = await deviceCsr()
      for (let i = 0; i < 2; i++) {
        const answer = await server.post({ ...B, csr }, certificateOfA)
        expect(answer).toEqual({ status: 401, code: '10004' })
      }
      expect(server.resolved()).toBe(2) // resolve was asked: its answer was of another device
      // Counted as failed claims: an unsigned claim from this address is over the limit now.
      expect(await server.post({ ...B, csr })).toMatchObject({ status: 429, code: '77777' })
      // A renewal itself is never held back: its own device's is answered.
      expect(await server.post({ ...A, csr }, certificateOfA)).toMatchObject({ status: 200, code: '00000' })
      // And a refusal from resolve passes through: a device the registry does not know.
      const unknown = await server.post({ imei: '869999999999999', csr }, certificateOfA)
      expect(unknown).toMatchObject({ status: 200, code: '10001' })
      expect(unknown.result).toBeUndefined()
      expect(server.errors).toEqual([])
    } finally {
      await server.close()
    }
  })

  test('a renewal is no re-claim: onReclaim is not told, a second signed claim is', async () => {
    const reclaims: Reclaim[] = []
    const server = await startHandler({ onReclaim: (reclaim) => reclaims.push(reclaim) })
    try {
      const first = await deviceCsr()
      const claimed = await server.signed({ ...A, csr: first.csr })
      const current = { cert: claimed.result?.device.certificate as string, key: first.key.privateKeyPem }
      for (let i = 0; i < 2; i++) {
        expect(await server.post({ ...A, csr: (await deviceCsr()).csr }, current)).toMatchObject({ code: '00000' })
      }
      expect(reclaims).toEqual([])
      expect(await server.signed({ ...A, csr: (await deviceCsr()).csr })).toMatchObject({ code: '00000' })
      expect(reclaims.map((r) => r.identity)).toEqual([A.imei])
    } finally {
      await server.close()
    }
  })

  test('a bad CSR on a renewal is "10008" before resolve; a renewal without csr gets no certificate', async () => {
    const server = await startHandler()
    try {
      const current = await issuedTo(issuer(), 'device-001')
      const bad = await server.post({ ...A, csr: 'not a CSR' }, current)
      expect(bad).toMatchObject({ status: 200, code: '10008' })
      expect(bad.message).toMatch(/not one PEM block/)
      expect(server.resolved()).toBe(0)
      const plain = await server.post(A, current)
      expect(plain).toMatchObject({ status: 200, code: '00000' })
      expect(plain.result?.device).toMatchObject(DEVICE_A)
      expect(plain.result?.device).not.toHaveProperty('certificate')
    } finally {
      await server.close()
    }
  })

  test('an issuer without renewal() has no renewals; a renewal() answering junk is the server\'s "77777"', async () => {
    const real = issuer()
    const current = await issuedTo(real, 'device-001')
    const { csr } = await deviceCsr()
    const plain = await startHandler({ issue: { check: real.check, issue: real.issue } })
    try {
      expect(await plain.post({ ...A, csr }, current)).toEqual({ status: 401, code: '10004' })
    } finally {
      await plain.close()
    }
    const junk = await startHandler({ issue: { ...real, renewal: () => ({ deviceName: 42 }) as never } })
    try {
      expect(await junk.post({ ...A, csr }, current)).toMatchObject({ status: 500, code: '77777' })
      expect(String(junk.errors[0])).toMatch(/issue\.renewal\(\) returned neither undefined nor \{ deviceName \}/)
    } finally {
      await junk.close()
    }
    expect(() =>
      createProvisioningHandler({ resolve: () => undefined, issue: { ...real, renewal: 'yes' } as never }),
    ).toThrow(/Expected `issue.renewal` to be a function/)
  })

  test('renewal(): undefined for plain HTTP, no certificate, and a socket that is gone; never a throw', async () => {
    const judge = issuer()
    const current = await issuedTo(judge, 'device-001')
    const seen: Array<[string, unknown]> = []
    const look = (label: string, req: IncomingMessage) => {
      seen.push([label, judge.renewal?.(req)])
    }
    const plain = http.createServer((req, res) => {
      look('http', req)
      res.end()
    })
    const secure = https.createServer(
      { key: tls.key, cert: tls.cert, requestCert: true, rejectUnauthorized: false, noDelay: true },
      (req, res) => {
        look(req.url ?? '', req)
        req.socket.destroy()
        look(`${req.url} gone`, req)
        res.end()
      },
    )
    for (const server of [plain, secure]) server.listen(0, '127.0.0.1')
    await Promise.all([once(plain, 'listening'), once(secure, 'listening')])
    const port = (server: http.Server) => (server.address() as AddressInfo).port
    const agents = [
      new Agent(),
      new Agent({ connect: { ca: tls.ca } }),
      new Agent({ connect: { ca: tls.ca, ...current } }),
    ]
    try {
      await request(`http://127.0.0.1:${port(plain)}/`, { dispatcher: agents[0] }).then((r) => r.body.dump())
      for (const [path, agent] of [
        ['/none', agents[1]],
        ['/current', agents[2]],
      ] as const) {
        await request(`https://127.0.0.1:${port(secure)}${path}`, { dispatcher: agent }).catch(() => undefined)
      }
      await until(() => seen.length === 5, 2000, 'five looks')
      expect(seen).toEqual([
        ['http', undefined],
        ['/none', undefined],
        ['/none gone', undefined],
        ['/current', { deviceName: 'device-001' }],
        ['/current gone', undefined],
      ])
    } finally {
      await Promise.all(agents.map((agent) => agent.destroy()))
      for (const server of [plain, secure]) {
        server.closeAllConnections()
        server.close()
      }
    }
  })
})

describe('serve --issuing-ca: renewals over mutual TLS', () => {
  const processes = useServeProcesses()

  test('a device renews with its certificate and no signature; the access log says renewal; check passes', {
    timeout: 60_000,
  }, async () => {
    const caFile = join(dir, 'issuing-ca.pem')
    const caKeyFile = join(dir, 'issuing-ca.key')
    writeFileSync(caFile, issuing.cert)
    writeFileSync(caKeyFile, issuing.key, { mode: 0o600 })
    const caOut = join(dir, 'serve-ca.pem')
    const started = await processes.serve([
      '--registry',
      registryPath,
      '--port',
      '0',
      '--ca-out',
      caOut,
      '--issuing-ca',
      caFile,
      '--issuing-key',
      caKeyFile,
    ])
    expect(started.output()).toMatch(/renewals: a claim whose TLS client certificate is one of these/)
    const serverCa = readFileSync(caOut, 'utf8')
    const post = async (body: string, client?: Client, headers: Record<string, string> = {}) => {
      const agent = new Agent({ connect: { ca: serverCa, ...client } })
      try {
        const response = await request(started.url, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json', ...headers },
          body,
        })
        return { status: response.statusCode, ...((await response.body.json()) as Omit<Answer, 'status'>) }
      } finally {
        await agent.close()
      }
    }
    const first = await deviceCsr()
    const body = JSON.stringify({ ...A, csr: first.csr })
    const claim = signClaimIndependently({
      key: derive(A.imei),
      keyId: A.imei,
      url: started.url,
      body,
      created: Math.floor(Date.now() / 1000),
    })
    const claimed = await post(body, undefined, claim.headers)
    expect(claimed).toMatchObject({ status: 200, code: '00000' })
    const current = { cert: claimed.result?.device.certificate as string, key: first.key.privateKeyPem }

    const next = await deviceCsr()
    const renewed = await post(JSON.stringify({ ...A, csr: next.csr }), current)
    expect(renewed).toMatchObject({ status: 200, code: '00000' })
    const chain = renewed.result?.device.certificate as string
    expect(checkCertificateChain(chain, next.key.publicKeyDer, Date.now())).toMatchObject({ ok: true })
    expect(leafOf(chain).subject).toBe('CN=device-001')
    // A's certificate with B's data; and no certificate, no signature: refused.
    expect(await post(JSON.stringify({ ...B, csr: next.csr }), current)).toEqual({ status: 401, code: '10004' })
    expect(await post(JSON.stringify({ ...A, csr: next.csr }))).toEqual({ status: 401, code: '10004' })
    await until(() => (started.output().match(/ POST \/bootstrap /g) ?? []).length >= 4, 5000, 'four log lines')
    const lines = started.output().split('\n')
    expect(lines.filter((line) => / POST \/bootstrap 200 00000 8600…\(15\) renewal$/.test(line))).toHaveLength(1)
    expect(lines.filter((line) => / POST \/bootstrap 200 00000 8600…\(15\)$/.test(line))).toHaveLength(1)
    // A's certificate made that request a renewal too, refused: the log tells the two refusals apart.
    expect(lines.filter((line) => / POST \/bootstrap 401 10004 8600…\(15\) renewal$/.test(line))).toHaveLength(1)
    expect(lines.filter((line) => / POST \/bootstrap 401 10004 8600…\(15\)$/.test(line))).toHaveLength(1)

    const keyFile = join(dir, 'group-for-check.key')
    writeFileSync(keyFile, `${GROUP_KEY}\n`, { mode: 0o600 })
    const check = await runTs(
      SERVE_CLI,
      ['check', started.url, '--data', JSON.stringify(A), '--ca', caOut, '--group-key-file', keyFile, '--certificate'],
      { timeoutMs: 30_000 },
    )
    expect(check.code, check.output).toBe(0)
    expect(check.output).toMatch(
      /PASS\s+renews: the claim with the issued certificate as TLS client certificate gets one for a new key, the same CN\s+a certificate for the new key, CN "device-001"/,
    )
    // The checker's renewal, taken for one: its line ends so too.
    await until(
      () => (started.output().match(/ 200 00000 \S+ renewal$/gm) ?? []).length === 2,
      5000,
      "the checker's renewal",
    )
    expect(started.output()).not.toContain(issuing.key.split('\n')[1])
  })
})
