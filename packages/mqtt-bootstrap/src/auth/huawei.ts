/**
 * Huawei Cloud IoTDA, secret authentication, as huaweicloud-iot-device-sdk-python's utils/iot_util.py: clientId
 * `${deviceId}_0_${signType}_${timestamp}`, username the deviceId, password the hex HMAC-SHA256 of the secret keyed by
 * the hour stamp (UTC, `YYYYMMDDHH`).
 */
import { InvalidOptionError } from '../errors.js'
import { checkBoolean } from '../option-checks.js'
import { factoryOptions, hmac, type Signed, signFor, text } from './fields.js'
import type { AuthStrategy } from './strategy.js'

export interface HuaweiSignInput {
  deviceId: string
  secret: string
  /** The hour stamp, UTC, `YYYYMMDDHH`. */
  timestamp: string
  /** 0: the platform does not check the stamp; 1: it does. */
  signType: 0 | 1
}

/** The CONNECT fields for Huawei Cloud IoTDA. */
export function signHuawei(input: HuaweiSignInput): Signed {
  const deviceId = text(input.deviceId, 'deviceId')
  const { timestamp, signType } = input
  if (typeof timestamp !== 'string' || !/^\d{10}$/.test(timestamp)) {
    throw new InvalidOptionError('timestamp', 'Expected `timestamp` to be an hour stamp YYYYMMDDHH')
  }
  if (signType !== 0 && signType !== 1) throw new InvalidOptionError('signType', 'Expected `signType` to be 0 or 1')
  const password = hmac('sha256', timestamp, text(input.secret, 'secret')).toString('hex')
  return { clientId: `${deviceId}_0_${signType}_${timestamp}`, username: deviceId, password }
}

/** The hour stamp of `now` (ms since the epoch), UTC: `YYYYMMDDHH`. */
export function huaweiHourStamp(now: number): string {
  const iso = new Date(now).toISOString() // 2018-07-24T17:…Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}`
}

export interface HuaweiAuthOptions {
  /** Ask the platform to check the hour stamp against its clock (signType 1): a password then lasts about an hour. @default true */
  checkTimestamp?: boolean
}

const FIELDS = { deviceId: 'deviceName', secret: 'deviceSecret' } as const

/**
 * The `huawei` strategy: deviceId `${productKey}_${deviceName}` (IoTDA names a device product_id + "_" + node_id),
 * secret the deviceSecret, hour stamp from the injected clock at every (re)connect.
 */
export function huaweiAuth(options?: HuaweiAuthOptions): AuthStrategy {
  const given = factoryOptions(options, ['checkTimestamp'])
  const signType = checkBoolean(given.checkTimestamp ?? true, 'checkTimestamp') ? 1 : 0
  return {
    name: 'huawei',
    defaultPort: 8883,
    sign: (device, { now }) =>
      signFor('huawei', FIELDS, () =>
        signHuawei({
          deviceId: `${device.productKey}_${device.deviceName}`,
          secret: device.deviceSecret,
          timestamp: huaweiHourStamp(now),
          signType,
        }),
      ),
  }
}
