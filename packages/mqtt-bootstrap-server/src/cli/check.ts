/** `mqtt-bootstrap check <url>`: the conformance checker, as a pass/fail table. */
import { randomBytes } from 'node:crypto'
import { deriveDeviceKey } from 'mqtt-bootstrap/contract'
import { type CheckAttestation, checkProvisioningServer } from '../check.js'
import { EXIT, parseIntegerOption, parseJsonOption, table, UsageError } from './io.js'
import { readDeviceKey, readGroupKey } from './key-files.js'
import { tlsFromFiles } from './pem.js'

export interface CheckFlags {
  data: string
  unknownData?: string
  ca?: string
  cert?: string
  key?: string
  header?: Record<string, string>
  timeout?: string
  maxLatency?: string
  json?: boolean
  /** The known device's key (base64, as `keys derive` prints it), mode 0600; `-`: standard input. */
  keyFile?: string
  /** The key id the known device signs with. @default the value of --data's only field */
  keyId?: string
  /** The group key the device keys derive from, mode 0600; `-`: standard input. */
  groupKeyFile?: string
  /** The known device's claim carries a CSR, and the certificate checks run. */
  certificate?: boolean
}

const MARK = { pass: 'PASS', fail: 'FAIL', warn: 'WARN', skip: 'SKIP' } as const

export async function checkCommand(url: string, flags: CheckFlags): Promise<number> {
  const data = parseJsonOption(flags.data, '--data')
  const unknownData =
    flags.unknownData === undefined
      ? { imei: `check-${randomBytes(6).toString('hex')}` }
      : parseJsonOption(flags.unknownData, '--unknown-data')
  const attestation = await attestationOf(flags, data, unknownData)
  const report = await checkProvisioningServer({
    url,
    data,
    unknownData,
    ...(attestation === undefined ? {} : { attestation }),
    ...(flags.certificate ? { certificate: true } : {}),
    tls: tlsFromFiles(flags),
    headers: flags.header ?? {},
    ...(flags.timeout === undefined ? {} : { timeoutMs: parseIntegerOption(flags.timeout, '--timeout') }),
    ...(flags.maxLatency === undefined ? {} : { maxLatencyMs: parseIntegerOption(flags.maxLatency, '--max-latency') }),
  })
  if (flags.json) {
    console.log(JSON.stringify(report, null, 2))
  } else {
    console.log(`Conformance of ${report.url}\n`)
    console.log(table([['', 'check', 'detail'], ...report.checks.map((c) => [MARK[c.status], c.title, c.detail])]))
    const failed = report.checks.filter((c) => c.status === 'fail').length
    console.log(`\n${report.ok ? 'conforms' : `${failed} check(s) failed`}`)
  }
  return report.ok ? EXIT.OK : EXIT.FAILED
}

/**
 * The keys to sign with: the known device's from --key-file, or both it and another device's (the unknown identity's)
 * derived from --group-key-file. None without either: the unsigned contract is checked.
 */
async function attestationOf(
  flags: CheckFlags,
  data: unknown,
  unknownData: unknown,
): Promise<CheckAttestation | undefined> {
  if (flags.keyFile !== undefined && flags.groupKeyFile !== undefined) {
    throw new UsageError('give --key-file (the device key) or --group-key-file (derive it), not both')
  }
  if (flags.keyFile === undefined && flags.groupKeyFile === undefined) {
    if (flags.keyId !== undefined) throw new UsageError('--key-id goes with --key-file or --group-key-file')
    return undefined
  }
  const keyId = keyIdOf(flags.keyId, data)
  if (flags.keyFile !== undefined) return { keyId, key: await readDeviceKey(flags.keyFile) }
  const groupKey = await readGroupKey(flags.groupKeyFile)
  const otherId = onlyValue(unknownData) ?? `check-${randomBytes(6).toString('hex')}`
  return {
    keyId,
    key: deriveDeviceKey(groupKey, keyId),
    other: { keyId: otherId, key: deriveDeviceKey(groupKey, otherId) },
  }
}

/** `--key-id`, else the value of `--data`'s only field (the device's identity): the key id a claim is signed with. */
export function keyIdOf(keyId: string | undefined, data: unknown): string {
  const id = keyId ?? onlyValue(data)
  if (id === undefined) {
    throw new UsageError(
      '--key-id: the key id the device signs with (its identity), when --data has more than one field',
    )
  }
  return id
}

/** The value of an object's only field, when it is a non-empty string (`{"imei":"8600…"}`: the IMEI). */
function onlyValue(data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null) return undefined
  const values = Object.values(data)
  return values.length === 1 && typeof values[0] === 'string' && values[0] !== '' ? values[0] : undefined
}
