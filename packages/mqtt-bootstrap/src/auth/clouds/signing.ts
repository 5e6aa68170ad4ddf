/**
 * The other clouds' MQTT signatures (issue 19, DESIGN.md "Other clouds' signing"): pure functions of the fields each
 * vendor names, with the time-dependent field given (the strategies read it from the injected clock). Each string to
 * sign is the vendor's own, cited at its function; test/clouds-sign.test.ts runs every vector of
 * test/vectors/clouds.json (a copy of ../shared/vectors/clouds.json). HMACs and hashes are node:crypto's. A bad field is an
 * InvalidOptionError (a TypeError, `option` the field) whose message never quotes a key or secret.
 */
import { InvalidOptionError } from '../../errors.js'
import { nodeCrypto } from '../../lazy.js'
import type { MqttCredentials } from '../strategy.js'

type Signed = MqttCredentials & { password: string }

/** A base64 key as the vendors hand them out (Tencent's device PSK, OneNET's and Azure's keys); refused if not. */
function base64Key(value: string, name: string): Buffer {
  const key = typeof value === 'string' ? Buffer.from(value, 'base64') : Buffer.alloc(0)
  if (key.length === 0 || key.toString('base64').replace(/=+$/, '') !== value.replace(/=+$/, '')) {
    throw new InvalidOptionError(name, `Expected \`${name}\` to be a base64 key`)
  }
  return key
}

function text(value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '')
    throw new InvalidOptionError(name, `Expected \`${name}\` to be a non-empty string`)
  return value
}

function seconds(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(name, `Expected \`${name}\` to be a whole number of seconds since the epoch`)
  }
  return value
}

const hmac = (algorithm: string, key: Buffer | string, message: string) =>
  nodeCrypto().createHmac(algorithm, key).update(message).digest()

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

/**
 * Tencent IoT Explorer / IoT Hub, as tencentyun/qcloud_iot_mqtt_sign (and its embedded C SDK's HAL_Sign):
 * clientId `${productId}${deviceName}`, username `${clientId};${sdkAppId};${connId};${expiry}`, password the hex
 * HMAC of the username keyed by the base64-decoded PSK, then `;${signMethod}`.
 */
export function signTencent(input: TencentSignInput): Signed {
  const clientId = `${text(input.productId, 'productId')}${text(input.deviceName, 'deviceName')}`
  const { signMethod } = input
  if (!TENCENT_SIGN_METHODS.includes(signMethod)) {
    throw new InvalidOptionError(
      'signMethod',
      `Expected \`signMethod\` to be one of ${TENCENT_SIGN_METHODS.join(', ')}`,
    )
  }
  const username = `${clientId};${text(input.sdkAppId, 'sdkAppId')};${text(input.connId, 'connId')};${seconds(input.expiry, 'expiry')}`
  const key = base64Key(input.devicePsk, 'devicePsk')
  const digest = hmac(signMethod === 'hmacsha256' ? 'sha256' : 'sha1', key, username).toString('hex')
  return { clientId, username, password: `${digest};${signMethod}` }
}

export interface HuaweiSignInput {
  deviceId: string
  secret: string
  /** The hour stamp, UTC, `YYYYMMDDHH`. */
  timestamp: string
  /** 0: the platform does not check the stamp; 1: it does. */
  signType: 0 | 1
}

/**
 * Huawei Cloud IoTDA, as huaweicloud-iot-device-sdk-python's utils/iot_util.py: clientId
 * `${deviceId}_0_${signType}_${timestamp}`, username the deviceId, password the hex HMAC-SHA256 of the secret keyed by
 * the hour stamp.
 */
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

/**
 * China Mobile OneNET (MQTTS devices), as its dev_token.c: clientId the deviceName, username the productId, password
 * the token `version=…&res=products/{pid}/devices/{name}&et=…&method=…&sign=…` (values URL-encoded), `sign` the base64
 * HMAC of `${et}\n${method}\n${res}\n${version}` keyed by the base64-decoded key.
 */
export function signOnenet(input: OnenetSignInput): Signed {
  const productId = text(input.productId, 'productId')
  const deviceName = text(input.deviceName, 'deviceName')
  const { method } = input
  if (!ONENET_METHODS.includes(method))
    throw new InvalidOptionError('method', `Expected \`method\` to be one of ${ONENET_METHODS.join(', ')}`)
  const et = seconds(input.expiry, 'expiry')
  const res = `products/${productId}/devices/${deviceName}`
  const sign = hmac(method, base64Key(input.key, 'key'), `${et}\n${method}\n${res}\n${ONENET_VERSION}`).toString(
    'base64',
  )
  const token = `version=${ONENET_VERSION}&res=${encodeURIComponent(res)}&et=${et}&method=${method}&sign=${encodeURIComponent(sign)}`
  return { clientId: deviceName, username: productId, password: token }
}

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

/**
 * Azure IoT Hub with a SAS token, as Azure/azure-sdk-for-c's az_iot_hub_client_sas.c: the string to sign
 * `${urlencoded(hostName/devices/deviceId)}\n${se}`, its HMAC-SHA256 keyed by the base64-decoded key, base64 then
 * URL-encoded, in `SharedAccessSignature sr=…&sig=…&se=…`; clientId the deviceId, username
 * `${hostName}/${deviceId}/?api-version=…`.
 */
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

/**
 * Baidu IoT Core ("connecting with a signature", its documentation): username
 * `thingidp@${iotCoreId}|${deviceKey}|${timestamp}|${algorithm}`, password the hex hash (not an HMAC) of
 * `${deviceKey}&${timestamp}&${algorithm}${deviceSecret}`; clientId is the device's choice (the deviceKey here).
 */
export function signBaidu(input: BaiduSignInput): Signed {
  const iotCoreId = text(input.iotCoreId, 'iotCoreId')
  const deviceKey = text(input.deviceKey, 'deviceKey')
  const { algorithm } = input
  if (!BAIDU_ALGORITHMS.includes(algorithm)) {
    throw new InvalidOptionError('algorithm', `Expected \`algorithm\` to be one of ${BAIDU_ALGORITHMS.join(', ')}`)
  }
  const timestamp = seconds(input.timestamp, 'timestamp')
  const signed = `${deviceKey}&${timestamp}&${algorithm}${text(input.deviceSecret, 'deviceSecret')}`
  const password = nodeCrypto()
    .createHash(algorithm === 'MD5' ? 'md5' : 'sha256')
    .update(signed)
    .digest('hex')
  return { clientId: deviceKey, username: `thingidp@${iotCoreId}|${deviceKey}|${timestamp}|${algorithm}`, password }
}
