/** `mqtt-bootstrap provision <url>`: one PointAccess request; prints the code and the (redacted) configuration. */
import { PointAccess, type ProvisioningError, ResultCode } from 'mqtt-bootstrap'
import { REDACTED } from 'mqtt-bootstrap/contract'
import { keyIdOf } from './check.js'
import { EXIT, parseIntegerOption, parseJsonOption, table, UsageError } from './io.js'
import { readDeviceKey } from './key-files.js'
import { tlsFromFiles } from './pem.js'

export interface ProvisionFlags {
  data: string
  ca?: string
  cert?: string
  key?: string
  header?: Record<string, string>
  timeout?: string
  allowInsecureHttp?: boolean
  showSecrets?: boolean
  json?: boolean
  keyFile?: string
  keyId?: string
}

export async function provisionCommand(url: string, flags: ProvisionFlags): Promise<number> {
  const data = parseJsonOption(flags.data, '--data')
  const attestation = await attestationOf(flags, data)
  const pa = new PointAccess({
    ...(attestation === undefined ? {} : { attestation }),
    tls: tlsFromFiles(flags),
    allowInsecureHttp: flags.allowInsecureHttp ?? false,
    ...(flags.timeout === undefined ? {} : { timeoutMs: parseIntegerOption(flags.timeout, '--timeout') }),
  })
  const code = await pa.request(url, data, { headers: flags.header ?? {} })
  const secret = (value: string | null) =>
    value === null || value === '' ? null : flags.showSecrets ? value : REDACTED
  const { device, connect } = pa.deviceConfig
  const config =
    code === ResultCode.SUCCESS
      ? {
          device: { ...device, deviceSecret: secret(device.deviceSecret), productSecret: secret(device.productSecret) },
          connect,
        }
      : undefined
  const error = pa.lastError === null ? undefined : { code: pa.lastError.code, message: pa.lastError.message }
  const diagnosis = diagnose(pa.lastError, url)

  if (flags.json) {
    const hint = diagnosis?.hint
    console.log(
      JSON.stringify(
        { code, ...(config ? { config } : {}), ...(error ? { error } : {}), ...(hint ? { hint } : {}) },
        null,
        2,
      ),
    )
  } else if (config) {
    console.log(
      table([
        ['code', `${code} (configuration received)`],
        ['productKey', device.productKey],
        ['deviceName', device.deviceName],
        [
          'deviceSecret',
          `${config.device.deviceSecret ?? 'none'}${flags.showSecrets ? '' : '  (--show-secrets to print)'}`,
        ],
        ['productSecret', String(config.device.productSecret ?? 'none')],
        ['host', connect.host],
        ['qos', String(connect.qos)],
        ['cleanSession', String(connect.cleanSession)],
      ]),
    )
  } else {
    console.log(
      table([
        ['code', code],
        ['reason', `${error?.message} (${error?.code})`],
      ]),
    )
  }
  if (diagnosis !== undefined) {
    console.error(`error: ${diagnosis.hint}`)
    return diagnosis.exit
  }
  if (code === ResultCode.SUCCESS) return EXIT.OK
  if (code === ResultCode.TRANSIENT) return EXIT.TRANSIENT
  if (code === ResultCode.INVALID_RESPONSE) return EXIT.INVALID_RESPONSE
  return EXIT.REFUSED
}

/** The device's key (`--key-file`) and key id (`--key-id`, else the value of `--data`'s only field), if given. */
async function attestationOf(
  flags: ProvisionFlags,
  data: unknown,
): Promise<{ keyId: string; key: Buffer } | undefined> {
  if (flags.keyFile === undefined) {
    if (flags.keyId !== undefined) throw new UsageError('--key-id goes with --key-file')
    return undefined
  }
  return { keyId: keyIdOf(flags.keyId, data), key: await readDeviceKey(flags.keyFile) }
}

/**
 * Outcomes that are the operator's to fix, not the device's: an answer from something that is no provisioning
 * endpoint, and a certificate the client does not trust. Each has an exit code of its own, not that of its "99999" or
 * "77777", so that a script can tell a wrong URL or a missing --ca from a refusal or a server that is down.
 */
function diagnose(error: ProvisioningError | null, url: string): { exit: number; hint: string } | undefined {
  if (error === null) return undefined
  if (error.code === 'ERR_PROVISION_HTTP_STATUS' && !error.transient) {
    const status = error.status ?? 0
    const why =
      status >= 300 && status < 400
        ? 'a redirect, which is not followed: give the URL it points to'
        : status === 401
          ? 'without a claim refusal ("10004"/"10005"): does something in front of the server want credentials (--header)?'
          : status === 403
            ? 'forbidden: not a provisioning endpoint, or a proxy or firewall in front of it?'
            : 'not a provisioning endpoint? Check the URL, its path included (mqtt-bootstrap serve: /bootstrap)'
    return { exit: EXIT.HTTP_STATUS, hint: `the server answered HTTP ${status}: ${why}` }
  }
  if (error.code === 'ERR_PROVISION_TLS') {
    const reason = (error.cause as { code?: unknown } | undefined)?.code
    const host = new URL(url).hostname
    const why =
      reason === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? `its certificate is not for ${host} (mqtt-bootstrap serve --san ${host} adds a name); a private CA goes in --ca <file>`
        : reason === 'CERT_HAS_EXPIRED'
          ? 'its certificate has expired; a private CA goes in --ca <file>'
          : 'if it uses a private CA, trust it with --ca <file> (mqtt-bootstrap serve writes its CA to --ca-out)'
    return {
      exit: EXIT.TLS,
      hint: `the server's TLS certificate failed verification (${String(reason ?? 'unknown reason')}): ${why}`,
    }
  }
  return undefined
}
