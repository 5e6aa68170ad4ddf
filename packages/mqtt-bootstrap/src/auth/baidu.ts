/**
 * Baidu IoT Core, key authentication ("connecting over MQTT", its documentation): username
 * `thingidp@${iotCoreId}|${deviceKey}|${timestamp}|${algorithm}`, password the lower-case hex hash (not an HMAC) of
 * `${deviceKey}&${timestamp}&${algorithm}${deviceSecret}`; clientId is the device's choice (the deviceKey here). The
 * platform accepts a timestamp within 10 minutes of its clock.
 */
import { nodeCrypto } from '../lazy.js'
import { factoryOptions, oneOf, refuseSeparators, type Signed, seconds, signFor, text } from './fields.js'
import type { AuthStrategy } from './strategy.js'

export const BAIDU_ALGORITHMS = ['MD5', 'SHA256'] as const
export type BaiduAlgorithm = (typeof BAIDU_ALGORITHMS)[number]

export interface BaiduSignInput {
  iotCoreId: string
  deviceKey: string
  deviceSecret: string
  /** Seconds since the epoch. */
  timestamp: number
  algorithm: BaiduAlgorithm
}

/** The CONNECT fields for Baidu IoT Core. */
export function signBaidu(input: BaiduSignInput): Signed {
  const iotCoreId = text(input.iotCoreId, 'iotCoreId')
  const deviceKey = text(input.deviceKey, 'deviceKey')
  const algorithm = oneOf(input.algorithm, BAIDU_ALGORITHMS, 'algorithm')
  const timestamp = seconds(input.timestamp, 'timestamp')
  const signed = `${deviceKey}&${timestamp}&${algorithm}${text(input.deviceSecret, 'deviceSecret')}`
  const password = nodeCrypto()
    .createHash(algorithm === 'MD5' ? 'md5' : 'sha256')
    .update(signed)
    .digest('hex')
  return { clientId: deviceKey, username: `thingidp@${iotCoreId}|${deviceKey}|${timestamp}|${algorithm}`, password }
}

export interface BaiduAuthOptions {
  /** @default 'SHA256' (the stronger of the two Baidu offers; its documentation's default is MD5) */
  algorithm?: BaiduAlgorithm
}

const FIELDS = { iotCoreId: 'productKey', deviceKey: 'deviceName', deviceSecret: 'deviceSecret' } as const

/**
 * The `baidu` strategy: productKey -> iotCoreId, deviceName -> deviceKey, deviceSecret -> deviceSecret; the timestamp
 * is the injected clock's, in seconds, at every (re)connect. Baidu serves MQTT over TLS on 1884.
 */
export function baiduAuth(options?: BaiduAuthOptions): AuthStrategy {
  const given = factoryOptions(options, ['algorithm'])
  const algorithm = oneOf(given.algorithm ?? 'SHA256', BAIDU_ALGORITHMS, 'algorithm')
  return {
    name: 'baidu',
    defaultPort: 1884,
    sign: (device, { now }) => {
      // `|` splits the username; `&` the string hashed.
      refuseSeparators('baidu', device, /[|&]/, '`|` or `&`')
      return signFor('baidu', FIELDS, () =>
        signBaidu({
          iotCoreId: device.productKey,
          deviceKey: device.deviceName,
          deviceSecret: device.deviceSecret,
          timestamp: Math.floor(now / 1000),
          algorithm,
        }),
      )
    },
  }
}
