/** `mqtt-bootstrap provision <url>`: one PointAccess request; prints the code and the (redacted) configuration. */
import { PointAccess, ResultCode } from 'mqtt-bootstrap'
import { REDACTED } from 'mqtt-bootstrap/contract'
import { EXIT, parseIntegerOption, parseJsonOption, table, tlsFromFiles } from './io.js'

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
}

export async function provisionCommand(url: string, flags: ProvisionFlags): Promise<number> {
  const data = parseJsonOption(flags.data, '--data')
  const pa = new PointAccess({
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

  if (flags.json) {
    console.log(JSON.stringify({ code, ...(config ? { config } : {}), ...(error ? { error } : {}) }, null, 2))
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
  if (code === ResultCode.SUCCESS) return EXIT.OK
  if (code === ResultCode.TRANSIENT) return EXIT.TRANSIENT
  if (code === ResultCode.INVALID_RESPONSE) return EXIT.INVALID_RESPONSE
  return EXIT.REFUSED
}
