/**
 * Issue 14's enumeration attack against `mqtt-bootstrap serve` as a real process: 300 devices with sequential IMEIs,
 * and 2,100 sequential IMEIs POSTed from one address. With `"attestation": "none"` every device's secret comes back
 * (which shows the attack reaches them); with a group key (made by `keys group`) none does, whether the attacker sends
 * no signature or signs with a key of its own (both with `--no-limits`: what attestation alone does). Behind serve's
 * default abuse limits (issue 15), "none" leaks only what comes before the tenth failure. The figures for the docs come
 * from `BENCH_ONLY=claims npm run bench`.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { signClaim } from 'mqtt-bootstrap/contract'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  enumerate,
  ISSUE_SETUP,
  type ServeProcess,
  startServe,
  writeEnumerationRegistry,
} from '../bench/lib/enumeration.js'
import { runTs } from './helpers/child.js'

const CLI = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
const COMMAND = [process.execPath, '--import', 'tsx', CLI]

let dir: string
const servers: ServeProcess[] = []
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-enumeration-'))
})
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()))
  await rm(dir, { recursive: true, force: true })
})

/** `serve` over the registry; `--no-limits` unless `limits`: what attestation alone does (issue 14). */
async function serve(name: string, attestation: unknown, limits = false) {
  const registry = join(dir, `${name}.json`)
  const secrets = writeEnumerationRegistry(registry, ISSUE_SETUP, attestation)
  const server = await startServe(COMMAND, registry, dir, name, limits ? [] : ['--no-limits'])
  servers.push(server)
  return { server, secrets }
}

describe('2,100 sequential IMEIs against serve over 300 devices', () => {
  test('"attestation": "none": every one of the 300 secrets is handed out', { timeout: 60_000 }, async () => {
    const { server } = await serve('none', 'none')
    const result = await enumerate(server, ISSUE_SETUP)
    expect(result.attempts).toBe(2100)
    expect(result.secrets).toBe(300)
    expect(result.answers).toEqual({ '00000 (200)': 300, '10001 (200)': 1800 })
  })

  test('"none" behind serve\'s default abuse limits: 10 failures, then 429s; only the secrets before them leak', {
    timeout: 60_000,
  }, async () => {
    const { server } = await serve('limited', 'none', true)
    const result = await enumerate(server, ISSUE_SETUP)
    expect(result.attempts).toBe(2100)
    expect(result.answers['10001 (200)']).toBe(10)
    expect(result.answers['77777 (429)']).toBe(2100 - 10 - result.secrets)
    // The registry's devices are every 7th IMEI: before the 10th failure, two of them.
    expect(result.secrets).toBeLessThan(5)
  })

  test("with a group key: 0 secrets, unsigned or signed with a key of the attacker's own", {
    timeout: 90_000,
  }, async () => {
    const groupKeyFile = join(dir, 'group.key')
    const made = await runTs(CLI, ['keys', 'group', '--out', groupKeyFile], { timeoutMs: 30_000 })
    expect(made.code, made.output).toBe(0)
    const { server } = await serve('signed', { groupKeyFile, identity: 'imei' })

    const unsigned = await enumerate(server, ISSUE_SETUP)
    expect(unsigned.attempts).toBe(2100)
    expect(unsigned.secrets).toBe(0)
    expect(unsigned.answers).toEqual({ '10004 (401)': 2100 })

    // An attacker's own key: a valid signature over the wrong key tells known from unknown IMEIs no better.
    const guessed = randomBytes(32)
    const forged = await enumerate(server, ISSUE_SETUP, async (url, body) => ({
      ...(await signClaim(
        { keyId: (JSON.parse(body) as { imei: string }).imei, key: guessed },
        { method: 'POST', url, body },
        Date.now(),
      )),
    }))
    expect(forged.secrets).toBe(0)
    expect(forged.answers).toEqual({ '10004 (401)': 2100 })
  })
})
