/**
 * X.509 claims (issue 15): `signedClaims({ clientCertificate: { ca } })` takes a mutual-TLS client certificate that
 * chains to the factory CA and names the claimed identity as the proof, instead of an HMAC signature, over a real
 * HTTPS server with `requestCert: true, rejectUnauthorized: false`. Certificates are made here (selfsigned); the
 * refusals are 401 `{ code: "10004" }` only, and the HMAC path still works on the same server.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { createServer } from 'node:https'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import { subjectAltNames } from '../packages/mqtt-bootstrap-server/src/claims/x509.js'
import {
  type ClaimVerifier,
  type ClientCertificateOptions,
  createProvisioningHandler,
  type ProvisioningHandlerOptions,
  signedClaims,
  verifiedKeyId,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { suite } from './helpers/exposure.js'
import { DEVICE } from './helpers/https-server.js'
import { listenOnLoopback } from './helpers/ports.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { type Authority, authority, deviceCertificate } from './helpers/x509.js'

const IMEI = '860000000000001'
const OTHER = '860000000000002'
const GROUP_KEY = randomBytes(32).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
for (const secret of [GROUP_KEY, derive(IMEI), derive(OTHER)]) suite.secret(secret)
suite.secret(DEVICE.deviceSecret)

const DAY = 86_400_000
let tls: TlsFixture
let factory: Authority
let rogue: Authority
let issuing: Authority
/** The verifier's clock: the system's unless a test moves it. */
let offsetMs = 0
const clock = { now: () => Date.now() + offsetMs }
beforeAll(async () => {
  tls = await tlsFixture()
  factory = await authority('factory CA')
  rogue = await authority('factory CA') // same name, another key: must not pass for the factory's
  issuing = await authority('issuing CA', factory)
})
beforeEach(() => {
  offsetMs = 0
})

interface CertServer {
  url: string
  resolved: Array<{ data: unknown; keyId: string | undefined }>
  errors: unknown[]
}
const closers: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const close of closers.splice(0)) await close()
})

/** A real HTTPS server asking (not requiring) a client certificate, its handler judging claims with `verify`. */
async function certServer(verify: ClaimVerifier, extra: Partial<ProvisioningHandlerOptions> = {}): Promise<CertServer> {
  const resolved: CertServer['resolved'] = []
  const errors: unknown[] = []
  const handler = createProvisioningHandler({
    resolve: (data, req) => {
      resolved.push({ data, keyId: verifiedKeyId(req) })
      const imei = (data as { imei?: unknown }).imei
      return imei === IMEI || imei === OTHER ? { device: DEVICE, connect: { host: 'broker.example:8883' } } : undefined
    },
    verify,
    onError: (error) => errors.push(error),
    ...extra,
  })
  const server = createServer(
    { key: tls.key, cert: tls.cert, requestCert: true, rejectUnauthorized: false, ca: factory.cert, noDelay: true },
    handler,
  )
  const { port, close } = await listenOnLoopback(server)
  closers.push(close)
  return { url: `https://127.0.0.1:${port}/bootstrap`, resolved, errors }
}

const verifier = (clientCertificate: ClientCertificateOptions = { ca: factory.cert }) =>
  signedClaims({ keyFor: derive, identity: 'imei', clientCertificate, clock })

/** POST `{ imei }` over a fresh connection, with the client certificate `client` (or none). */
async function post(url: string, imei: string, client?: { cert: string; key: string }) {
  const agent = new Agent({ connect: { ca: tls.ca, ...client } })
  try {
    const response = await request(url, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ imei }),
    })
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> }
  } finally {
    await agent.close()
  }
}

const refused = { status: 401, body: { code: '10004' } }

describe('a client certificate from the factory CA proves the claim of the identity it names', () => {
  let server: CertServer
  beforeAll(async () => {
    server = await certServer(verifier())
  })
  beforeEach(() => {
    server.resolved.length = 0
    server.errors.length = 0
  })

  test('PointAccess with tls { ca, cert, key } and no attestation gets its configuration', async () => {
    const device = await deviceCertificate(factory, IMEI)
    expect(await new PointAccess({ tls: { ca: tls.ca, ...device } }).request(server.url, { imei: IMEI })).toBe('00000')
    // The verdict's keyId is the identity: resolve and the registries see it as with a signature.
    expect(server.resolved).toEqual([{ data: { imei: IMEI }, keyId: IMEI }])
  })

  test('no certificate and no signature: 10004, resolve never asked', async () => {
    expect(await post(server.url, IMEI)).toEqual(refused)
    expect(server.resolved).toEqual([])
  })

  test('a certificate from another CA (same CA name, another key) is refused', async () => {
    expect(await post(server.url, IMEI, await deviceCertificate(rogue, IMEI))).toEqual(refused)
  })

  test('a self-signed certificate naming the device is refused', async () => {
    expect(await post(server.url, IMEI, await deviceCertificate(undefined, IMEI))).toEqual(refused)
  })

  test('an expired certificate, and one not yet valid, are refused', async () => {
    const expired = await deviceCertificate(factory, IMEI, { from: Date.now() - 400 * DAY, to: Date.now() - DAY })
    expect(await post(server.url, IMEI, expired)).toEqual(refused)
    const early = await deviceCertificate(factory, IMEI, { from: Date.now() + DAY, to: Date.now() + 400 * DAY })
    expect(await post(server.url, IMEI, early)).toEqual(refused)
    expect(server.resolved).toEqual([])
  })

  test("validity is judged by the verifier's clock: the same certificate, accepted now, refused after it expires", async () => {
    const device = await deviceCertificate(factory, IMEI, { from: Date.now() - DAY, to: Date.now() + DAY })
    expect(await post(server.url, IMEI, device)).toMatchObject({ status: 200, body: { code: '00000' } })
    offsetMs = 2 * DAY
    expect(await post(server.url, IMEI, device)).toEqual(refused)
  })

  test("a certificate naming another device cannot claim this one, and a device's cannot claim another", async () => {
    expect(await post(server.url, IMEI, await deviceCertificate(factory, OTHER))).toEqual(refused)
    expect(await post(server.url, OTHER, await deviceCertificate(factory, IMEI))).toEqual(refused)
    expect(server.resolved).toEqual([])
  })

  test('a certificate for servers only (extKeyUsage serverAuth) from the factory CA is no device certificate', async () => {
    const serverOnly = await deviceCertificate(factory, IMEI, { usage: 'server' })
    expect(await post(server.url, IMEI, serverOnly)).toEqual(refused)
  })

  test('a chain through an intermediate the device sends is accepted up to the factory root', async () => {
    const leaf = await deviceCertificate(issuing, IMEI)
    const withChain = await post(server.url, IMEI, { cert: `${leaf.cert}\n${issuing.cert}`, key: leaf.key })
    // Node 24 (24.21 tried here) gives the server only the leaf of what a client sends (getPeerCertificate(true) and
    // getPeerX509Certificate alike; 20, 22 and 26 give the whole chain): the chain cannot be checked, so it is refused.
    const chainVisible = !process.versions.node.startsWith('24.')
    expect(withChain).toMatchObject(chainVisible ? { status: 200, body: { code: '00000' } } : refused)
    // Without the intermediate the chain stops short of the factory CA.
    expect(await post(server.url, IMEI, leaf)).toEqual(refused)
  })

  test('the HMAC path still works on the same server, and a signature is judged alone', async () => {
    const signed = new PointAccess({ tls: { ca: tls.ca }, attestation: { keyId: IMEI, key: derive(IMEI) } })
    expect(await signed.request(server.url, { imei: IMEI })).toBe('00000')
    // A valid certificate does not rescue a bad signature: with a signature, the signature decides.
    const device = await deviceCertificate(factory, IMEI)
    const forged = new PointAccess({
      tls: { ca: tls.ca, ...device },
      attestation: { keyId: IMEI, key: randomBytes(32).toString('base64') },
    })
    expect(await forged.request(server.url, { imei: IMEI })).toBe('10004')
    expect(server.resolved).toEqual([{ data: { imei: IMEI }, keyId: IMEI }])
  })
})

describe('the identity in a subjectAltName', () => {
  test("subject: 'URI' binds the one URI SAN, not the CN", async () => {
    const server = await certServer(verifier({ ca: factory.cert, subject: 'URI' }))
    const device = await deviceCertificate(factory, 'not-the-identity', { altNames: [{ type: 6, value: IMEI }] })
    expect(await post(server.url, IMEI, device)).toMatchObject({ status: 200, body: { code: '00000' } })
    const byCn = await deviceCertificate(factory, IMEI)
    expect(await post(server.url, IMEI, byCn)).toEqual(refused)
    const two = await deviceCertificate(factory, IMEI, {
      altNames: [
        { type: 6, value: IMEI },
        { type: 6, value: OTHER },
      ],
    })
    expect(await post(server.url, IMEI, two)).toEqual(refused) // two URIs: no single identity
  })

  test("Node's subjectAltName text, JSON-quoted values included, parses to its entries", () => {
    expect(subjectAltNames('DNS:a.test, URI:"urn:x,y", email:d@e.test')).toEqual([
      { kind: 'DNS', value: 'a.test' },
      { kind: 'URI', value: 'urn:x,y' },
      { kind: 'email', value: 'd@e.test' },
    ])
    expect(subjectAltNames('')).toEqual([])
  })
})

describe('with the abuse limits on', () => {
  test('an address over the limit still gets a valid certificate claim through', async () => {
    const server = await certServer(verifier(), { limits: { maxFailures: 2 } })
    for (let i = 0; i < 2; i++) expect(await post(server.url, OTHER)).toEqual(refused)
    expect((await post(server.url, OTHER)).status).toBe(429)
    const device = await deviceCertificate(factory, IMEI)
    expect(await post(server.url, IMEI, device)).toMatchObject({ status: 200, body: { code: '00000' } })
  })
})

test('bad clientCertificate options are TypeErrors naming the option', async () => {
  const device = await deviceCertificate(factory, IMEI)
  const make = (clientCertificate: unknown) =>
    signedClaims({ keyFor: derive, identity: 'imei', clientCertificate: clientCertificate as ClientCertificateOptions })
  expect(() => make({ ca: 'not pem' })).toThrow(/`clientCertificate.ca`/)
  expect(() => make({ ca: device.cert })).toThrow(/is not a CA/)
  expect(() => make({ ca: factory.cert, subject: 'OU' })).toThrow(/`clientCertificate.subject`/)
  expect(() => make(null)).toThrow(/`clientCertificate`/)
})
