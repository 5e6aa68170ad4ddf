/**
 * Signed claims (issue 14), against the build (dist/), on loopback only:
 * - CPU per provisioning request, signed against unsigned, side by side in one run: PointAccess with `attestation` and
 *   without (one each, keep-alive), in batches, the two in a random order each round; the device's CPU
 *   (process.cpuUsage around the batch) and the server's (its own process, asked before and after the batch) per
 *   request. The server answers `/signed` with `verify: signedClaims(…)` over a MemoryNonceStore and `/plain` with the
 *   same handler without verify (bench/claims-process.ts). Targets: each difference under 0.2 ms.
 * - signClaim alone, per call.
 * - The enumeration attack (bench/lib/enumeration.ts): `serve` over 300 devices, 2,100 sequential IMEIs from one
 *   address, with `"attestation": "none"` and with a group key (both `--no-limits`), and "none" behind serve's
 *   default abuse limits: the secrets handed out.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { deriveDeviceKey, PointAccess } from 'mqtt-bootstrap'
import { signClaim } from 'mqtt-bootstrap/contract'
import {
  type EnumerationResult,
  enumerate,
  ISSUE_SETUP,
  startServe,
  writeEnumerationRegistry,
} from './lib/enumeration.js'
import { startProcess } from './lib/processes.js'
import { median, round, rounds } from './lib/stats.js'

export interface ClaimsBench {
  /** CPU µs per request, medians over the rounds. */
  device: { unsignedUs: number; signedUs: number; extraUs: number }
  server: { plainUs: number; verifyUs: number; extraUs: number; verifierUs: number }
  /** signClaim alone, µs per call (wall clock, one after the other). */
  signClaimUs: number
  rounds: number
  batch: number
  enumeration: { none: EnumerationResult; signed: EnumerationResult; limited: EnumerationResult }
}

/** The CLI as users get it: the build. */
const SERVE = [process.execPath, 'packages/mqtt-bootstrap-server/dist/cli.mjs']

export async function benchClaims({ rounds: count = 60, batch = 25 } = {}): Promise<ClaimsBench> {
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-bench-claims-'))
  try {
    const cpu = await cpuPerRequest(dir, count, batch)
    return {
      ...cpu,
      signClaimUs: await signClaimCost(2000),
      rounds: count,
      batch,
      enumeration: await enumeration(dir),
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function cpuPerRequest(dir: string, count: number, batch: number) {
  const groupKey = randomBytes(64).toString('base64')
  const caFile = join(dir, 'claims-ca.pem')
  const server = await startProcess('bench/claims-process.ts', { GROUP_KEY: groupKey, CA_FILE: caFile })
  try {
    const ca = await readFile(caFile, 'utf8')
    const base = `https://127.0.0.1:${server.port}`
    const imei = '356930114000008'
    const data = { imei }
    const signer = new PointAccess({ tls: { ca }, attestation: { keyId: imei, key: deriveDeviceKey(groupKey, imei) } })
    const plain = new PointAccess({ tls: { ca } })
    const serverUs: Record<'signed' | 'unsigned', number[]> = { signed: [], unsigned: [] }
    const verifierUs: number[] = []
    type VerifyCpu = { us: number; calls: number }
    const ms = (usage: NodeJS.CpuUsage) => usage.user + usage.system
    const run = (name: 'signed' | 'unsigned', access: PointAccess, url: string) => async () => {
      const serverBefore = ms(await server.ask<NodeJS.CpuUsage>('cpu'))
      const verifierBefore = await server.ask<VerifyCpu>('verify-cpu')
      const before = process.cpuUsage()
      for (let i = 0; i < batch; i++) {
        const code = await access.request(url, data)
        if (code !== '00000') throw new Error(`${name} request answered ${code}`)
      }
      const used = ms(process.cpuUsage(before)) / batch
      serverUs[name].push((ms(await server.ask<NodeJS.CpuUsage>('cpu')) - serverBefore) / batch)
      if (name === 'signed') {
        const verifier = await server.ask<VerifyCpu>('verify-cpu')
        verifierUs.push((verifier.us - verifierBefore.us) / (verifier.calls - verifierBefore.calls))
      }
      return used
    }
    const samples = await rounds(
      { signed: run('signed', signer, `${base}/signed`), unsigned: run('unsigned', plain, `${base}/plain`) },
      { iterations: count, warmup: 3, maxMs: 120_000 },
    )
    // The warm-up rounds' server samples come first: left out, as their device samples are.
    const measured = (values: number[]) => values.slice(values.length - samples.signed.length)
    const device = { unsignedUs: round(median(samples.unsigned), 1), signedUs: round(median(samples.signed), 1) }
    const srv = {
      plainUs: round(median(measured(serverUs.unsigned)), 1),
      verifyUs: round(median(measured(serverUs.signed)), 1),
      verifierUs: round(median(measured(verifierUs)), 1),
    }
    return {
      device: { ...device, extraUs: round(device.signedUs - device.unsignedUs, 1) },
      server: { ...srv, extraUs: round(srv.verifyUs - srv.plainUs, 1) },
    }
  } finally {
    await server.stop()
  }
}

async function signClaimCost(calls: number): Promise<number> {
  const key = { keyId: '356930114000008', key: randomBytes(32) }
  const request = { method: 'POST', url: 'https://127.0.0.1:8443/bootstrap', body: '{"imei":"356930114000008"}' }
  for (let i = 0; i < 200; i++) await signClaim(key, request, Date.now())
  const times: number[] = []
  for (let i = 0; i < calls; i++) {
    const started = performance.now()
    await signClaim(key, request, Date.now())
    times.push((performance.now() - started) * 1000)
  }
  return round(median(times), 1)
}

async function enumeration(dir: string): Promise<ClaimsBench['enumeration']> {
  /** serve with --no-limits unless `limits`: attestation alone (issue 14), or beside the abuse limits (issue 15). */
  const attack = async (name: string, attestation: unknown, limits = false) => {
    const registry = join(dir, `${name}.json`)
    writeEnumerationRegistry(registry, ISSUE_SETUP, attestation)
    const server = await startServe(SERVE, registry, dir, name, limits ? [] : ['--no-limits'])
    try {
      return await enumerate(server, ISSUE_SETUP)
    } finally {
      await server.stop()
    }
  }
  return {
    none: await attack('none', 'none'),
    signed: await attack('signed', { groupKey: randomBytes(64).toString('base64'), identity: 'imei' }),
    limited: await attack('limited', 'none', true),
  }
}

/** The bench table's rows. */
export function claimsRows(claims: ClaimsBench): string[][] {
  const { device, server, enumeration: e } = claims
  const share = (r: EnumerationResult) => `${r.secrets} of ${ISSUE_SETUP.devices} secrets in ${r.ms} ms`
  return [
    [
      `signed claim, device CPU per request (PointAccess, keep-alive; signClaim alone ${claims.signClaimUs} µs)`,
      `${device.signedUs} µs`,
      `${device.unsignedUs} µs`,
      `+${round(device.extraUs / 1000, 3)} ms`,
      '< +0.2 ms',
    ],
    [
      'signed claim, the verifier itself, server CPU per claim (signedClaims over a MemoryNonceStore)',
      `${server.verifierUs} µs`,
      '',
      `${round(server.verifierUs / 1000, 3)} ms`,
      '< 0.2 ms',
    ],
    [
      'signed claim, server CPU per request (signedClaims, MemoryNonceStore vs no verify)',
      `${server.verifyUs} µs`,
      `${server.plainUs} µs`,
      `+${round(server.extraUs / 1000, 3)} ms`,
      '< +0.2 ms',
    ],
    [
      `enumeration: serve, ${ISSUE_SETUP.devices} devices, ${ISSUE_SETUP.range} sequential IMEIs (attestation vs none)`,
      share(e.signed),
      share(e.none),
      '',
      '0 secrets',
    ],
    [
      `enumeration: the same, "none" behind serve's abuse limits (429 after 10 failures a minute)`,
      `${share(e.limited)} (${e.limited.answers['77777 (429)'] ?? 0} answered 429)`,
      share(e.none),
      '',
      '',
    ],
  ]
}
