/**
 * `mqtt-bootstrap provision` against what an operator really points it at, as a real process: a statuses outside the
 * contract (404, 403, a redirect) is said with its status and exits 6, not as a refusal; an untrusted certificate exits
 * 7 and suggests --ca; a --ca, --cert or --key that is not PEM is a usage error before any request; --key-file signs
 * the claim.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { type ChildRun, runTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { configAnswer, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { KNOWN } from './helpers/reference-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

const run = (...args: string[]): Promise<ChildRun> =>
  runTs('packages/mqtt-bootstrap-server/src/cli/index.ts', args, { timeoutMs: 30_000 })

let tls: TlsFixture
let dir: string
let caFile: string
let server: TestServer
let wrongHost: TestServer
beforeAll(async () => {
  tls = await tlsFixture()
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-provision-'))
  caFile = join(dir, 'ca.pem')
  await writeFile(caFile, tls.ca)
  server = await startHttpsServer(tls, (_req, res) => json(res, 200, { code: '10001' }))
  wrongHost = await startHttpsServer({ ...tls, ...tls.wrongHost }, (_req, res) => json(res, 200, { code: '10001' }))
})
afterAll(async () => {
  await server.close()
  await wrongHost.close()
  await rm(dir, { recursive: true, force: true })
})
beforeEach(() => {
  server.requests.length = 0
})

const data = JSON.stringify(KNOWN)
const provision = (...extra: string[]) => run('provision', server.url, '--data', data, '--ca', caFile, ...extra)

describe('statuses outside the contract: exit 6, with the status, whatever the body', () => {
  test.each([
    [404, { code: '10001', message: 'unknown device' }, /HTTP 404: not a provisioning endpoint\?/],
    [403, { code: '10003' }, /HTTP 403: forbidden/],
    [400, { code: '10002' }, /HTTP 400: not a provisioning endpoint\?/],
    [401, { code: '10001' }, /HTTP 401: without a claim refusal/],
  ])('HTTP %i with a refusal body', async (status, body, message) => {
    server.handle((_req, res) => json(res, status, body))
    const result = await provision()
    expect(result.output).toMatch(message)
    expect(result.output).toMatch(/ERR_PROVISION_HTTP_STATUS/)
    expect(result.code).toBe(6)
    expect(server.requests).toHaveLength(1)
  })

  test('a redirect is not followed: exit 6, naming it', async () => {
    server.handle((_req, res) => res.writeHead(302, { location: 'https://127.0.0.1:1/elsewhere' }).end())
    const result = await provision()
    expect(result.output).toMatch(/HTTP 302: a redirect, which is not followed/)
    expect(result.code).toBe(6)
  })

  test('--json carries the hint; the exit code is the same', async () => {
    server.handle((_req, res) => json(res, 404, { code: '10001' }))
    const result = await provision('--json')
    expect(result.code).toBe(6)
    const printed = JSON.parse(result.output.slice(0, result.output.lastIndexOf('}') + 1))
    expect(printed).toMatchObject({
      code: '99999',
      error: { code: 'ERR_PROVISION_HTTP_STATUS' },
      hint: expect.stringContaining('HTTP 404'),
    })
  })

  test("the contract's statuses keep their exit codes: 401 claim refusal 5, 200 refusal 5, 503 3, 200 00000 0", async () => {
    server.handle((_req, res) => json(res, 401, { code: '10004' }))
    expect((await provision()).code).toBe(5)
    server.handle((_req, res) => json(res, 200, { code: '10001' }))
    expect((await provision()).code).toBe(5)
    server.handle((_req, res) => json(res, 503, { code: '10001' }))
    expect((await provision()).code).toBe(3)
    server.handle((_req, res) => json(res, 200, configAnswer({ host: 'broker.example:8883' })))
    expect((await provision()).code).toBe(0)
  })
})

describe('TLS verification failures: exit 7, suggesting --ca', () => {
  test('an untrusted CA', async () => {
    const result = await run('provision', server.url, '--data', data)
    expect(result.code).toBe(7)
    expect(result.output).toMatch(/TLS certificate failed verification \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|[A-Z_]+)\)/)
    expect(result.output).toContain('--ca <file>')
    expect(server.requests).toHaveLength(0)
  })

  test('a certificate for another host', async () => {
    const result = await run('provision', wrongHost.url, '--data', data, '--ca', caFile)
    expect(result.code).toBe(7)
    expect(result.output).toContain('ERR_TLS_CERT_ALTNAME_INVALID')
    expect(result.output).toContain('not for 127.0.0.1')
    expect(result.output).toContain('--ca <file>')
  })
})

describe('--ca, --cert, --key that are not PEM: usage errors (exit 2) before any request', () => {
  const file = async (name: string, content: string | Buffer) => {
    const path = join(dir, name)
    await writeFile(path, content)
    return path
  }

  test.each([
    ['an empty file', '', /--ca: \S+ is not PEM/],
    ['a text file', 'not a certificate\n', /--ca: \S+ is not PEM/],
    ['DER bytes', Buffer.from([0x30, 0x82, 0x01, 0x0a, 0x02, 0x82]), /is not PEM .*openssl x509 -inform der/],
    ['a private key', 'KEY', /--ca: \S+ is a private key, not a certificate/],
    ['a broken certificate', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', /does not parse/],
  ])('--ca with %s', async (name, content, message) => {
    const path = await file(`ca-${name.replaceAll(' ', '-')}.pem`, content === 'KEY' ? tls.key : content)
    const result = await run('provision', server.url, '--data', data, '--ca', path)
    expect(result.code).toBe(2)
    expect(result.output).toMatch(message)
    expect(result.output).not.toContain(tls.key.split('\n')[1])
    expect(server.requests).toHaveLength(0)
  })

  test('--cert not PEM, --key not a key, and a key that is not the certificate’s', async () => {
    const text = await file('text.pem', 'hello\n')
    const cert = await file('client.pem', tls.client.cert)
    const key = await file('client.key', tls.client.key)
    const otherKey = await file('other.key', tls.wrongHost.key)
    const notCert = await run('provision', server.url, '--data', data, '--ca', caFile, '--cert', text, '--key', key)
    expect(notCert.code).toBe(2)
    expect(notCert.output).toContain(`--cert: ${text} is not PEM`)
    const notKey = await run('provision', server.url, '--data', data, '--ca', caFile, '--cert', cert, '--key', cert)
    expect(notKey.code).toBe(2)
    expect(notKey.output).toContain(`--key: ${cert} is not a PEM private key`)
    const mismatch = await run(
      'provision',
      server.url,
      '--data',
      data,
      '--ca',
      caFile,
      '--cert',
      cert,
      '--key',
      otherKey,
    )
    expect(mismatch.code).toBe(2)
    expect(mismatch.output).toContain(`--key ${otherKey} is not the private key of --cert ${cert}`)
    for (const result of [notCert, notKey, mismatch]) {
      expect(result.output).not.toContain(tls.client.key.split('\n')[1])
      expect(result.output).not.toContain(tls.wrongHost.key.split('\n')[1])
    }
    expect(server.requests).toHaveLength(0)
  })

  test('the same check guards `check`', async () => {
    const text = await file('check-ca.pem', 'hello\n')
    const result = await run('check', server.url, '--data', data, '--ca', text)
    expect(result.code).toBe(2)
    expect(result.output).toContain(`--ca: ${text} is not PEM`)
    expect(server.requests).toHaveLength(0)
  })
})

describe('--key-file signs the claim, as the device does', () => {
  test('the request carries the signature headers; without --key-file it carries none; a key file others can read is exit 2', async () => {
    const keyFile = join(dir, 'device.key')
    const key = randomBytes(32).toString('base64')
    suite.secret(key)
    await writeFile(keyFile, `${key}\n`, { mode: 0o600 })
    server.handle((_req, res) => json(res, 200, configAnswer({ host: '127.0.0.1:1883' })))
    const signed = await provision('--key-file', keyFile)
    expect(signed.code, signed.output).toBe(0)
    const headers = server.requests[0]?.headers ?? {}
    expect(headers['signature-input']).toMatch(
      new RegExp(
        `^sig1=\\("@method" "@target-uri" "content-digest"\\);created=\\d+;nonce="[\\w-]{22}";alg="hmac-sha256";keyid="${Object.values(KNOWN)[0]}"$`,
      ),
    )
    expect(headers['content-digest']).toMatch(/^sha-256=:[A-Za-z0-9+/]{43}=:$/)
    expect(signed.output).not.toContain(key.slice(0, 12))

    const unsigned = await provision()
    expect(unsigned.code).toBe(0)
    expect(server.requests[1]?.headers.signature).toBeUndefined()

    const open = join(dir, 'open.key')
    await writeFile(open, `${key}\n`, { mode: 0o644 })
    const refused = await provision('--key-file', open)
    expect(refused.code).toBe(2)
    expect(refused.output).toMatch(/readable by others/)
    expect(server.requests).toHaveLength(2)
    expect((await provision('--key-id', 'x')).code).toBe(2)
  })
})
