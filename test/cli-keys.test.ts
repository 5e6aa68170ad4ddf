/**
 * `mqtt-bootstrap keys group` and `keys derive` as the factory runs them, as real processes: a group key written once
 * with mode 0600 and never printed; device keys that match DPS's published vector (test/vectors/clouds.json) and an
 * HMAC computed here with node:crypto; the group key from a file, standard input or the environment, never an
 * argument; a CSV in and out, a bad line named; a key file others can read refused.
 */
import { spawn } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { once } from 'node:events'
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'

const CLI = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
const VECTOR = (
  JSON.parse(readFileSync('test/vectors/clouds.json', 'utf8')) as {
    deriveDeviceKey: Array<{ groupKey: string; deviceId: string; deviceKey: string }>
  }
).deriveDeviceKey[0] as { groupKey: string; deviceId: string; deviceKey: string }

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** The CLI as a process, with `input` on its standard input and `env` added; bounded in time. */
async function keys(args: string[], { input = '', env = {} }: { input?: string; env?: NodeJS.ProcessEnv } = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'keys', ...args], {
    env: { ...process.env, MQTT_BOOTSTRAP_GROUP_KEY: '', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  child.stdin.end(input)
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code] = (await once(child, 'close')) as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr } satisfies Run
}

/** An independent derivation: HMAC-SHA256 over the id, keyed with the group key's bytes. */
const hmac = (groupKey: string, id: string) =>
  createHmac('sha256', Buffer.from(groupKey, 'base64')).update(id, 'utf8').digest('base64')

let dir: string
let vectorKey: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-keys-'))
  vectorKey = join(dir, 'vector.key')
  writeFileSync(vectorKey, `${VECTOR.groupKey}\n`, { mode: 0o600 })
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe('keys group', () => {
  test('writes 64 random bytes as base64 with mode 0600, prints nothing of it, never over an existing file', async () => {
    const out = join(dir, 'group.key')
    const first = await keys(['group', '--out', out])
    expect(first.code, first.stderr).toBe(0)
    expect(statSync(out).mode & 0o777).toBe(0o600)
    const key = readFileSync(out, 'utf8')
    expect(key).toMatch(/^[A-Za-z0-9+/]{86}==\n$/)
    expect(Buffer.from(key.trim(), 'base64')).toHaveLength(64)
    expect(first.stdout).toBe('')
    expect(first.stderr).toMatch(/wrote a new group key .*mode 0600/)
    expect(`${first.stdout}${first.stderr}`).not.toContain(key.trim().slice(0, 16))

    const again = await keys(['group', '--out', out])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/exists: nothing written \(--force replaces it\)/)
    expect(readFileSync(out, 'utf8')).toBe(key)

    // The file it derives from: the same key, read back.
    const derived = await keys(['derive', '--group-key-file', out, '--id', '860000000000001'])
    expect(derived.stdout).toBe(`${hmac(key.trim(), '860000000000001')}\n`)
  })

  test('--force replaces a file (even one others could read) with a new key, mode 0600', async () => {
    const out = join(dir, 'forced.key')
    writeFileSync(out, 'old\n', { mode: 0o644 })
    chmodSync(out, 0o644)
    const run = await keys(['group', '--out', out, '--force'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stderr).toMatch(/warning: replacing the group key in .*every device key derived from the old one/)
    expect(readFileSync(out, 'utf8')).toMatch(/^[A-Za-z0-9+/]{86}==\n$/)
    expect(statSync(out).mode & 0o777).toBe(0o600)
  })

  test('the file may be given as an argument instead of --out; neither, or both, is a usage error', async () => {
    const out = join(dir, 'positional.key')
    const run = await keys(['group', out])
    expect(run.code, run.stderr).toBe(0)
    expect(readFileSync(out, 'utf8')).toMatch(/^[A-Za-z0-9+/]{86}==\n$/)
    expect(statSync(out).mode & 0o777).toBe(0o600)
    expect((await keys(['group'])).code).toBe(2)
    expect((await keys(['group', join(dir, 'a2.key'), '--out', join(dir, 'b2.key')])).code).toBe(2)
  })

  test('two runs make two different keys; a directory that does not exist is exit 1 and writes nothing', async () => {
    const [a, b] = [join(dir, 'a.key'), join(dir, 'b.key')]
    await keys(['group', '--out', a])
    await keys(['group', '--out', b])
    expect(readFileSync(a, 'utf8')).not.toBe(readFileSync(b, 'utf8'))
    const missing = await keys(['group', '--out', join(dir, 'no-such-dir', 'g.key')])
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/cannot write .*ENOENT/)
  })
})

describe('keys derive --id', () => {
  test("prints DPS's published vector key alone, from a file, standard input or the environment", async () => {
    const id = VECTOR.deviceId
    const fromFile = await keys(['derive', '--group-key-file', vectorKey, '--id', id])
    const fromStdin = await keys(['derive', '--group-key-file', '-', '--id', id], { input: `${VECTOR.groupKey}\n` })
    const fromEnv = await keys(['derive', '--id', id], { env: { MQTT_BOOTSTRAP_GROUP_KEY: VECTOR.groupKey } })
    for (const run of [fromFile, fromStdin, fromEnv]) {
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toBe(`${VECTOR.deviceKey}\n`)
    }
  })

  test('--out writes the key alone with mode 0600, never over a file, and prints nothing of it', async () => {
    const out = join(dir, 'device.key')
    const run = await keys(['derive', '--group-key-file', vectorKey, '--id', VECTOR.deviceId, '--out', out])
    expect(run.code, run.stderr).toBe(0)
    expect(readFileSync(out, 'utf8')).toBe(`${VECTOR.deviceKey}\n`)
    expect(statSync(out).mode & 0o777).toBe(0o600)
    expect(`${run.stdout}${run.stderr}`).not.toContain(VECTOR.deviceKey.slice(0, 12))
    const again = await keys(['derive', '--group-key-file', vectorKey, '--id', 'other', '--out', out])
    expect(again.code).toBe(2)
    expect(readFileSync(out, 'utf8')).toBe(`${VECTOR.deviceKey}\n`)
    const column = await keys(['derive', '--group-key-file', vectorKey, '--id', 'x', '--column', 'imei'])
    expect(column.code).toBe(2)
    expect(column.stderr).toMatch(/--column and --no-header go with --csv/)
    const both = await keys(
      ['derive', '--group-key-file', vectorKey, '--csv', '-', '--no-header', '--column', 'imei'],
      {
        input: '860000000000001\n',
      },
    )
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/--column names a header column: not with --no-header/)
  })

  test('a group key is never an argument; without one the command says where to put it', async () => {
    const asArgument = await keys(['derive', '--group-key', VECTOR.groupKey, '--id', 'x'])
    expect(asArgument.code).toBe(2)
    expect(asArgument.stderr).toMatch(/unknown option '--group-key'/)
    const none = await keys(['derive', '--id', 'x'])
    expect(none.code).toBe(2)
    expect(none.stderr).toMatch(/no group key: give --group-key-file .* or set MQTT_BOOTSTRAP_GROUP_KEY/)
  })

  test('a group key file readable by group or others is refused, the key not quoted', async () => {
    const open = join(dir, 'open.key')
    writeFileSync(open, `${VECTOR.groupKey}\n`)
    chmodSync(open, 0o640)
    const run = await keys(['derive', '--group-key-file', open, '--id', 'x'])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/readable by others \(mode 0640\): chmod 600/)
    expect(run.stdout).toBe('')
  })

  test.each([
    ['text', 'not a key at all'],
    ['base64url', VECTOR.groupKey.replaceAll('+', '-').replaceAll('/', '_')],
    ['too short (8 bytes)', 'AAAAAAAAAAA='],
    ['empty', ''],
  ])('a group key that is %s is a usage error that never quotes it', async (_name, value) => {
    const file = join(dir, `bad-${_name.replaceAll(/\W/g, '')}.key`)
    writeFileSync(file, value, { mode: 0o600 })
    const run = await keys(['derive', '--group-key-file', file, '--id', 'x'])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/not a group key/)
    if (value !== '') expect(run.stderr).not.toContain(value.slice(0, 8))
  })

  test('an identity that is not printable ASCII, or has a space at an end, is refused', async () => {
    for (const id of ['86000 ', 'ímei']) {
      const run = await keys(['derive', '--group-key-file', vectorKey, '--id', id])
      expect(run.code, id).toBe(2)
      expect(run.stdout).toBe('')
    }
  })
})

describe('keys derive --csv', () => {
  const ids = ['860000000000001', VECTOR.deviceId, '860000000000003']

  test('a header, quoted fields, CRLF and empty lines in; the same columns and a key column out', async () => {
    const input = join(dir, 'devices.csv')
    writeFileSync(
      input,
      `\uFEFFimei,label\r\n${ids[0]},"meter, hall"\r\n\r\n"${ids[1]}","say ""hi"""\n${ids[2]},"two\nlines"\n\n`,
    )
    const run = await keys(['derive', '--group-key-file', vectorKey, '--csv', input])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe(
      [
        'imei,label,key',
        `${ids[0]},"meter, hall",${hmac(VECTOR.groupKey, ids[0] as string)}`,
        `${ids[1]},"say ""hi""",${VECTOR.deviceKey}`,
        `${ids[2]},"two\nlines",${hmac(VECTOR.groupKey, ids[2] as string)}`,
        '',
      ].join('\n'),
    )
  })

  test('--column picks the identity; --no-header takes the first field; --out writes 0600 and only once', async () => {
    const input = join(dir, 'named.csv')
    writeFileSync(input, `serial,deviceId\nS1,${ids[0]}\nS2,${ids[1]}\n`)
    const out = join(dir, 'named-keys.csv')
    const named = await keys([
      'derive',
      '--group-key-file',
      vectorKey,
      '--csv',
      input,
      '--column',
      'deviceId',
      '--out',
      out,
    ])
    expect(named.code, named.stderr).toBe(0)
    expect(named.stdout).toBe('')
    expect(named.stderr).toMatch(/wrote 2 device key\(s\)/)
    expect(statSync(out).mode & 0o777).toBe(0o600)
    expect(readFileSync(out, 'utf8')).toBe(
      `serial,deviceId,key\nS1,${ids[0]},${hmac(VECTOR.groupKey, ids[0] as string)}\nS2,${ids[1]},${VECTOR.deviceKey}\n`,
    )
    const again = await keys([
      'derive',
      '--group-key-file',
      vectorKey,
      '--csv',
      input,
      '--column',
      'deviceId',
      '--out',
      out,
    ])
    expect(again.code).toBe(2)

    const bare = join(dir, 'bare.csv')
    writeFileSync(bare, `${ids[1]}\n${ids[0]}\n`)
    const headerless = await keys(['derive', '--csv', '-', '--no-header'], {
      input: readFileSync(bare, 'utf8'),
      env: { MQTT_BOOTSTRAP_GROUP_KEY: VECTOR.groupKey },
    })
    expect(headerless.code, headerless.stderr).toBe(0)
    expect(headerless.stdout).toBe(
      `${ids[1]},${VECTOR.deviceKey}\n${ids[0]},${hmac(VECTOR.groupKey, ids[0] as string)}\n`,
    )
  })

  test.each([
    [
      'a row with another number of fields',
      'imei,label\n860000000000001,a\n860000000000002\n',
      /line 3: 1 field\(s\), the first line has 2/,
    ],
    [
      'a quote left open',
      'imei\n860000000000001\n"860000000000002\n860000000000003\n',
      /line 3: a quoted field is never closed/,
    ],
    ['a quote inside a field', 'imei\n8600"01\n', /line 2: a quote inside an unquoted field/],
    ['text after a closing quote', 'imei\n"86"01\n', /line 2: text after a closing quote/],
    [
      'an identity twice',
      'imei\n860000000000001\n860000000000002\n860000000000001\n',
      /line 4: the identity 860000000000001 is on line 2 already/,
    ],
    ['an empty identity', 'imei,label\n,a\n', /line 2: an empty identity/],
    ['a space at an end', 'imei\n860000000000001 \n', /line 2: the identity "860000000000001 " has spaces at an end/],
    ['no identity column', 'serial,label\nS1,a\n', /line 1: no id or imei column in the header \(serial, label\)/],
    ['a header and nothing else', 'imei\n\n', /no identities after the header/],
  ])('%s: exit 2, the line named, nothing printed or written', async (_name, csv, message) => {
    const out = join(dir, `bad-${Math.random().toString(36).slice(2)}.csv`)
    const run = await keys(['derive', '--csv', '-', '--out', out], {
      input: csv,
      env: { MQTT_BOOTSTRAP_GROUP_KEY: VECTOR.groupKey },
    })
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(message)
    expect(run.stdout).toBe('')
    expect(existsSync(out)).toBe(false)
  })

  test('standard input cannot be both the group key and the CSV; --id and --csv exclude each other', async () => {
    const both = await keys(['derive', '--group-key-file', '-', '--csv', '-'])
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/not both/)
    const neither = await keys(['derive', '--group-key-file', vectorKey])
    expect(neither.code).toBe(2)
    expect(neither.stderr).toMatch(/either --id <id> or --csv <file>/)
  })
})
