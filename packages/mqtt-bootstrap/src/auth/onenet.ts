/**
 * China Mobile OneNET (MQTT devices), as its dev_token.c: clientId the deviceName, username the productId, password
 * the token `version=…&res=products/{pid}/devices/{name}&et=…&method=…&sign=…` (values URL-encoded), `sign` the
 * base64 HMAC of `${et}\n${method}\n${res}\n${version}` keyed by the base64-decoded key.
 */
import {
  base64Key,
  expiryAt,
  factoryOptions,
  hmac,
  lifetimeOption,
  oneOf,
  refuseSeparators,
  type Signed,
  seconds,
  signFor,
  text,
} from './fields.js'
import type { AuthStrategy } from './strategy.js'

export const ONENET_METHODS = ['md5', 'sha1', 'sha256'] as const
export type OnenetMethod = (typeof ONENET_METHODS)[number]

export interface OnenetSignInput {
  productId: string
  deviceName: string
  /** The device key (or product key), base64. */
  key: string
  /** Seconds since the epoch: the token's `et`. */
  expiry: number
  method: OnenetMethod
}

/** The token version OneNET's MQTT devices sign. */
const ONENET_VERSION = '2018-10-31'

/** The CONNECT fields for OneNET. */
export function signOnenet(input: OnenetSignInput): Signed {
  const productId = text(input.productId, 'productId')
  const deviceName = text(input.deviceName, 'deviceName')
  const method = oneOf(input.method, ONENET_METHODS, 'method')
  const et = seconds(input.expiry, 'expiry')
  const res = `products/${productId}/devices/${deviceName}`
  const sign = hmac(method, base64Key(input.key, 'key'), `${et}\n${method}\n${res}\n${ONENET_VERSION}`)
  const token = `version=${ONENET_VERSION}&res=${encodeURIComponent(res)}&et=${et}&method=${method}&sign=${encodeURIComponent(sign.toString('base64'))}`
  return { clientId: deviceName, username: productId, password: token }
}

export interface OnenetAuthOptions {
  /** @default 'sha256' (the strongest OneNET offers) */
  method?: OnenetMethod
  /** How long a token is valid, in whole seconds, at most a day. @default 3600 */
  lifetimeSeconds?: number
}

const FIELDS = { productId: 'productKey', deviceName: 'deviceName', key: 'deviceSecret' } as const

/**
 * The `onenet` strategy: productKey -> productId, deviceName -> deviceName, deviceSecret -> the device key (base64).
 * `et` is the injected clock's time plus `lifetimeSeconds`, at every (re)connect.
 */
export function onenetAuth(options?: OnenetAuthOptions): AuthStrategy {
  const given = factoryOptions(options, ['method', 'lifetimeSeconds'])
  const method = oneOf(given.method ?? 'sha256', ONENET_METHODS, 'method')
  const lifetime = lifetimeOption(given.lifetimeSeconds)
  return {
    name: 'onenet',
    defaultPort: 8883,
    sign: (device, { now }) => {
      // A `/` would make the token's resource name another device's (products/a/devices/b/devices/c).
      refuseSeparators('onenet', device, /\//, '`/`')
      return signFor('onenet', FIELDS, () =>
        signOnenet({
          productId: device.productKey,
          deviceName: device.deviceName,
          key: device.deviceSecret,
          expiry: expiryAt(now, lifetime),
          method,
        }),
      )
    },
  }
}
