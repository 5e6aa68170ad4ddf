/**
 * The enumeration attack of issue 14, against `mqtt-bootstrap serve` as a real process: a registry of a batch of
 * devices with sequential IMEIs (a TAC, a serial, a Luhn check digit), and an attacker who POSTs every IMEI of the
 * range, one after the other from one address, and counts the device secrets it gets back. Loopback only; the loop is
 * bounded by the range and each request by a timeout. Shared by bench/claims.ts and test/enumeration.test.ts, so it
 * imports neither package: each caller says how to start `serve`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'

/** A TAC (the model's 8 digits) and the first serial of the batch. */
const TAC = '35693011'
const FIRST_SERIAL = 400_000

/** The IMEI of serial `n` of the batch: TAC, 6-digit serial, Luhn check digit (as printed on the box). */
export function imei(n: number): string {
  const body = `${TAC}${String(FIRST_SERIAL + n).padStart(6, '0')}`
  let sum = 0
  for (let i = 0; i < body.length; i++) {
    const digit = Number(body[body.length - 1 - i])
    const doubled = i % 2 === 0 ? digit * 2 : digit
    sum += doubled > 9 ? doubled - 9 : doubled
  }
  return `${body}${(10 - (sum % 10)) % 10}`
}

export interface EnumerationSetup {
  /** Devices in the registry: every `range / devices`-th serial of the range. */
  devices: number
  /** IMEIs the attacker tries: serials 0 to range - 1. */
  range: number
}

export const ISSUE_SETUP: EnumerationSetup = { devices: 300, range: 2100 }

/** The registry file: `attestation` as given ("none", or a group key declaration). */
export function writeEnumerationRegistry(path: string, setup: EnumerationSetup, attestation: unknown): string[] {
  const step = Math.floor(setup.range / setup.devices)
  const secrets: string[] = []
  const devices = Array.from({ length: setup.devices }, (_, i) => {
    const deviceSecret = `enum-secret-${i}-${(i * 2654435761).toString(16)}`
    secrets.push(deviceSecret)
    return {
      match: { imei: imei(i * step) },
      device: { productKey: 'a1EnumPK01', deviceName: `meter-${i}`, deviceSecret },
    }
  })
  writeFileSync(
    path,
    JSON.stringify({ version: 1, attestation, defaults: { connect: { host: 'broker.example:8883' } }, devices }),
    { mode: 0o600 },
  )
  return secrets
}

export interface ServeProcess {
  url: string
  ca: string
  child: ChildProcess
  stop(): Promise<void>
}

/**
 * `serve` over `registry` on 127.0.0.1, a free port, its CA in `dir`: `command` is how to run the CLI (the build's
 * `dist/cli.mjs` for the bench, the sources under tsx for the tests).
 */
export async function startServe(
  command: string[],
  registry: string,
  dir: string,
  name: string,
  more: readonly string[] = [],
): Promise<ServeProcess> {
  const caOut = join(dir, `${name}-ca.pem`)
  const [program, ...args] = command as [string, ...string[]]
  const child = spawn(program, [...args, 'serve', '--registry', registry, '--port', '0', '--ca-out', caOut, ...more], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  let listening = false
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start in 30 s:\n${output}`)), 30_000)
    // Read to the end: once it listens the access log is dropped, so that the pipe never fills.
    const read = (chunk: Buffer) => {
      if (listening) return
      output += chunk.toString()
      const match = /listening on (https:\/\/\S+)/.exec(output)
      if (match) {
        listening = true
        clearTimeout(timer)
        resolve(match[1] as string)
      }
    }
    child.stdout?.on('data', read)
    child.stderr?.on('data', read)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`serve exited with ${code}:\n${output}`))
    })
  })
  return {
    url,
    ca: readFileSync(caOut, 'utf8'),
    child,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}

export interface EnumerationResult {
  attempts: number
  /** Answers `"00000"` with a device secret in them. */
  secrets: number
  /** Answers per `code` (HTTP status in brackets). */
  answers: Record<string, number>
  ms: number
}

/**
 * POST `{ imei }` for every serial of the range, sequentially, over one keep-alive connection (one address); `sign`
 * adds headers to each request (e.g. a signature with a key the attacker made up).
 */
export async function enumerate(
  server: { url: string; ca: string },
  setup: EnumerationSetup,
  sign?: (url: string, body: string) => Promise<Record<string, string>>,
): Promise<EnumerationResult> {
  const dispatcher = new Agent({ connect: { ca: server.ca }, connections: 1 })
  const result: EnumerationResult = { attempts: 0, secrets: 0, answers: {}, ms: 0 }
  const started = performance.now()
  try {
    for (let n = 0; n < setup.range; n++) {
      const body = JSON.stringify({ imei: imei(n) })
      const extra = sign === undefined ? {} : await sign(server.url, body)
      const response = await request(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...extra },
        body,
        dispatcher,
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      })
      const answer = (await response.body.json()) as { code?: string; result?: { device?: { deviceSecret?: string } } }
      result.attempts++
      const key = `${answer.code} (${response.statusCode})`
      result.answers[key] = (result.answers[key] ?? 0) + 1
      if (answer.code === '00000' && (answer.result?.device?.deviceSecret ?? '') !== '') result.secrets++
    }
  } finally {
    result.ms = Math.round(performance.now() - started)
    await dispatcher.close()
  }
  return result
}
