/**
 * `mqtt-bootstrap registry …` and `serve --database` as an operator runs them: real processes (the CLI's source under
 * tsx) against a real PostgreSQL (test/helpers/postgres.ts), a database of their own per test. Every command's success
 * and its errors (exit 2 for usage and a bad CSV, 1 for a database that cannot be reached, its password never shown),
 * the PG* variables instead of --database; then serve handing out triplets from the pool to signed claims, refusing
 * revoked identities and an exhausted pool, refusing to start without an attestation or a broker, and answering 503
 * while the database is down, serving again once it is back without a restart.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { type ChildRun, runTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { freePort } from './helpers/ports.js'
import { type Postgres, postgresSkipReason, startPostgres } from './helpers/postgres.js'
import { useServeProcesses } from './helpers/serve.js'
import { signClaimIndependently } from './helpers/sign-claim.js'

const CLI = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
const GROUP_KEY = randomBytes(64).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
/** Clearly fake secrets, looked for in every output. */
const SECRETS = ['FAKE-secret-one-0001', 'FAKE-secret-two-0002', 'FAKE-secret-three-0003'] as const
const PASSWORD = 'FAKE-db-password-77'
const IMEI = ['860000000000001', '860000000000002', '860000000000003', '860000000000004'] as const
for (const secret of [GROUP_KEY, PASSWORD, ...SECRETS, ...IMEI.map(derive)]) suite.secret(secret)

/** The console's export: a byte order mark, CRLF, a quoted field, the columns in its order. */
const CSV =
  '\uFEFFProductKey,DeviceName,DeviceSecret\r\n' +
  `a1FakeProd,dev-001,${SECRETS[0]}\r\n` +
  `"a1FakeProd","dev-002","${SECRETS[1]}"\r\n`

let pg: Postgres
let dir: string
let keyFile: string
let files = 0

function file(name: string, text: string, mode = 0o600): string {
  const path = join(dir, `${++files}-${name}`)
  writeFileSync(path, text, { mode })
  return path
}

function expectNoSecret(output: string): void {
  for (const secret of [GROUP_KEY, PASSWORD, ...SECRETS, ...IMEI.map(derive)]) expect(output).not.toContain(secret)
}

const run = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildRun> =>
  runTs(CLI, args, { timeoutMs: 60_000, env })

/** `registry <command> --database <db> <args>`, its output checked for secrets. */
async function registry(db: string, command: string, ...args: string[]): Promise<ChildRun> {
  const result = await run(['registry', command, '--database', db, ...args])
  expectNoSecret(result.output)
  return result
}

describe.skipIf(postgresSkipReason())('registry commands and serve --database, on PostgreSQL', () => {
  beforeAll(async () => {
    pg = await startPostgres()
    dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-cli-registry-'))
    keyFile = file('group.key', `${GROUP_KEY}\n`)
  }, 60_000)
  afterAll(async () => {
    await pg?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  describe('registry', () => {
    test('migrate applies the migrations once, then is up to date', { timeout: 60_000 }, async () => {
      const db = await pg.database()
      const first = await registry(db, 'migrate')
      expect(first.code, first.output).toBe(0)
      expect(first.output).toMatch(/applied 0001_registry/)
      const again = await registry(db, 'migrate')
      expect(again.code).toBe(0)
      expect(again.output).toMatch(/up to date/)
    })

    test('configure sets what it is given, prints the settings (the key file by its path), refuses bad ones', {
      timeout: 90_000,
    }, async () => {
      const db = await pg.database()
      await registry(db, 'migrate')
      const empty = await registry(db, 'configure')
      expect(empty.code).toBe(0)
      expect(empty.output).toMatch(/attestation\s+not configured/)
      expect(empty.output).toMatch(/connect\s+not configured, serve refuses to start: .*registry configure --host/)
      const set = await registry(db, 'configure', '--host', 'mqtts://broker.example:8883', '--qos', '0')
      expect(set.code, set.output).toBe(0)
      const signed = await registry(db, 'configure', '--group-key-file', keyFile, '--identity', 'imei')
      expect(signed.code, signed.output).toBe(0)
      const shown = await registry(db, 'configure')
      expect(shown.output).toContain(`group key in ${keyFile}, identity field imei`)
      expect(shown.output).toMatch(/connect\s+mqtts:\/\/broker\.example:8883, qos 0, clean session 1/)
      expect(shown.output).toMatch(/claims\s+allow-list/)
      expect((await registry(db, 'configure', '--claims', 'any-signed')).code).toBe(0)

      const loose = file('loose.key', `${GROUP_KEY}\n`, 0o644)
      const refused = [
        ['--group-key-file', loose],
        ['--group-key-file', keyFile, '--attestation', 'none'],
        ['--attestation', 'none'], // claims are any-signed now: they need the group key
        ['--qos', '2'],
        ['--host', 'http://broker.example'],
        ['--group-key-file', join(dir, 'missing.key')],
      ]
      for (const args of refused) {
        const result = await registry(db, 'configure', ...args)
        expect(result.code, `${args.join(' ')}: ${result.output}`).toBe(2)
      }
      expect((await registry(db, 'configure', '--group-key-file', loose)).output).toContain(`chmod 600 ${loose}`)
      // Nothing refused changed anything.
      expect((await registry(db, 'configure')).output).toContain(`group key in ${keyFile}`)
    })

    test('import adds the console export to the pool once; a bad line imports nothing and names its line', {
      timeout: 90_000,
    }, async () => {
      const db = await pg.database()
      await registry(db, 'migrate')
      const csv = file('triplets.csv', CSV)
      const first = await registry(db, 'import', '--csv', csv)
      expect(first.code, first.output).toBe(0)
      expect(first.output).toMatch(/2 added to the pool, 0 already there/)
      const again = await registry(db, 'import', '--csv', csv)
      expect(again.output).toMatch(/0 added to the pool, 2 already there/)

      const bad = file(
        'bad.csv',
        `ProductKey,DeviceName,DeviceSecret\na1FakeProd,dev-003,${SECRETS[2]}\na1FakeProd,dev-004\n`,
      )
      const refused = await registry(db, 'import', '--csv', bad)
      expect(refused.code).toBe(2)
      expect(refused.output).toMatch(/line 3: 2 field\(s\), the header has 3/)
      const noHeader = await registry(
        db,
        'import',
        '--csv',
        file('no-header.csv', `a1FakeProd,dev-005,${SECRETS[2]}\n`),
      )
      expect(noHeader.code).toBe(2)
      expect(noHeader.output).toMatch(/line 1: the header has no ProductKey, DeviceName, DeviceSecret column/)
      const open = await registry(
        db,
        'import',
        '--csv',
        file('open.csv', `ProductKey,DeviceName,DeviceSecret\n"a1,b,c\n`),
      )
      expect(open.code).toBe(2)
      expect(open.output).toMatch(/line 2: a quoted field is never closed/)
      const other = await registry(
        db,
        'import',
        '--csv',
        file('other.csv', `ProductKey,DeviceName,DeviceSecret\na1FakeProd,dev-001,${SECRETS[2]}\n`),
      )
      expect(other.code).toBe(2)
      expect(other.output).toMatch(/another secret; nothing was imported/)
      expect((await registry(db, 'import', '--csv', join(dir, 'missing.csv'))).code).toBe(2)

      const listing = await registry(db, 'list', '--json')
      expect(JSON.parse(listing.output).triplets).toEqual({ total: 2, free: 2, assigned: 0 })
    })

    test('allow (--identity, repeated, and --file), revoke, allow again; list shows it, as text and JSON', {
      timeout: 90_000,
    }, async () => {
      const db = await pg.database()
      await registry(db, 'migrate')
      const allowed = await registry(db, 'allow', '--identity', IMEI[0], IMEI[1], '--identity', IMEI[0])
      expect(allowed.code, allowed.output).toBe(0)
      expect(allowed.output).toMatch(/allowed 2 identities: 2 added, 0 restored \(were revoked\), 0 already allowed/)
      const list = file('identities.txt', `# the second batch\r\n\r\n${IMEI[1]}\r\n  ${IMEI[2]}  \n`)
      const fromFile = await registry(db, 'allow', '--file', list)
      expect(fromFile.output).toMatch(/allowed 2 identities: 1 added, 0 restored \(were revoked\), 1 already allowed/)
      const revoked = await registry(db, 'revoke', '--identity', IMEI[1], IMEI[3])
      expect(revoked.code).toBe(0)
      expect(revoked.output).toMatch(/revoked 2\n/)
      expect((await registry(db, 'revoke', '--identity', IMEI[1])).output).toMatch(/revoked 0, 1 already revoked/)
      // Not a keyid (not ASCII), as the library API may allow with "attestation": "none": revocable all the same.
      expect((await registry(db, 'revoke', '--identity', 'séríal-7')).output).toMatch(/revoked 1\n/)
      const restored = await registry(db, 'allow', '--identity', IMEI[1])
      expect(restored.output).toMatch(/0 added, 1 restored/)

      const json = await registry(db, 'list', '--json')
      expect(json.code).toBe(0)
      const listing = JSON.parse(json.output)
      expect(listing.triplets).toEqual({ total: 0, free: 0, assigned: 0 })
      expect(listing.identities.map((row: { identity: string }) => row.identity)).toEqual([...IMEI, 'séríal-7'])
      expect(listing.identities[0]).toEqual({ identity: IMEI[0], allowedAt: expect.any(String) })
      expect(new Date(listing.identities[0].allowedAt).getTime()).toBeGreaterThan(Date.now() - 120_000)
      expect(listing.identities[3]).toEqual({
        identity: IMEI[3],
        allowedAt: expect.any(String),
        revokedAt: expect.any(String),
      })
      const text = await registry(db, 'list')
      expect(text.output).toMatch(/triplets: 0 in the pool, 0 free, 0 assigned/)
      expect(text.output).toMatch(new RegExp(`${IMEI[3]}\\s+revoked`))

      for (const args of [[], ['--identity', ' 860000000000009'], ['--file', join(dir, 'missing.txt')]]) {
        const result = await registry(db, 'allow', ...args)
        expect(result.code, `${args.join(' ')}: ${result.output}`).toBe(2)
      }
      expect((await run(['registry', 'revoke', '--database', db])).code).toBe(2)
    })

    test('without --database, the PG* environment variables name the database', { timeout: 60_000 }, async () => {
      const db = await pg.database()
      const { port, pathname } = new URL(db)
      const env = { PGHOST: '127.0.0.1', PGPORT: port, PGUSER: 'postgres', PGDATABASE: pathname.slice(1) }
      const migrated = await run(['registry', 'migrate'], env)
      expect(migrated.code, migrated.output).toBe(0)
      expect(migrated.output).toContain(`postgres://127.0.0.1:${port}${pathname}: applied 0001_registry`)
      expect((await run(['registry', 'allow', '--identity', IMEI[0]], env)).code).toBe(0)
      const listing = await run(['registry', 'list', '--json'], env)
      expect(JSON.parse(listing.output).identities).toHaveLength(1)
    })

    test('a database that cannot be reached is exit 1, naming host:port, never the password', {
      timeout: 60_000,
    }, async () => {
      const port = await freePort()
      const url = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/nowhere`
      for (const args of [['migrate'], ['list'], ['allow', '--identity', IMEI[0]]]) {
        const result = await run(['registry', ...args, '--database', url])
        expect(result.code, result.output).toBe(1)
        expect(result.output).toContain(`127.0.0.1:${port}`)
        expect(result.output).toMatch(/ECONNREFUSED|is PostgreSQL running/)
        expect(result.output).not.toContain(PASSWORD)
      }
      const env = await run(['registry', 'list'], { PGHOST: '127.0.0.1', PGPORT: String(port), PGPASSWORD: PASSWORD })
      expect(env.code).toBe(1)
      expect(env.output).toContain(`127.0.0.1:${port}`)
      expect(env.output).not.toContain(PASSWORD)
      const notUrl = await run(['registry', 'list', '--database', `mysql://root:${PASSWORD}@127.0.0.1/x`])
      expect(notUrl.code).toBe(2)
      expect(notUrl.output).not.toContain(PASSWORD)
    })
  })

  describe('serve --database', () => {
    const processes = useServeProcesses()

    /** A migrated database with a broker, the group key, the CSV's two triplets and the first three IMEIs allowed. */
    async function prepared(options: { attestation?: boolean; host?: boolean } = {}): Promise<string> {
      const db = await pg.database()
      await registry(db, 'migrate')
      if (options.host !== false) await registry(db, 'configure', '--host', 'mqtts://broker.example:8883')
      if (options.attestation !== false) await registry(db, 'configure', '--group-key-file', keyFile)
      await registry(db, 'import', '--csv', file('pool.csv', CSV))
      await registry(db, 'allow', '--identity', ...IMEI.slice(0, 3))
      return db
    }

    async function serve(db: string, ...more: string[]) {
      const caOut = join(dir, `ca-${++files}.pem`)
      const started = await processes.serve(['--database', db, '--port', '0', '--ca-out', caOut, ...more])
      const agent = new Agent({ connect: { ca: readFileSync(caOut, 'utf8') } })
      /** A claim of `imei`, signed with its derived key unless `signed` is false. */
      const claim = async (imei: string, signed = true) => {
        const body = JSON.stringify({ imei })
        const created = Math.floor(Date.now() / 1000)
        const headers = signed
          ? signClaimIndependently({ key: derive(imei), keyId: imei, url: started.url, body, created }).headers
          : {}
        const response = await request(started.url, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json', ...headers },
          body,
        })
        const answer = (await response.body.json()) as { code: string; result?: { device: Record<string, string> } }
        return { status: response.statusCode, retryAfter: response.headers['retry-after'], ...answer }
      }
      return { ...started, claim, close: () => agent.close() }
    }

    async function stop(child: import('node:child_process').ChildProcess): Promise<number | null> {
      child.kill('SIGTERM')
      const [code] = (await once(child, 'close')) as [number | null]
      return code
    }

    test('signed claims get triplets from the pool, the same again; revoked "10007", exhausted "10006"', {
      timeout: 90_000,
    }, async () => {
      const db = await prepared()
      await registry(db, 'revoke', '--identity', IMEI[2])
      const server = await serve(db)
      try {
        expect(server.output()).toMatch(/registry postgres:\/\/127\.0\.0\.1:\d+\/\w+ \(2 triplets, 2 free\)/)
        expect(server.output()).toMatch(/nonces, limits and re-claims shared in PostgreSQL/)
        const first = await server.claim(IMEI[0])
        expect(first.code, server.output()).toBe('00000')
        const device = first.result?.device
        expect(device).toEqual(expect.objectContaining({ productKey: 'a1FakeProd' }))
        expect(SECRETS.slice(0, 2)).toContain(device?.deviceSecret)
        expect((await server.claim(IMEI[0])).result?.device).toEqual(device)
        const second = await server.claim(IMEI[1])
        expect(second.code).toBe('00000')
        expect(second.result?.device.deviceName).not.toBe(device?.deviceName)
        expect((await server.claim(IMEI[2])).code).toBe('10007')
        await registry(db, 'allow', '--identity', IMEI[3])
        expect((await server.claim(IMEI[3])).code).toBe('10006')
        expect((await server.claim('860000000000999')).code).toBe('10001')
        expect(await server.claim(IMEI[0], false)).toMatchObject({ status: 401, code: '10004' })

        const listing = JSON.parse((await registry(db, 'list', '--json')).output)
        expect(listing.triplets).toEqual({ total: 2, free: 0, assigned: 2 })
        expect(listing.identities[0].device).toEqual({ productKey: 'a1FakeProd', deviceName: device?.deviceName })
        expect(await stop(server.child)).toBe(0)
        expectNoSecret(server.output())
      } finally {
        await server.close()
      }
    })

    test('serve refuses to start without an attestation, without a broker, with both or neither registry', {
      timeout: 90_000,
    }, async () => {
      const unsigned = await prepared({ attestation: false })
      const noAttestation = await run(['serve', '--database', unsigned, '--port', '0'])
      expect(noAttestation.code).toBe(2)
      expect(noAttestation.output).toMatch(/registry configure --group-key-file/)
      expect(noAttestation.output).not.toMatch(/listening/)
      const noHost = await run(['serve', '--database', await prepared({ host: false }), '--port', '0'])
      expect(noHost.code).toBe(2)
      expect(noHost.output).toMatch(/registry configure --host/)
      const both = await run(['serve', '--database', unsigned, '--registry', join(dir, 'devices.json')])
      expect(both.code).toBe(2)
      expect((await run(['serve', '--port', '0'])).code).toBe(2)
      const port = await freePort()
      const away = await run([
        'serve',
        '--database',
        `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/x`,
        '--port',
        '0',
      ])
      expect(away.code).toBe(1)
      expect(away.output).toContain(`127.0.0.1:${port}`)
      expect(away.output).not.toContain(PASSWORD)

      const badProxy = await run(['serve', '--database', unsigned, '--port', '0', '--trust-proxy', 'not-an-address'])
      expect(badProxy.code).toBe(2)
      expect(badProxy.output).toMatch(/--trust-proxy: /)

      // Said on the command line instead: the group key of serve's own option, then unsigned claims, warned about.
      const signed = await serve(unsigned, '--group-key-file', keyFile)
      try {
        expect(signed.output()).toMatch(/claims: signed \(RFC 9421/)
        expect((await signed.claim(IMEI[0])).code).toBe('00000')
        expect((await signed.claim(IMEI[1], false)).code).toBe('10004')
      } finally {
        await signed.close()
      }
      const server = await serve(unsigned, '--attestation', 'none')
      try {
        expect(server.output()).toMatch(/warning: --attestation none: claims are not authenticated/)
        expect((await server.claim(IMEI[1], false)).code).toBe('00000')
      } finally {
        await server.close()
      }
    })

    test('the database halted: "77777" with 503 and Retry-After; resumed: served again, no restart', {
      timeout: 120_000,
    }, async () => {
      const db = await prepared()
      const server = await serve(db)
      try {
        const first = await server.claim(IMEI[0])
        expect(first.code).toBe('00000')
        await pg.halt()
        try {
          const down = await server.claim(IMEI[1])
          expect(down).toMatchObject({ status: 503, code: '77777' })
          expect(Number(down.retryAfter)).toBeGreaterThan(0)
        } finally {
          await pg.resume()
        }
        let again = await server.claim(IMEI[0])
        for (let i = 0; i < 20 && again.code !== '00000'; i++) {
          await sleep(250)
          again = await server.claim(IMEI[0])
        }
        expect(again.code, server.output()).toBe('00000')
        expect(again.result?.device).toEqual(first.result?.device)
        expect(server.child.exitCode).toBeNull()
        expect(await stop(server.child)).toBe(0)
        expectNoSecret(server.output())
      } finally {
        await server.close()
      }
    })
  })
})
