/**
 * The JSON registry's `"attestation"` declaration (issue 14) and `mqtt-bootstrap serve`, secure by default: a group key
 * (inline or in a file next to the registry) makes the registry's verifier demand claims signed with the derived
 * keys; `"none"` serves unsigned claims with a start-up warning; a registry that says neither is not served. The
 * group key appears in no error, output or inspected object.
 */
import type { ChildProcess } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { chmodSync, readFileSync, utimesSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import { createProvisioningHandler, DeviceRegistry } from '../packages/mqtt-bootstrap-server/src/index.js'
import { runTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { DEVICE } from './helpers/https-server.js'
import { listenOnLoopback } from './helpers/ports.js'
import { useServeProcesses } from './helpers/serve.js'
import { signClaimIndependently } from './helpers/sign-claim.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

const CLI = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
const IMEI = '860000000000001'
const UNKNOWN = '860000000000999'
const GROUP_KEY = randomBytes(64).toString('base64')
const NEXT_KEY = randomBytes(64).toString('base64')
const derive = (groupKey: string, id: string) =>
  createHmac('sha256', Buffer.from(groupKey, 'base64')).update(id).digest('base64')
for (const secret of [GROUP_KEY, NEXT_KEY, derive(GROUP_KEY, IMEI), derive(NEXT_KEY, IMEI)]) suite.secret(secret)
suite.secret(DEVICE.deviceSecret)

let dir: string
let tls: TlsFixture
let agent: Agent
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-claims-registry-'))
  tls = await tlsFixture()
  agent = new Agent({ connect: { ca: tls.ca } })
})
afterAll(async () => {
  await agent.close()
  await rm(dir, { recursive: true, force: true })
})

let files = 0
/** A registry file with one device (IMEI) and `attestation` as given (left out when `undefined`). */
function registryFile(attestation: unknown, extra: Record<string, unknown> = {}): string {
  const path = join(dir, `devices-${++files}.json`)
  writeFileSync(
    path,
    JSON.stringify({
      version: 1,
      ...(attestation === undefined ? {} : { attestation }),
      defaults: { connect: { host: 'mqtts://broker.example:8883', qos: 1, cleanSession: 1 } },
      devices: [{ match: { imei: IMEI }, device: DEVICE }],
      ...extra,
    }),
  )
  return path
}

async function post(url: string, body: string, headers: Record<string, string> = {}) {
  const response = await request(url, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    body,
  })
  return { status: response.statusCode, body: (await response.body.json()) as { code: string } }
}

/** A claim for `imei` signed (independently) with `key`, now. */
function signed(url: string, imei: string, key: string) {
  const body = JSON.stringify({ imei })
  const claim = signClaimIndependently({ key, keyId: imei, url, body, created: Math.floor(Date.now() / 1000) })
  return { body, headers: claim.headers as Record<string, string> }
}

describe('the registry declares how claims are authenticated', () => {
  const closers: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const close of closers.splice(0)) await close()
  })

  /** The handler over the registry, with its verifier unless `verify: false`. */
  async function serveRegistry(registry: DeviceRegistry, verify = true) {
    const errors: unknown[] = []
    const server = createServer(
      { key: tls.key, cert: tls.cert, noDelay: true },
      createProvisioningHandler({
        resolve: registry.resolve,
        ...(verify ? { verify: registry.verifier() } : {}),
        onError: (error) => errors.push(error),
      }),
    )
    const { port, close } = await listenOnLoopback(server)
    closers.push(close)
    return { url: `https://127.0.0.1:${port}/bootstrap`, errors }
  }

  test('an inline group key: signed claims with the derived key get their configuration, nothing else does', async () => {
    const registry = new DeviceRegistry(registryFile({ groupKey: GROUP_KEY, identity: 'imei' }))
    expect(registry.attestation).toBe('group-key')
    const { url, errors } = await serveRegistry(registry)
    const good = signed(url, IMEI, derive(GROUP_KEY, IMEI))
    expect(await post(url, good.body, good.headers)).toMatchObject({ status: 200, body: { code: '00000' } })
    expect(await post(url, JSON.stringify({ imei: IMEI }))).toEqual({ status: 401, body: { code: '10004' } })
    const forged = signed(url, IMEI, randomBytes(32).toString('base64'))
    expect(await post(url, forged.body, forged.headers)).toEqual({ status: 401, body: { code: '10004' } })
    // The only way to learn an identity is unknown: a valid signature with its derived key.
    const unknown = signed(url, UNKNOWN, derive(GROUP_KEY, UNKNOWN))
    expect(await post(url, unknown.body, unknown.headers)).toMatchObject({ status: 200, body: { code: '10001' } })
    // The device's own signer, with the key the factory derives.
    const device = new PointAccess({ tls: { ca: tls.ca }, attestation: { keyId: IMEI, key: derive(GROUP_KEY, IMEI) } })
    expect(await device.request(url, { imei: IMEI })).toBe('00000')
    expect(errors).toEqual([])
    suite.objects.push(registry, registry.verifier())
    expect(inspect(registry, { showHidden: true, depth: 20 })).not.toContain(GROUP_KEY.slice(0, 12))
    expect(JSON.stringify(registry)).not.toContain(GROUP_KEY.slice(0, 12))
  })

  test('a group key file relative to the registry, read again when it changes', async () => {
    writeFileSync(join(dir, 'group.key'), `${GROUP_KEY}\n`, { mode: 0o600 })
    const registry = new DeviceRegistry(registryFile({ groupKeyFile: 'group.key' })) // identity: imei by default
    const { url } = await serveRegistry(registry)
    const first = signed(url, IMEI, derive(GROUP_KEY, IMEI))
    expect((await post(url, first.body, first.headers)).status).toBe(200)
    writeFileSync(join(dir, 'group.key'), `${NEXT_KEY}\n`)
    utimesSync(join(dir, 'group.key'), new Date(), new Date(Date.now() + 5000)) // a distinct mtime, whatever the fs
    const old = signed(url, IMEI, derive(GROUP_KEY, IMEI))
    expect(await post(url, old.body, old.headers)).toEqual({ status: 401, body: { code: '10004' } })
    const next = signed(url, IMEI, derive(NEXT_KEY, IMEI))
    expect((await post(url, next.body, next.headers)).status).toBe(200)
  })

  test('"none": unsigned claims are served; no declaration: no verifier', async () => {
    const none = new DeviceRegistry(registryFile('none'))
    expect(none.attestation).toBe('none')
    const { url } = await serveRegistry(none)
    expect(await post(url, JSON.stringify({ imei: IMEI }))).toMatchObject({ status: 200, body: { code: '00000' } })
    const silent = new DeviceRegistry(registryFile(undefined))
    expect(silent.attestation).toBeUndefined()
    expect(() => silent.verifier()).toThrow(/declares no attestation/)
  })

  test('a handler made without verify hands out nothing from a registry with a group key: 10004, HTTP 401', async () => {
    const registry = new DeviceRegistry(registryFile({ groupKey: GROUP_KEY, identity: 'imei' }))
    const { url } = await serveRegistry(registry, false)
    const good = signed(url, IMEI, derive(GROUP_KEY, IMEI))
    expect(await post(url, good.body, good.headers)).toEqual({ status: 401, body: { code: '10004' } })
    expect(registry.resolve({ imei: IMEI })).toEqual({ code: '10004' })
  })

  const SHORT_KEY = randomBytes(8).toString('base64')
  beforeAll(() => {
    writeFileSync(join(dir, 'open-group.key'), `${GROUP_KEY}\n`)
    chmodSync(join(dir, 'open-group.key'), 0o644)
  })
  const URL_SAFE_KEY = `-_${randomBytes(48).toString('base64url')}` // never standard base64
  suite.secret(URL_SAFE_KEY)
  test.each([
    [
      'both a key and a file',
      { groupKey: GROUP_KEY, groupKeyFile: 'group.key' },
      /either "groupKey" or "groupKeyFile"/,
    ],
    ['neither a key nor a file', { identity: 'imei' }, /either "groupKey" or "groupKeyFile"/],
    ['a key too short', { groupKey: SHORT_KEY }, /attestation\.groupKey must be canonical base64 of 16 bytes/],
    ['a key in base64url', { groupKey: URL_SAFE_KEY }, /attestation\.groupKey must be canonical base64/],
    ['a missing key file', { groupKeyFile: 'nowhere.key' }, /groupKeyFile .*nowhere\.key is not readable \(ENOENT\)/],
    [
      'a key file others can read',
      { groupKeyFile: 'open-group.key' },
      /open-group\.key is readable by others \(mode 0644\)/,
    ],
    ['an unknown field', { groupKey: GROUP_KEY, groupkey: GROUP_KEY }, /attestation/],
    ['another word than none', 'off', /attestation/],
    ['an empty identity', { groupKey: GROUP_KEY, identity: '' }, /attestation/],
  ])('refused at load: %s', (_name, attestation, message) => {
    const path = registryFile(attestation)
    let error: unknown
    try {
      new DeviceRegistry(path)
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(TypeError)
    expect((error as Error).message).toMatch(message)
    suite.exposure.add(error)
  })

  test('with a group key every entry must match on the identity (a claim proves only that field)', () => {
    const path = registryFile(
      { groupKey: GROUP_KEY, identity: 'imei' },
      {
        devices: [
          { match: { imei: IMEI }, device: DEVICE },
          { match: { serial: 'S-1' }, device: DEVICE },
        ],
      },
    )
    expect(() => new DeviceRegistry(path)).toThrow(/devices\.1\.match must match on "imei"/)
  })
})

describe('serve is secure by default', () => {
  const processes = useServeProcesses()

  async function serve(registry: string, ...more: string[]) {
    const caOut = join(dir, `ca-${++files}.pem`)
    return { ...(await processes.serve(['--registry', registry, '--port', '0', '--ca-out', caOut, ...more])), caOut }
  }

  async function stop(child: ChildProcess) {
    child.kill('SIGTERM')
    const [code] = (await once(child, 'close')) as [number | null]
    return code
  }

  test('a registry that declares nothing is not served: exit 2, saying what to add', async () => {
    const run = await runTs(CLI, ['serve', '--registry', registryFile(undefined), '--port', '0'], {
      timeoutMs: 30_000,
    })
    expect(run.code).toBe(2)
    expect(run.output).toMatch(/does not say how claims are authenticated/)
    expect(run.output).toContain('"attestation": { "groupKeyFile": "group.key", "identity": "imei" }')
    expect(run.output).toContain('"attestation": "none"')
    expect(run.output).toContain('mqtt-bootstrap keys group')
    expect(run.output).not.toMatch(/listening/)
  })

  test('"none" serves unsigned claims, with a warning on stderr saying what that allows', async () => {
    const server = await serve(registryFile('none'))
    expect(server.output()).toMatch(/warning: .*"attestation": "none": claims are not authenticated/)
    expect(server.output()).toMatch(/anyone who knows or guesses\s+a device's identity/)
    const provision = await runTs(
      CLI,
      ['provision', server.url, '--data', JSON.stringify({ imei: IMEI }), '--ca', server.caOut],
      { timeoutMs: 30_000 },
    )
    expect(provision.output).toMatch(/code\s+00000/)
    expect(await stop(server.child)).toBe(0)
  })

  test('a group key file: unsigned claims refused (10004), signed ones served; the key shows nowhere', async () => {
    writeFileSync(join(dir, 'serve-group.key'), `${GROUP_KEY}\n`, { mode: 0o600 })
    const server = await serve(registryFile({ groupKeyFile: 'serve-group.key', identity: 'imei' }))
    expect(server.output()).toMatch(/claims: signed/)
    expect(server.output()).not.toMatch(/warning/)
    const unsigned = await runTs(
      CLI,
      ['provision', server.url, '--data', JSON.stringify({ imei: IMEI }), '--ca', server.caOut],
      { timeoutMs: 30_000 },
    )
    expect(unsigned.output).toMatch(/10004/)
    expect(unsigned.code).toBe(5) // refused
    const ca = readFileSync(server.caOut, 'utf8')
    const device = new PointAccess({ tls: { ca }, attestation: { keyId: IMEI, key: derive(GROUP_KEY, IMEI) } })
    expect(await device.request(server.url, { imei: IMEI })).toBe('00000')
    // A replay of the same signed request (same nonce) is refused.
    const url = server.url
    const claim = signed(url, IMEI, derive(GROUP_KEY, IMEI))
    const trusting = new Agent({ connect: { ca } })
    try {
      const send = () =>
        request(url, {
          method: 'POST',
          dispatcher: trusting,
          headers: { 'content-type': 'application/json', ...claim.headers },
          body: claim.body,
        }).then(async (response) => ({ status: response.statusCode, body: await response.body.json() }))
      expect((await send()).status).toBe(200)
      expect(await send()).toEqual({ status: 401, body: { code: '10005' } })
    } finally {
      await trusting.close()
    }
    expect(await stop(server.child)).toBe(0)
    expect(server.output()).toMatch(/POST \/bootstrap 401 10004/)
    expect(server.output()).not.toContain(GROUP_KEY.slice(0, 12))
  })

  test('a claim names its server: one signed for another host, sent with that Host, is refused; --origin pins one', async () => {
    writeFileSync(join(dir, 'hosts-group.key'), `${GROUP_KEY}\n`, { mode: 0o600 })
    const registry = registryFile({ groupKeyFile: 'hosts-group.key' })
    /** A claim signed for `signedFor` (its origin), sent to `server` with the Host header `host`. */
    const send = async (server: { url: string; caOut: string }, signedFor: string, host: string) => {
      const target = new URL(server.url)
      const claim = signed(`${signedFor}${target.pathname}`, IMEI, derive(GROUP_KEY, IMEI))
      // The sender is the attacker: it wants its Host header on the wire, not a certificate for that name.
      const ca = readFileSync(server.caOut, 'utf8')
      const trusting = new Agent({ connect: { ca, checkServerIdentity: () => undefined } })
      try {
        const response = await request(server.url, {
          method: 'POST',
          dispatcher: trusting,
          headers: { 'content-type': 'application/json', host, ...claim.headers },
          body: claim.body,
        })
        return { status: response.statusCode, body: await response.body.json() }
      } finally {
        await trusting.close()
      }
    }
    const plain = await serve(registry)
    const { host, origin } = new URL(plain.url)
    expect(await send(plain, origin, host)).toMatchObject({ status: 200, body: { code: '00000' } })
    const other = `other.example:${new URL(plain.url).port}`
    expect(await send(plain, `https://${other}`, other)).toEqual({ status: 401, body: { code: '10004' } })
    expect(await stop(plain.child)).toBe(0)

    const pinned = await serve(registry, '--origin', 'https://provision.example')
    const behindProxy = await send(pinned, 'https://provision.example', 'provision.example')
    expect(behindProxy).toMatchObject({ status: 200, body: { code: '00000' } })
    expect(await send(pinned, origin, host)).toEqual({ status: 401, body: { code: '10004' } })
    expect(await stop(pinned.child)).toBe(0)
  })

  test("with its own --cert, claims name the certificate's names: a wildcard's, on any port (a port mapping)", async () => {
    writeFileSync(join(dir, 'wild-group.key'), `${GROUP_KEY}\n`, { mode: 0o600 })
    const [cert, key] = [join(dir, 'wild.pem'), join(dir, 'wild.key')]
    writeFileSync(cert, tls.wildcard.cert)
    writeFileSync(key, tls.wildcard.key, { mode: 0o600 })
    const server = await serve(registryFile({ groupKeyFile: 'wild-group.key' }), '--cert', cert, '--key', key)
    expect(server.output()).toMatch(/claims: signed .*, for \*\.fleet\.test;/)
    const { port } = new URL(server.url)
    const send = async (signedFor: string, host: string) => {
      const claim = signed(`${signedFor}/bootstrap`, IMEI, derive(GROUP_KEY, IMEI))
      const trusting = new Agent({ connect: { ca: tls.ca, checkServerIdentity: () => undefined } })
      try {
        const response = await request(server.url, {
          method: 'POST',
          dispatcher: trusting,
          headers: { 'content-type': 'application/json', host, ...claim.headers },
          body: claim.body,
        })
        return { status: response.statusCode, body: await response.body.json() }
      } finally {
        await trusting.close()
      }
    }
    const accepted = { status: 200, body: { code: '00000' } }
    expect(await send(`https://a.fleet.test:${port}`, `a.fleet.test:${port}`)).toMatchObject(accepted)
    expect(await send('https://b.fleet.test', 'b.fleet.test')).toMatchObject(accepted) // 443 mapped to the port
    const refused = { status: 401, body: { code: '10004' } }
    expect(await send(`https://a.b.fleet.test:${port}`, `a.b.fleet.test:${port}`)).toEqual(refused)
    expect(await send(`https://127.0.0.1:${port}`, `127.0.0.1:${port}`)).toEqual(refused)
    expect(await stop(server.child)).toBe(0)
  })

  test('--origin must be a scheme and host: exit 2 otherwise', async () => {
    const run = await runTs(
      CLI,
      ['serve', '--registry', registryFile('none'), '--port', '0', '--origin', 'https://provision.example/path'],
      { timeoutMs: 30_000 },
    )
    expect(run.code).toBe(2)
    expect(run.output).toMatch(/--origin: Expected `origin` to be a scheme and host/)
  })

  test('a bad group key file: exit 2, the key not quoted', async () => {
    const bad = `${GROUP_KEY.slice(0, 40)}!!`
    writeFileSync(join(dir, 'bad-group.key'), bad, { mode: 0o600 })
    const run = await runTs(
      CLI,
      ['serve', '--registry', registryFile({ groupKeyFile: 'bad-group.key' }), '--port', '0'],
      {
        timeoutMs: 30_000,
      },
    )
    expect(run.code).toBe(2)
    expect(run.output).toMatch(/groupKeyFile .*bad-group\.key must be canonical base64/)
    expect(run.output).not.toContain(GROUP_KEY.slice(0, 12))
  })
})
