/** `mqtt-bootstrap check <url>`: the conformance checker, as a pass/fail table. */
import { checkProvisioningServer } from '../check.js'
import { EXIT, parseIntegerOption, parseJsonOption, table } from './io.js'
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
}

const MARK = { pass: 'PASS', fail: 'FAIL', warn: 'WARN', skip: 'SKIP' } as const

export async function checkCommand(url: string, flags: CheckFlags): Promise<number> {
  const report = await checkProvisioningServer({
    url,
    data: parseJsonOption(flags.data, '--data'),
    ...(flags.unknownData === undefined ? {} : { unknownData: parseJsonOption(flags.unknownData, '--unknown-data') }),
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
