/**
 * Tencent IoT Explorer / IoT Hub, key authentication, as tencentyun/qcloud_iot_mqtt_sign (and its embedded C SDK's
 * HAL_Sign): clientId `${productId}${deviceName}`, username `${clientId};${sdkAppId};${connId};${expiry}`, password the
 * hex HMAC of the username keyed by the base64-decoded device PSK, then `;${signMethod}`.
 */
import { InvalidOptionError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { fail, typeName } from '../option-checks.js'
import {
  base64Key,
  expiryAt,
  type FreshnessOptions,
  factoryOptions,
  freshness,
  hmac,
  lifetimeOption,
  oneOf,
  orUndefined,
  refuseSeparators,
  type Signed,
  sameText,
  seconds,
  signFor,
  text,
} from './fields.js'
import type { AuthStrategy } from './strategy.js'

export const TENCENT_SIGN_METHODS = ['hmacsha256', 'hmacsha1'] as const
export type TencentSignMethod = (typeof TENCENT_SIGN_METHODS)[number]

export interface TencentSignInput {
  productId: string
  deviceName: string
  /** The device PSK, base64, as the console shows it. */
  devicePsk: string
  /** 5 random alphanumerics, new per connection. */
  connId: string
  /** Seconds since the epoch after which the signature is refused. */
  expiry: number
  signMethod: TencentSignMethod
  /** "12010126" in Tencent's own SDKs. */
  sdkAppId: string
}

/** The CONNECT fields for Tencent IoT Explorer / IoT Hub (key authentication). */
export function signTencent(input: TencentSignInput): Signed {
  const clientId = `${text(input.productId, 'productId')}${text(input.deviceName, 'deviceName')}`
  const signMethod = oneOf(input.signMethod, TENCENT_SIGN_METHODS, 'signMethod')
  const username = `${clientId};${text(input.sdkAppId, 'sdkAppId')};${text(input.connId, 'connId')};${seconds(input.expiry, 'expiry')}`
  const key = base64Key(input.devicePsk, 'devicePsk')
  const digest = hmac(signMethod === 'hmacsha256' ? 'sha256' : 'sha1', key, username).toString('hex')
  return { clientId, username, password: `${digest};${signMethod}` }
}

/** The sdkAppId Tencent's own device SDKs send. */
export const TENCENT_SDK_APP_ID = '12010126'

export interface TencentAuthOptions {
  /** @default 'hmacsha256' */
  signMethod?: TencentSignMethod
  /** Digits, as Tencent assigns them. @default '12010126' (Tencent's own SDKs') */
  sdkAppId?: string
  /** 5 alphanumerics; a fixed one is for tests. @default 5 random alphanumerics, new at every signing */
  connId?: string
  /** How long a signature is valid, in whole seconds, at most a day. @default 3600 */
  lifetimeSeconds?: number
}

const CONN_ID = /^[A-Za-z0-9]{5}$/
const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/** 5 random alphanumerics from the system's CSPRNG (what Tencent's SDKs draw for each connection). */
function randomConnId(): string {
  const { randomInt } = nodeCrypto()
  return Array.from({ length: 5 }, () => ALPHANUMERIC[randomInt(ALPHANUMERIC.length)]).join('')
}

/**
 * The `tencent` strategy: productKey -> productId, deviceName -> deviceName, deviceSecret -> the device PSK (base64).
 * The expiry is the injected clock's time plus `lifetimeSeconds`, at every (re)connect.
 */
export function tencentAuth(options?: TencentAuthOptions): AuthStrategy {
  const given = factoryOptions(options, ['signMethod', 'sdkAppId', 'connId', 'lifetimeSeconds'])
  const signMethod = oneOf(given.signMethod ?? 'hmacsha256', TENCENT_SIGN_METHODS, 'signMethod')
  const sdkAppId = given.sdkAppId ?? TENCENT_SDK_APP_ID
  if (typeof sdkAppId !== 'string' || !/^\d{1,20}$/.test(sdkAppId))
    fail('sdkAppId', 'a string of digits', typeName(sdkAppId))
  const connId = given.connId
  if (connId !== undefined && (typeof connId !== 'string' || !CONN_ID.test(connId))) {
    fail('connId', '5 alphanumerics', typeName(connId))
  }
  const lifetime = lifetimeOption(given.lifetimeSeconds)
  return {
    name: 'tencent',
    defaultPort: 8883,
    sign: (device, { now }) => {
      refuseSeparators('tencent', device, /;/, '`;`')
      return signFor('tencent', FIELDS, () =>
        signTencent({
          productId: device.productKey,
          deviceName: device.deviceName,
          devicePsk: device.deviceSecret,
          connId: (connId as string | undefined) ?? randomConnId(),
          expiry: expiryAt(now, lifetime),
          signMethod,
          sdkAppId,
        }),
      )
    },
  }
}

const FIELDS = { productId: 'productKey', deviceName: 'deviceName', devicePsk: 'deviceSecret' } as const

export interface TencentVerifyOptions extends FreshnessOptions {
  /** The productId's length inside the clientId: Tencent's are 10 characters. @default 10 */
  productIdLength?: number
}

const USERNAME = /^([^;]+);(\d+);([A-Za-z0-9]+);(\d+)$/
const PASSWORD = /^([0-9a-f]+);(hmacsha256|hmacsha1)$/

/**
 * Broker side: check CONNECT fields signed by {@link signTencent}. `devicePsk` looks the base64 PSK up by productId
 * and deviceName (undefined: unknown device). Returns the identity, or `undefined` when the check fails: a username
 * that is not `${clientId};${sdkAppId};${connId};${expiry}`, an expiry past (beyond `maxSkewMs`) or further ahead than
 * `maxLifetimeSeconds`, an unknown device or a wrong signature (compared in constant time). The clientId is split after
 * `productIdLength` characters; a signature within the validity can be replayed until it ends. A stored PSK that
 * is not base64 verifies nothing. Throws an InvalidOptionError only for a bad option.
 */
export function verifyTencentCredentials(
  connect: { clientId: string; username?: string | undefined; password?: string | Buffer | undefined },
  devicePsk: (productId: string, deviceName: string) => string | undefined,
  options: TencentVerifyOptions = {},
): { productId: string; deviceName: string; connId: string; expiry: number } | undefined {
  if (typeof options !== 'object' || options === null) fail('options', 'an object', typeName(options))
  const fresh = freshness(options)
  const { productIdLength = 10 } = options
  if (!Number.isInteger(productIdLength) || productIdLength < 1) {
    throw new InvalidOptionError('productIdLength', 'Expected `productIdLength` to be a positive integer')
  }
  const user = USERNAME.exec(connect.username ?? '')
  const password = PASSWORD.exec(connect.password?.toString() ?? '')
  if (!user || !password || user[1] !== connect.clientId) return undefined
  const [, clientId, sdkAppId, connId, expiryText] = user as unknown as string[] as [
    string,
    string,
    string,
    string,
    string,
  ]
  const signMethod = password[2] as TencentSignMethod
  const productId = clientId.slice(0, productIdLength)
  const deviceName = clientId.slice(productIdLength)
  if (deviceName === '') return undefined
  const expiry = Number(expiryText)
  if (!Number.isSafeInteger(expiry) || !fresh(expiry)) return undefined
  const psk = devicePsk(productId, deviceName)
  if (psk === undefined) return undefined
  const wanted = orUndefined(() =>
    signTencent({ productId, deviceName, devicePsk: psk, connId, expiry, signMethod, sdkAppId }),
  )
  // The whole username is compared too: an expiry written `0…` would otherwise sign as the same number.
  if (wanted === undefined || connect.username !== wanted.username) return undefined
  return sameText(connect.password, wanted.password) ? { productId, deviceName, connId, expiry } : undefined
}
