import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import {
  aliyunAuth,
  signAliyun,
  signAliyunRegistration,
  verifyAliyunCredentials,
} from '../packages/mqtt-bootstrap/src/index.js'

interface MqttVector {
  productKey: string
  deviceName: string
  deviceSecret: string
  cid: string
  timestamp: string
  securemode: 2 | 3
  signmethod: 'hmacsha256' | 'hmacsha1' | 'hmacmd5'
  clientId: string
  username: string
  password: string
}

// The project's shared vectors (../shared, next to the checkout) when present; else the committed copy, which a test
// below keeps identical to them.
const SHARED = new URL('../../shared/vectors/aliyun-sign.json', import.meta.url)
const COPY = new URL('./vectors/aliyun-sign.json', import.meta.url)
interface RegistrationVector {
  productKey: string
  deviceName: string
  productSecret: string
  random: string
  signMethod: 'hmacsha256'
  sign: string
}
const vectors = JSON.parse(readFileSync(existsSync(SHARED) ? SHARED : COPY, 'utf8')) as {
  mqtt: MqttVector[]
  dynamicRegistration: RegistrationVector[]
}

describe('aliyun signing matches every vector in shared/vectors/aliyun-sign.json', () => {
  test.runIf(existsSync(SHARED))('the committed copy equals the shared vectors', () => {
    expect(JSON.parse(readFileSync(COPY, 'utf8'))).toEqual(JSON.parse(readFileSync(SHARED, 'utf8')))
  })

  test('there are vectors for all three sign methods and both secure modes', () => {
    expect(vectors.mqtt.length).toBeGreaterThanOrEqual(6)
    expect(new Set(vectors.mqtt.map((v) => v.signmethod))).toEqual(new Set(['hmacsha256', 'hmacsha1', 'hmacmd5']))
    expect(new Set(vectors.mqtt.map((v) => v.securemode))).toEqual(new Set([2, 3]))
  })

  test.each(vectors.mqtt.map((v) => [`${v.signmethod} securemode=${v.securemode} cid=${v.cid}`, v] as const))(
    '%s',
    (_name, v) => {
      const signed = signAliyun({
        cid: v.cid,
        productKey: v.productKey,
        deviceName: v.deviceName,
        deviceSecret: v.deviceSecret,
        timestamp: v.timestamp,
        signMethod: v.signmethod,
        secureMode: v.securemode,
      })
      expect(signed).toEqual({ clientId: v.clientId, username: v.username, password: v.password })
      const lookup = (pk: string, dn: string) =>
        pk === v.productKey && dn === v.deviceName ? v.deviceSecret : undefined
      // The broker's clock at the vector's time: fresh. A cid that is not pk.dn names no device of this username.
      const verified = verifyAliyunCredentials(signed, lookup, { now: () => Number(v.timestamp) })
      expect(verified).toEqual(
        v.cid === `${v.productKey}.${v.deviceName}`
          ? { productKey: v.productKey, deviceName: v.deviceName, timestamp: Number(v.timestamp) }
          : undefined,
      )
    },
  )

  test('the strategy uses cid pk.dn, the clock, and securemode from the broker URL', () => {
    const v = vectors.mqtt.find((x) => x.cid === `${x.productKey}.${x.deviceName}` && x.signmethod === 'hmacsha1')
    if (!v) throw new Error('no vector with cid pk.dn and hmacsha1')
    const device = {
      productKey: v.productKey,
      deviceName: v.deviceName,
      deviceSecret: v.deviceSecret,
      productSecret: null,
    }
    const url = v.securemode === 2 ? 'mqtts://example:1883' : 'mqtt://example:1883'
    const signed = aliyunAuth({ signMethod: 'hmacsha1' }).sign(device, { brokerUrl: url, now: Number(v.timestamp) })
    expect(signed).toEqual({ clientId: v.clientId, username: v.username, password: v.password })
  })

  test('verification fails for a wrong secret, a tampered clientId, or an unknown device', () => {
    const v = vectors.mqtt[0] as MqttVector
    const signed = { clientId: v.clientId, username: v.username, password: v.password }
    const fresh = { now: () => Number(v.timestamp) }
    expect(verifyAliyunCredentials(signed, () => v.deviceSecret, fresh)).toBeDefined()
    expect(verifyAliyunCredentials(signed, () => 'wrong', fresh)).toBeUndefined()
    expect(verifyAliyunCredentials(signed, () => undefined, fresh)).toBeUndefined()
    const tampered = { ...signed, clientId: v.clientId.replace(/timestamp=(\d+)/, 'timestamp=$11') }
    expect(verifyAliyunCredentials(tampered, () => v.deviceSecret, { maxSkewMs: Infinity })).toBeUndefined()
    expect(verifyAliyunCredentials({ ...signed, username: 'x' }, () => v.deviceSecret, fresh)).toBeUndefined()
  })

  test.each(vectors.dynamicRegistration.map((v) => [v.random, v] as const))(
    'dynamic registration sign, random %s',
    (_r, v) => {
      expect(signAliyunRegistration(v)).toBe(v.sign)
    },
  )

  test('dynamic registration signs with hmacsha256 unless told otherwise', () => {
    const v = vectors.dynamicRegistration[0] as RegistrationVector
    const { signMethod: _, ...withoutMethod } = v
    expect(signAliyunRegistration(withoutMethod)).toBe(v.sign)
    expect(signAliyunRegistration({ ...withoutMethod, signMethod: 'hmacsha1' })).toMatch(/^[0-9a-f]{40}$/)
  })

  test('an unknown sign method is a TypeError', () => {
    expect(() => aliyunAuth({ signMethod: 'hmacsha512' as never })).toThrow(TypeError)
    expect(() => aliyunAuth({ signMethod: 'hmacsha512' as never })).toThrow(
      'Expected `signMethod` to be one of hmacsha256, hmacsha1, hmacmd5',
    )
  })
})
