/**
 * `mqtt-bootstrap serve` as an operator runs it, as a real process: the generated CA is written only once the server
 * listens, kept with its key (0600) and reused by a restart (the CA file byte-identical, devices that trust it keep
 * working); a second start on a busy port fails and changes nothing; one access-log line per request.
 */
import type { ChildProcess } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { chmodSync, existsSync, readFileSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type ChildRun, runTs } from './helpers/child.js'
import { DEVICE } from './helpers/https-server.js'
import { freePort } from './helpers/ports.js'
import { KNOWN, writeRegistry } from './helpers/reference-server.js'
import { useServeProcesses } from './helpers/serve.js'
import { tlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const CLI = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
const run = (...args: string[]): Promise<ChildRun> => runTs(CLI, args, { timeoutMs: 30_000 })

let dir: string
let registry: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-serve-'))
  registry = join(dir, 'devices.json')
  writeRegistry(registry, 'mqtts://broker.example:8883')
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const processes = useServeProcesses()

/** Start `serve` over this file's registry, wait for it to have started. */
const serve = (args: string[]) => processes.serve(['--registry', registry, ...args])

async function stop(child: ChildProcess): Promise<number | null> {
  child.kill('SIGTERM')
  const [code, signal] = (await once(child, 'close')) as [number | null, string | null]
  expect(signal, 'serve handles SIGTERM itself').toBeNull()
  return code
}

const provision = (url: string, ca: string) => run('provision', url, '--data', JSON.stringify(KNOWN), '--ca', ca)

describe('serve keeps its CA', () => {
  test('first start writes the CA and its key (0600) after listening; a restart reuses both, byte-identical', async () => {
    const caOut = join(dir, 'keep-ca.pem')
    const port = String(await freePort())
    const first = await serve(['--port', port, '--ca-out', caOut])
    const ca = readFileSync(caOut)
    const key = readFileSync(`${caOut}.key`)
    expect(statSync(`${caOut}.key`).mode & 0o777).toBe(0o600)
    expect(ca.toString()).toContain('BEGIN CERTIFICATE')
    expect(key.toString()).toContain('PRIVATE KEY')
    expect((await provision(first.url, caOut)).code).toBe(0)
    expect(await stop(first.child)).toBe(0)

    const second = await serve(['--port', port, '--ca-out', caOut])
    expect(readFileSync(caOut).equals(ca)).toBe(true)
    expect(readFileSync(`${caOut}.key`).equals(key)).toBe(true)
    // A device that trusted the first start's CA trusts the second's certificate.
    const again = await provision(second.url, caOut)
    expect(again.output).toMatch(/code\s+00000/)
    expect(again.code).toBe(0)
    const presented = await new Promise<X509Certificate>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port: Number(port), ca: ca.toString() }, () => {
        const { raw } = socket.getPeerCertificate()
        socket.end()
        resolve(new X509Certificate(raw))
      })
      socket.on('error', reject)
    })
    // A new server certificate (new key) every start, signed by the same CA.
    const authority = new X509Certificate(ca)
    expect(presented.checkIssued(authority)).toBe(true)
    expect(presented.verify(authority.publicKey)).toBe(true)
    expect(await stop(second.child)).toBe(0)
    for (const output of [first.output(), second.output()]) {
      expect(output).not.toContain('PRIVATE KEY')
      expect(output).not.toContain(key.toString().split('\n')[1])
    }
  })

  test('--ca-key names another place for the key; the default one is not written', async () => {
    const caOut = join(dir, 'custom-ca.pem')
    const caKey = join(dir, 'secret', 'custom-ca.key')
    await mkdir(join(dir, 'secret'))
    const port = String(await freePort())
    const first = await serve(['--port', port, '--ca-out', caOut, '--ca-key', caKey])
    expect(statSync(caKey).mode & 0o777).toBe(0o600)
    expect(existsSync(`${caOut}.key`)).toBe(false)
    const ca = readFileSync(caOut)
    expect(await stop(first.child)).toBe(0)
    const second = await serve(['--port', port, '--ca-out', caOut, '--ca-key', caKey])
    expect(readFileSync(caOut).equals(ca)).toBe(true)
    expect((await provision(second.url, caOut)).code).toBe(0)
    await stop(second.child)
  })

  test('a second start on the busy port fails with a message and exit 1, and breaks nothing', async () => {
    const caOut = join(dir, 'busy-ca.pem')
    const port = String(await freePort())
    const first = await serve(['--port', port, '--ca-out', caOut])
    const ca = readFileSync(caOut)
    const key = readFileSync(`${caOut}.key`)
    const caMtime = statSync(caOut).mtimeMs

    const second = await run('serve', '--registry', registry, '--port', port, '--ca-out', caOut)
    expect(second.code).toBe(1)
    expect(second.output).toMatch(/cannot listen on 127\.0\.0\.1:\d+: the port is in use/)
    expect(readFileSync(caOut).equals(ca)).toBe(true)
    expect(readFileSync(`${caOut}.key`).equals(key)).toBe(true)
    expect(statSync(caOut).mtimeMs).toBe(caMtime)
    // The devices that trust the first start still get their configuration from it.
    expect((await provision(first.url, caOut)).code).toBe(0)
    await stop(first.child)
  })

  test('a first start that cannot listen writes no CA at all', async () => {
    const caOut = join(dir, 'never-ca.pem')
    const blocker = createServer().listen(0, '127.0.0.1')
    await once(blocker, 'listening')
    try {
      const { port } = blocker.address() as { port: number }
      const failed = await run('serve', '--registry', registry, '--port', String(port), '--ca-out', caOut)
      expect(failed.code).toBe(1)
      expect(failed.output).toContain('Nothing was written')
      expect(existsSync(caOut)).toBe(false)
      expect(existsSync(`${caOut}.key`)).toBe(false)
    } finally {
      blocker.close()
    }
  })

  test('a CA file without its key is a usage error that leaves the file alone', async () => {
    const caOut = join(dir, 'orphan-ca.pem')
    await writeFile(caOut, 'an old CA\n')
    const failed = await run('serve', '--registry', registry, '--port', '0', '--ca-out', caOut)
    expect(failed.code).toBe(2)
    expect(failed.output).toContain(`${caOut}.key`)
    expect(failed.output).toContain('--ca-key')
    expect(readFileSync(caOut, 'utf8')).toBe('an old CA\n')
    expect(existsSync(`${caOut}.key`)).toBe(false)
  })

  test('a kept CA key readable by others is refused (exit 2, chmod 600 suggested), not used', async () => {
    const caOut = join(dir, 'loose-ca.pem')
    const first = await serve(['--port', '0', '--ca-out', caOut])
    expect(await stop(first.child)).toBe(0)
    chmodSync(`${caOut}.key`, 0o644)
    const before = readFileSync(`${caOut}.key`)
    const again = await run('serve', '--registry', registry, '--port', '0', '--ca-out', caOut)
    expect(again.code, again.output).toBe(2)
    expect(again.output).toContain(`chmod 600 ${caOut}.key`)
    expect(again.output).not.toContain('PRIVATE KEY')
    expect(readFileSync(`${caOut}.key`).equals(before)).toBe(true)
  })

  test("a key that is not the CA's is a usage error", async () => {
    const a = join(dir, 'a-ca.pem')
    const b = join(dir, 'b-ca.pem')
    for (const caOut of [a, b]) {
      const started = await serve(['--port', '0', '--ca-out', caOut])
      await stop(started.child)
    }
    const failed = await run('serve', '--registry', registry, '--port', '0', '--ca-out', a, '--ca-key', `${b}.key`)
    expect(failed.code).toBe(2)
    expect(failed.output).toContain('is not the key of the CA')
    expect(failed.output).not.toContain('PRIVATE KEY')
  })

  test('--cert that is not PEM, or a --key that is not its key, is a usage error', async () => {
    const notPem = join(dir, 'not.pem')
    await writeFile(notPem, 'hello\n')
    const bad = await run('serve', '--registry', registry, '--port', '0', '--cert', notPem, '--key', notPem)
    expect(bad.code).toBe(2)
    expect(bad.output).toContain(`--cert: ${notPem} is not PEM`)
    const tls = await tlsFixture()
    const cert = join(dir, 'server.pem')
    const otherKey = join(dir, 'other.key')
    await writeFile(cert, tls.cert)
    await writeFile(otherKey, tls.wrongHost.key)
    const mismatch = await run('serve', '--registry', registry, '--port', '0', '--cert', cert, '--key', otherKey)
    expect(mismatch.code).toBe(2)
    expect(mismatch.output).toContain(`--key ${otherKey} is not the private key of --cert ${cert}`)
    const keyAsCert = await run('serve', '--registry', registry, '--port', '0', '--cert', otherKey, '--key', otherKey)
    expect(keyAsCert.code).toBe(2)
    expect(keyAsCert.output).toContain('is a private key, not a certificate')
    expect(keyAsCert.output).not.toContain(tls.wrongHost.key.split('\n')[1])
  })
})

describe('serve logs one line per request', () => {
  test('time, peer, method, path, status, code, identity (4 characters and length); 404s and TLS failures too', async () => {
    const caOut = join(dir, 'log-ca.pem')
    const server = await serve(['--port', '0', '--ca-out', caOut])
    const lines = () => server.output().split('\n')
    expect((await provision(server.url, caOut)).code).toBe(0)
    expect((await run('provision', server.url, '--data', '{"imei":"860000000000999"}', '--ca', caOut)).code).toBe(5)
    const wrongPath = server.url.replace('/bootstrap', '/nope?token=S3CRET')
    expect((await run('provision', wrongPath, '--data', JSON.stringify(KNOWN), '--ca', caOut)).code).toBe(6)
    expect((await run('provision', server.url, '--data', JSON.stringify(KNOWN))).code).toBe(7) // no --ca
    const get = await new Promise<number | undefined>((resolve, reject) =>
      https
        .get(server.url, { ca: readFileSync(caOut), agent: false }, (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode))
        })
        .on('error', reject),
    )
    expect(get).toBe(405)
    await until(
      () => lines().some((l) => l.includes('TLS handshake failed')) && lines().some((l) => l.includes(' GET ')),
      5000,
      'the TLS failure and GET lines',
    )

    const time = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
    expect(lines()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^${time} 127\\.0\\.0\\.1 POST /bootstrap 200 00000 8600…\\(15\\)$`)),
        expect.stringMatching(new RegExp(`^${time} 127\\.0\\.0\\.1 POST /bootstrap 200 10001 8600…\\(15\\)$`)),
        expect.stringMatching(new RegExp(`^${time} 127\\.0\\.0\\.1 POST /nope 404 10404 -$`)),
        expect.stringMatching(new RegExp(`^${time} 127\\.0\\.0\\.1 GET /bootstrap 405 10002 -$`)),
        expect.stringMatching(new RegExp(`^${time} 127\\.0\\.0\\.1 TLS handshake failed \\(\\S+\\)$`)),
      ]),
    )
    expect(server.output()).not.toContain(KNOWN.imei)
    expect(server.output()).not.toContain('860000000000999')
    expect(server.output()).not.toContain('S3CRET')
    expect(server.output()).not.toContain(DEVICE.deviceSecret)
    expect(await stop(server.child)).toBe(0)
  })

  test('a request the handler cuts off (413) and one Node refuses before any handler (400) keep their peer', async () => {
    const caOut = join(dir, 'log-ca-2.pem')
    const server = await serve(['--port', '0', '--ca-out', caOut])
    const lines = () => server.output().split('\n')
    const target = new URL(server.url)
    const ca = readFileSync(caOut)
    const tooLarge = await new Promise<number | undefined>((resolve) => {
      const req = https.request(target, { method: 'POST', ca, agent: false }, (res) => {
        res.resume()
        resolve(res.statusCode)
      })
      req.on('error', () => resolve(undefined)) // the server may close before the whole body is sent
      req.setHeader('content-type', 'application/json')
      req.end(`{"imei":"${'8'.repeat(200_000)}"}`)
    })
    expect([413, undefined]).toContain(tooLarge)
    const malformed = connect({ host: target.hostname, port: Number(target.port), ca, servername: 'localhost' })
    await once(malformed, 'secureConnect')
    malformed.end('BAD\tMETHOD / HTTP/1.1\r\nhost: x\r\n\r\n')
    const answer = await new Promise<string>((resolve) => {
      let text = ''
      malformed.on('data', (chunk: Buffer) => {
        text += chunk.toString()
      })
      malformed.on('close', () => resolve(text))
    })
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    await until(
      () => lines().some((l) => / 413 /.test(l)) && lines().some((l) => / 400 - - \(/.test(l)),
      5000,
      'both lines',
    )

    const time = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`
    expect(lines()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(new RegExp(`^${time} 127\\.0\\.0\\.1 POST /bootstrap 413 10002 -$`)),
        expect.stringMatching(new RegExp(`^${time} 127\\.0\\.0\\.1 - - 400 - - \\(HPE_\\w+\\)$`)),
      ]),
    )
    expect(await stop(server.child)).toBe(0)
  })
})
