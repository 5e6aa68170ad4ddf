import { once } from 'node:events'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type ChildRun, runTs, startTs } from './helpers/child.js'
import { configAnswer, DEVICE, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { KNOWN, startReferenceServer, writeRegistry } from './helpers/reference-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

let tls: TlsFixture
let dir: string
let caFile: string
let reference: Awaited<ReturnType<typeof startReferenceServer>>
beforeAll(async () => {
  tls = await tlsFixture()
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-cli-'))
  caFile = join(dir, 'ca.pem')
  await writeFile(caFile, tls.ca)
  writeRegistry(join(dir, 'devices.json'), 'mqtts://broker.example:8883')
  reference = await startReferenceServer(tls, join(dir, 'devices.json'))
})
afterAll(async () => {
  await reference.close()
  await rm(dir, { recursive: true, force: true })
})

/** Start `mqtt-bootstrap <args>` as a user would (from the checkout, through tsx). */
const start = (args: string[]) => startTs('packages/mqtt-bootstrap-server/src/cli/index.ts', args)

const run = (...args: string[]): Promise<ChildRun> =>
  runTs('packages/mqtt-bootstrap-server/src/cli/index.ts', args, { timeoutMs: 30_000 })

const data = JSON.stringify(KNOWN)

describe('mqtt-bootstrap', () => {
  test.each(['', 'provision', 'check', 'serve', 'demo'])('mqtt-bootstrap %s --help', async (command) => {
    const { code, output } = await run(...(command === '' ? [] : [command]), '--help')
    expect(code).toBe(0)
    expect(output).toContain(`Usage: mqtt-bootstrap ${command}`.trim())
    expect(output).not.toContain('mqtt-bootstrap-server')
  })

  test('usage names the program as invoked: the mqtt-bootstrap-server bin says mqtt-bootstrap-server', async () => {
    const bin = join(dir, 'bin')
    await mkdir(bin)
    for (const name of ['mqtt-bootstrap-server', 'mqtt-bootstrap']) {
      await symlink(join(process.cwd(), 'packages/mqtt-bootstrap-server/src/cli/index.ts'), join(bin, name))
    }
    const server = await runTs(join(bin, 'mqtt-bootstrap-server'), ['serve', '--help'], { timeoutMs: 30_000 })
    expect(server.code).toBe(0)
    expect(server.output).toContain('Usage: mqtt-bootstrap-server serve [options]')
    const bad = await runTs(join(bin, 'mqtt-bootstrap-server'), ['nonsense'], { timeoutMs: 30_000 })
    expect(bad.code).toBe(2)
    expect(bad.output).toContain('(add --help for usage)')
    const plain = await runTs(join(bin, 'mqtt-bootstrap'), ['--help'], { timeoutMs: 30_000 })
    expect(plain.output).toContain('Usage: mqtt-bootstrap [options] [command]')
  })

  test('provision: prints the code and the redacted configuration, exit 0', async () => {
    const { code, output } = await run('provision', reference.url, '--data', data, '--ca', caFile)
    expect(code).toBe(0)
    expect(output).toMatch(/code\s+00000/)
    expect(output).toContain(DEVICE.productKey)
    expect(output).toContain('[redacted]')
    expect(output).not.toContain(DEVICE.deviceSecret)
  })

  test('provision --show-secrets --json', async () => {
    const { code, output } = await run(
      'provision',
      reference.url,
      '--data',
      data,
      '--ca',
      caFile,
      '--show-secrets',
      '--json',
    )
    expect(code).toBe(0)
    expect(JSON.parse(output)).toMatchObject({
      code: '00000',
      config: { device: { deviceSecret: DEVICE.deviceSecret } },
    })
  })

  test('provision exit codes: 5 refused, 3 transient, 4 invalid answer, 7 TLS, 2 usage', async () => {
    expect((await run('provision', reference.url, '--data', '{"imei":"nobody"}', '--ca', caFile)).code).toBe(5)
    const closed = reference.url.replace(/:\d+\//, ':1/') // nothing listens on port 1: "77777"
    expect((await run('provision', closed, '--data', data, '--ca', caFile)).code).toBe(3)
    expect((await run('provision', reference.url, '--data', data)).code).toBe(7) // CA not trusted (test/cli-provision)
    const garbage: TestServer = await startHttpsServer(tls, (_req, res) => res.writeHead(200).end('garbage'))
    try {
      expect((await run('provision', garbage.url, '--data', data, '--ca', caFile)).code).toBe(4)
    } finally {
      await garbage.close()
    }
    const usage = await run('provision', reference.url, '--data', '{not json', '--ca', caFile)
    expect(usage).toMatchObject({ code: 2 })
    expect(usage.output).toContain('--data must be JSON')
    expect((await run('provision', reference.url, '--data', data, '--ca', join(dir, 'missing.pem'))).code).toBe(2)
    expect((await run('provision', 'http://127.0.0.1:1/x', '--data', data)).code).toBe(2)
    expect((await run('provision', reference.url)).code).toBe(2) // --data is required
  })

  test('check: a pass/fail table; exit 0 for the reference server, 1 for a broken one', async () => {
    const ok = await run('check', reference.url, '--data', data, '--ca', caFile)
    expect(ok.code).toBe(0)
    expect(ok.output).toContain('PASS')
    expect(ok.output).not.toContain('FAIL')
    expect(ok.output).toContain('conforms')
    const broken = await startHttpsServer(tls, (req, res) =>
      JSON.parse(req.body).imei === KNOWN.imei
        ? json(res, 200, configAnswer({ host: 'b:1', qos: 7 }))
        : json(res, 200, { code: '10001' }),
    )
    try {
      const failed = await run('check', broken.url, '--data', data, '--ca', caFile)
      expect(failed.code).toBe(1)
      expect(failed.output).toMatch(/FAIL\s+qos is 0, 1 or 2\s+connect\.qos/)
      expect(failed.output).not.toContain(DEVICE.deviceSecret)
    } finally {
      await broken.close()
    }
  })

  test('serve: the reference server over a registry, with a generated CA; check passes against it; SIGTERM exits 0', async () => {
    const caOut = join(dir, 'served-ca.pem')
    const { child, output } = start([
      'serve',
      '--registry',
      join(dir, 'devices.json'),
      '--port',
      '0',
      '--ca-out',
      caOut,
    ])
    try {
      const deadline = Date.now() + 20_000
      while (!/listening on (https:\/\/\S+)/.test(output()) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20))
      const url = /listening on (https:\/\/\S+)/.exec(output())?.[1]
      expect(url).toBeDefined()
      const checked = await run('check', url ?? '', '--data', data, '--ca', caOut)
      expect(checked.output).toContain('conforms')
      expect(checked.code).toBe(0)
    } finally {
      child.kill('SIGTERM')
    }
    const [code] = (await once(child, 'close')) as [number | null]
    expect(code).toBe(0)
    expect(output()).toMatch(/ POST \/bootstrap 200 00000 8600…\(15\)\n/) // the access log (test/cli-serve)
  })

  test('usage errors exit 2 without echoing what might be a secret', async () => {
    const header = await run(
      'provision',
      reference.url,
      '--data',
      data,
      '--header',
      'Authorization Bearer S3CRET-TOKEN',
    )
    expect(header.code).toBe(2)
    expect(header.output).not.toContain('S3CRET')
    for (const port of ['70000', '', '-1', 'http']) {
      expect((await run('serve', '--registry', join(dir, 'devices.json'), '--port', port)).code, port).toBe(2)
    }
    const report = await run(
      'check',
      reference.url.replace('https://', 'https://user:PASSWORD@'),
      '--data',
      data,
      '--ca',
      caFile,
      '--json',
    )
    expect(report.output).not.toContain('PASSWORD')
  })

  test('serve with a bad registry: exit 2, naming the problem', async () => {
    const bad = join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify({ version: 1, devices: [{ match: {} }] }))
    const { code, output } = await run('serve', '--registry', bad, '--port', '0')
    expect(code).toBe(2)
    expect(output).toContain('devices.0.match')
  })

  test('demo: every step works, exit 0', async () => {
    const { code, output } = await run('demo')
    expect(output).toContain('demo finished: every step worked')
    expect(code).toBe(0)
  })
})
