/**
 * Azure IoT Hub with a SAS token, as Azure/azure-sdk-for-c's az_iot_hub_client_sas.c: the string to sign
 * `${urlencoded(hostName/devices/deviceId)}\n${se}`, its HMAC-SHA256 keyed by the base64-decoded key, base64 then
 * URL-encoded, in `SharedAccessSignature sr=…&sig=…&se=…`; clientId the deviceId, username
 * `${hostName}/${deviceId}/?api-version=…`. IoT Hub closes a connection when its token expires; the session's
 * reconnect signs a fresh one.
 */
import { fail, isPlainObject, typeName } from '../option-checks.js'
import {
  base64Key,
  expiryAt,
  type FreshnessOptions,
  factoryOptions,
  freshness,
  hmac,
  lifetimeOption,
  orUndefined,
  refuseSeparators,
  type Signed,
  sameText,
  seconds,
  signFor,
  text,
} from './fields.js'
import type { AuthStrategy } from './strategy.js'

export interface AzureSasInput {
  /** The IoT hub's host name, `{hub}.azure-devices.net`. */
  hostName: string
  deviceId: string
  /** The device's symmetric key, base64. */
  key: string
  /** Seconds since the epoch: the token's `se`. */
  expiry: number
}

/** The API version of the username, as Azure's own device SDKs send it. */
const AZURE_API_VERSION = '2021-04-12'

/** The CONNECT fields for Azure IoT Hub (SAS token of a device's symmetric key). */
export function signAzureSas(input: AzureSasInput): Signed {
  const hostName = text(input.hostName, 'hostName')
  const deviceId = text(input.deviceId, 'deviceId')
  const se = seconds(input.expiry, 'expiry')
  const sr = encodeURIComponent(`${hostName}/devices/${deviceId}`)
  const sig = hmac('sha256', base64Key(input.key, 'key'), `${sr}\n${se}`).toString('base64')
  return {
    clientId: deviceId,
    username: `${hostName}/${deviceId}/?api-version=${AZURE_API_VERSION}`,
    password: `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}`,
  }
}

export interface AzureAuthOptions {
  /** How long a SAS token is valid, in whole seconds, at most a day. @default 3600 (Azure's device SDKs') */
  lifetimeSeconds?: number
  /**
   * The hub's host name signed for, when the broker URL's host is not it (a gateway or an address in between).
   * @default the broker URL's host name
   */
  hostName?: string
}

const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/

const FIELDS = { deviceId: 'deviceName', key: 'deviceSecret' } as const

/**
 * The `azure` strategy: hostName the broker URL's host (the server's `connect.host`: the hub) unless the option names
 * it, deviceId the deviceName, key the deviceSecret (base64); productKey is not sent. `se` is the injected clock's time
 * plus `lifetimeSeconds`, at every (re)connect.
 */
export function azureAuth(options?: AzureAuthOptions): AuthStrategy {
  const given = factoryOptions(options, ['lifetimeSeconds', 'hostName'])
  const lifetime = lifetimeOption(given.lifetimeSeconds)
  const fixedHost = given.hostName
  if (fixedHost !== undefined && (typeof fixedHost !== 'string' || !HOST_NAME.test(fixedHost))) {
    fail('hostName', 'a host name (letters, digits, `.` and `-`)', typeName(fixedHost))
  }
  return {
    name: 'azure',
    defaultPort: 8883,
    sign: (device, { brokerUrl, now }) => {
      // A `/` in the deviceId would make the username and the token's resource another device's.
      refuseSeparators('azure', device, /\//, '`/`', ['deviceName'])
      return signFor('azure', FIELDS, () =>
        signAzureSas({
          hostName: (fixedHost as string | undefined) ?? new URL(brokerUrl).hostname,
          deviceId: device.deviceName,
          key: device.deviceSecret,
          expiry: expiryAt(now, lifetime),
        }),
      )
    },
  }
}

export interface AzureVerifyOptions extends FreshnessOptions {
  /** The hub's host name the token must be for (required: a token for another hub is refused). */
  hostName: string
}

/**
 * Broker side: check CONNECT fields signed by {@link signAzureSas}. `deviceKey` looks the base64 key up by deviceId
 * (the clientId; undefined: unknown device). Returns the identity, or `undefined` when the check fails: a password
 * that is not a device token `SharedAccessSignature sr=…&sig=…&se=…` (one with a policy name, `skn`, is refused), a
 * resource or username naming another hub or device, an expiry past (beyond `maxSkewMs`) or further ahead than
 * `maxLifetimeSeconds`, an unknown device or a wrong signature (compared in constant time). A stored key that is not
 * base64 verifies nothing. Throws an InvalidOptionError only for a bad option (`hostName` missing, say).
 */
export function verifyAzureSas(
  connect: { clientId: string; username?: string | undefined; password?: string | Buffer | undefined },
  deviceKey: (deviceId: string) => string | undefined,
  options: AzureVerifyOptions,
): { hostName: string; deviceId: string; expiry: number } | undefined {
  if (!isPlainObject(options)) fail('options', "an object with the hub's `hostName`", typeName(options))
  const fresh = freshness(options)
  if (typeof options.hostName !== 'string' || options.hostName === '') {
    fail('hostName', "the hub's host name", typeName(options.hostName))
  }
  const token = parseToken(connect.password?.toString() ?? '')
  const deviceId = connect.clientId
  if (token === undefined || deviceId === '') return undefined
  const suffix = `/devices/${deviceId}`
  const hostName = token.resource.endsWith(suffix) ? token.resource.slice(0, -suffix.length) : ''
  if (hostName !== options.hostName) return undefined
  if (!(connect.username ?? '').startsWith(`${hostName}/${deviceId}/?`)) return undefined
  const { expiry } = token
  if (!fresh(expiry)) return undefined
  const key = deviceKey(deviceId)
  if (key === undefined) return undefined
  const wanted = orUndefined(() => hmac('sha256', base64Key(key, 'key'), `${token.sr}\n${token.se}`).toString('base64'))
  return wanted !== undefined && sameText(token.sig, wanted) ? { hostName, deviceId, expiry } : undefined
}

/** The fields of a device SAS token, or undefined. `sr` and `se` as sent (they are what was signed). */
function parseToken(password: string) {
  const prefix = 'SharedAccessSignature '
  if (!password.startsWith(prefix)) return undefined
  const fields = new Map<string, string>()
  for (const pair of password.slice(prefix.length).split('&')) {
    const at = pair.indexOf('=')
    if (at <= 0 || fields.has(pair.slice(0, at))) return undefined
    fields.set(pair.slice(0, at), pair.slice(at + 1))
  }
  const sr = fields.get('sr')
  const sig = fields.get('sig')
  const se = fields.get('se')
  if (sr === undefined || sig === undefined || se === undefined || fields.size !== 3 || !/^\d{1,15}$/.test(se)) {
    return undefined
  }
  try {
    return { sr, se, resource: decodeURIComponent(sr), sig: decodeURIComponent(sig), expiry: Number(se) }
  } catch {
    return undefined // a malformed %-escape
  }
}
