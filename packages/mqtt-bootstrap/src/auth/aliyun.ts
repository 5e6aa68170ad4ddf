/**
 * Alibaba Cloud IoT Platform MQTT signing ("one secret per device"), as in aliyun/iotkit-embedded's dev_sign:
 * clientId `${cid}|securemode=S,signmethod=M,timestamp=T|`, username `${deviceName}&${productKey}`, password the
 * lower-case hex HMAC of "clientId{cid}deviceName{dn}productKey{pk}timestamp{T}" keyed by the device secret.
 */
import { isSecureBrokerUrl } from '../broker-url.js'
import { AuthError, InvalidOptionError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import type { AuthStrategy, MqttCredentials } from './strategy.js'

export const ALIYUN_SIGN_METHODS = ['hmacsha256', 'hmacsha1', 'hmacmd5'] as const
export type AliyunSignMethod = (typeof ALIYUN_SIGN_METHODS)[number]

const HASH: Record<AliyunSignMethod, string> = { hmacsha256: 'sha256', hmacsha1: 'sha1', hmacmd5: 'md5' }

export interface AliyunSignInput {
  /** The client identifier inside the signed clientId, usually `${productKey}.${deviceName}`. */
  cid: string
  productKey: string
  deviceName: string
  deviceSecret: string
  /** Milliseconds since the epoch. */
  timestamp: number | string
  signMethod: AliyunSignMethod
  /** 2 over TLS, 3 over plain TCP. */
  secureMode: 2 | 3
}

/** The CONNECT fields for Alibaba Cloud IoT. */
export function signAliyun(input: AliyunSignInput): MqttCredentials & { password: string } {
  const { cid, productKey, deviceName, deviceSecret, signMethod, secureMode } = input
  const timestamp = String(input.timestamp)
  const message = `clientId${cid}deviceName${deviceName}productKey${productKey}timestamp${timestamp}`
  return {
    clientId: `${cid}|securemode=${secureMode},signmethod=${signMethod},timestamp=${timestamp}|`,
    username: `${deviceName}&${productKey}`,
    password: nodeCrypto().createHmac(HASH[signMethod], deviceSecret).update(message).digest('hex'),
  }
}

export interface AliyunAuthOptions {
  /** @default 'hmacsha256' */
  signMethod?: AliyunSignMethod
}

const AMBIGUOUS = /[|&]/
const IDENTITY_FIELDS = ['productKey', 'deviceName'] as const

/** The `aliyun` strategy (the default). Alibaba serves MQTT over TLS on 1883, hence the default port. */
export function aliyunAuth(options: AliyunAuthOptions = {}): AuthStrategy {
  const signMethod = options.signMethod ?? 'hmacsha256'
  if (!ALIYUN_SIGN_METHODS.includes(signMethod)) {
    throw new TypeError(`Expected \`signMethod\` to be one of ${ALIYUN_SIGN_METHODS.join(', ')}`)
  }
  return {
    name: 'aliyun',
    defaultPort: 1883,
    sign: (device, { brokerUrl, now }) => {
      // `|` ends the clientId's cid and `&` splits the username: with one in an identity, two devices could sign the
      // same CONNECT fields. Thrown before any connect; not transient, so the connect loop gives up at once.
      for (const field of IDENTITY_FIELDS) {
        if (AMBIGUOUS.test(device[field])) {
          throw new AuthError(
            'ERR_AUTH_INVALID_IDENTITY',
            `The aliyun strategy cannot sign for a ${field} containing \`|\` or \`&\``,
          )
        }
      }
      return signAliyun({
        cid: `${device.productKey}.${device.deviceName}`,
        productKey: device.productKey,
        deviceName: device.deviceName,
        deviceSecret: device.deviceSecret,
        timestamp: now,
        signMethod,
        secureMode: isSecureBrokerUrl(brokerUrl) ? 2 : 3,
      })
    },
  }
}

const CLIENT_ID = /^(.+)\|securemode=(2|3),signmethod=(hmacsha256|hmacsha1|hmacmd5),timestamp=(\d+)\|$/
/** `${deviceName}&${productKey}`, neither empty. */
const USERNAME = /^([^&]+)&([^&]+)$/

/**
 * How far a signed timestamp may be from the broker's clock, either way, by default: 15 minutes. The timestamp is
 * what makes a CONNECT captured once useless later; the window is what a stateless check can do (a replay inside it
 * passes). Devices without a real-time clock set theirs by NTP before they connect: a quartz clock off by 50 ppm then
 * drifts 4.3 s a day, so 15 minutes is about 200 days without a sync; a lag behind the broker (a device that slept,
 * an NTP step still to come) counts as much as a lead. A fleet that connects before its clocks are set needs a wider
 * window, or `Infinity`.
 */
export const ALIYUN_MAX_SKEW_MS = 15 * 60 * 1000

export interface AliyunVerifyOptions {
  /** The broker's clock, in ms since the epoch. @default Date.now */
  now?: () => number
  /**
   * Largest accepted difference between the signed timestamp and `now()`, either way, in ms; `Infinity` accepts any
   * timestamp (no replay protection). @default 900000 (15 minutes, {@link ALIYUN_MAX_SKEW_MS})
   */
  maxSkewMs?: number
}

/**
 * Broker side: check CONNECT fields signed by {@link signAliyun}. `deviceSecret` looks the secret up by product key
 * and device name (undefined: unknown device). Returns the device's identity, or `undefined` when the check fails: a
 * clientId that is not `${productKey}.${deviceName}|…|` of the username's device, a timestamp outside the window
 * (`options.maxSkewMs`: a CONNECT replayed later), an unknown device or a wrong signature. The comparison takes
 * constant time.
 *
 * Authorise the connection by the identity returned, never by the clientId: the username names the device, and a
 * `.` in a productKey or deviceName makes `${productKey}.${deviceName}` ambiguous.
 */
export function verifyAliyunCredentials(
  connect: { clientId: string; username?: string | undefined; password?: string | Buffer | undefined },
  deviceSecret: (productKey: string, deviceName: string) => string | undefined,
  options: AliyunVerifyOptions = {},
): { productKey: string; deviceName: string; timestamp: number } | undefined {
  const { now = Date.now, maxSkewMs = ALIYUN_MAX_SKEW_MS } = options
  if (typeof maxSkewMs !== 'number' || !(maxSkewMs >= 0)) {
    throw new InvalidOptionError('maxSkewMs', 'Expected `maxSkewMs` to be a non-negative number or Infinity')
  }
  const match = CLIENT_ID.exec(connect.clientId)
  const user = USERNAME.exec(connect.username ?? '')
  if (!match || !user) return undefined
  const [, cid, secureMode, signMethod, timestamp] = match as unknown as [
    string,
    string,
    string,
    AliyunSignMethod,
    string,
  ]
  const [, deviceName, productKey] = user as unknown as [string, string, string]
  // The signature covers the cid, so a device could sign any; one naming another device is refused.
  if (cid !== `${productKey}.${deviceName}`) return undefined
  if (!(Math.abs(now() - Number(timestamp)) <= maxSkewMs)) return undefined
  const secret = deviceSecret(productKey, deviceName)
  if (secret === undefined || connect.password === undefined) return undefined
  const expected = signAliyun({
    cid,
    productKey,
    deviceName,
    deviceSecret: secret,
    timestamp,
    signMethod,
    secureMode: Number(secureMode) as 2 | 3,
  })
  const given = Buffer.from(connect.password)
  const wanted = Buffer.from(expected.password)
  if (given.length !== wanted.length || !nodeCrypto().timingSafeEqual(given, wanted)) return undefined
  return { productKey, deviceName, timestamp: Number(timestamp) }
}

export interface AliyunRegistrationSignInput {
  productKey: string
  deviceName: string
  productSecret: string
  /** A random string chosen by the device, sent along with the sign. */
  random: string
  /** @default 'hmacsha256' */
  signMethod?: AliyunSignMethod
}

/**
 * The sign of Alibaba's HTTPS dynamic registration ("one secret per product"): lower-case hex
 * HMAC(productSecret, "deviceName" + dn + "productKey" + pk + "random" + random).
 */
export function signAliyunRegistration(input: AliyunRegistrationSignInput): string {
  const { productKey, deviceName, productSecret, random, signMethod = 'hmacsha256' } = input
  const message = `deviceName${deviceName}productKey${productKey}random${random}`
  return nodeCrypto().createHmac(HASH[signMethod], productSecret).update(message).digest('hex')
}
