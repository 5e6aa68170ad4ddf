/**
 * The other clouds' strategies without a network (issue 19): options checked when the factory is called, the
 * triplet's mapping onto each vendor's fields, the time from the sign context, refusals; and the broker-side
 * verifiers (verifyTencentCredentials, verifyAzureSas) against the vectors and against tampering.
 */
import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import {
  AuthError,
  type AuthStrategy,
  azureAuth,
  baiduAuth,
  huaweiAuth,
  InvalidOptionError,
  onenetAuth,
  signAzureSas,
  signTencent,
  tencentAuth,
  thingsboardAuth,
  verifyAzureSas,
  verifyTencentCredentials,
} from '../packages/mqtt-bootstrap/src/index.js'
import { resolveOptions } from '../packages/mqtt-bootstrap/src/options.js'

const SHARED = new URL('../../shared/vectors/clouds.json', import.meta.url)
const COPY = new URL('./vectors/clouds.json', import.meta.url)
const vectors = JSON.parse(readFileSync(existsSync(SHARED) ? SHARED : COPY, 'utf8'))

const NOW = Date.UTC(2026, 0, 1, 23, 59, 59, 999) // the last millisecond of an hour and of a day
const context = { brokerUrl: 'mqtts://hub.example.net:8883', now: NOW }
const device = {
  productKey: 'L4WG9V9M2M',
  deviceName: 'meter-01',
  deviceSecret: 'AAECAwQFBgcICQoLDA0ODw==',
  productSecret: null,
}

describe('options are checked when the factory is called: an InvalidOptionError naming the option', () => {
  test.each([
    ['tencent signMethod', () => tencentAuth({ signMethod: 'hmacmd5' as never }), 'signMethod'],
    ['tencent sdkAppId', () => tencentAuth({ sdkAppId: 'app' }), 'sdkAppId'],
    ['tencent connId length', () => tencentAuth({ connId: 'abc' }), 'connId'],
    ['tencent connId characters', () => tencentAuth({ connId: 'ab;12' }), 'connId'],
    ['tencent lifetime over a day', () => tencentAuth({ lifetimeSeconds: 86_401 }), 'lifetimeSeconds'],
    ['tencent lifetime infinite', () => tencentAuth({ lifetimeSeconds: Number.POSITIVE_INFINITY }), 'lifetimeSeconds'],
    ['tencent lifetime 0', () => tencentAuth({ lifetimeSeconds: 0 }), 'lifetimeSeconds'],
    ['tencent lifetime fraction', () => tencentAuth({ lifetimeSeconds: 1.5 }), 'lifetimeSeconds'],
    ['tencent misspelt option', () => tencentAuth({ lifetime: 60 } as never), 'lifetime'],
    ['onenet method', () => onenetAuth({ method: 'SHA256' as never }), 'method'],
    ['onenet lifetime', () => onenetAuth({ lifetimeSeconds: -1 }), 'lifetimeSeconds'],
    ['huawei checkTimestamp', () => huaweiAuth({ checkTimestamp: 1 as never }), 'checkTimestamp'],
    ['azure lifetime', () => azureAuth({ lifetimeSeconds: Number.NaN }), 'lifetimeSeconds'],
    ['baidu algorithm', () => baiduAuth({ algorithm: 'md5' as never }), 'algorithm'],
    ['options not an object', () => azureAuth('3600' as never), 'options'],
    [
      'an option set to null (only a missing one takes the default)',
      () => tencentAuth({ signMethod: null as never }),
      'signMethod',
    ],
    ['azure hostName null', () => azureAuth({ hostName: null as never }), 'hostName'],
  ])('%s', (_name, make, option) => {
    let error: unknown
    try {
      make()
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option })
  })

  test("auth: '<name>' resolves every cloud; an unknown name is refused with the list", () => {
    for (const name of ['tencent', 'huawei', 'onenet', 'azure', 'baidu', 'thingsboard'] as const) {
      const resolved = resolveOptions({ url: 'https://p.example/b', data: {}, auth: name })
      expect(resolved.auth?.name).toBe(name)
    }
    expect(() => resolveOptions({ url: 'https://p.example/b', data: {}, auth: 'aws' as never })).toThrow(
      /'tencent', 'huawei', 'onenet', 'azure', 'baidu', 'thingsboard'/,
    )
  })
})

describe('the triplet maps onto each vendor field; the time comes from the sign context', () => {
  test('tencent: clientId productId+deviceName, expiry now+3600 s, a new random connId each signing', () => {
    const strategy = tencentAuth()
    const first = strategy.sign(device, context)
    const second = strategy.sign(device, context)
    const [clientId, appId, connId, expiry] = first.username.split(';')
    expect(first.clientId).toBe('L4WG9V9M2Mmeter-01')
    expect([clientId, appId, expiry]).toEqual(['L4WG9V9M2Mmeter-01', '12010126', String(Math.floor(NOW / 1000) + 3600)])
    expect(connId).toMatch(/^[A-Za-z0-9]{5}$/)
    const connIds = new Set(Array.from({ length: 20 }, () => strategy.sign(device, context).username.split(';')[2]))
    expect(connIds.size).toBeGreaterThan(15) // 62^5 values: twenty draws repeat rarely
    expect(second.password).toMatch(/;hmacsha256$/)
  })

  test('tencent with options: the signature is the vendor signer on the mapped fields', () => {
    const strategy = tencentAuth({ signMethod: 'hmacsha1', sdkAppId: '21010406', connId: 'Ab3dE', lifetimeSeconds: 60 })
    expect(strategy.sign(device, context)).toEqual(
      signTencent({
        productId: device.productKey,
        deviceName: device.deviceName,
        devicePsk: device.deviceSecret,
        connId: 'Ab3dE',
        expiry: Math.floor(NOW / 1000) + 60,
        signMethod: 'hmacsha1',
        sdkAppId: '21010406',
      }),
    )
  })

  test('huawei: deviceId productKey_deviceName, the hour stamp in UTC, signType 1 unless checkTimestamp is false', () => {
    const checked = huaweiAuth().sign(device, context)
    expect(checked.username).toBe('L4WG9V9M2M_meter-01')
    expect(checked.clientId).toBe('L4WG9V9M2M_meter-01_0_1_2026010123')
    const unchecked = huaweiAuth({ checkTimestamp: false }).sign(device, { ...context, now: NOW + 1 })
    expect(unchecked.clientId).toBe('L4WG9V9M2M_meter-01_0_0_2026010200') // a millisecond later: the next day, UTC
  })

  test('onenet: clientId deviceName, username productId, et now+lifetime, sha256 by default', () => {
    const signed = onenetAuth({ lifetimeSeconds: 120 }).sign(device, context)
    expect([signed.clientId, signed.username]).toEqual(['meter-01', 'L4WG9V9M2M'])
    const token = new URLSearchParams(signed.password ?? '')
    expect([token.get('et'), token.get('method')]).toEqual([String(Math.floor(NOW / 1000) + 120), 'sha256'])
    expect(onenetAuth({ method: 'md5' }).sign(device, context).password).toMatch(/&method=md5&/)
  })

  test('azure: the hub is the broker URL host, deviceId deviceName, productKey not sent', () => {
    const signed = azureAuth().sign(device, context)
    expect(signed).toEqual(
      signAzureSas({
        hostName: 'hub.example.net',
        deviceId: 'meter-01',
        key: device.deviceSecret,
        expiry: Math.floor(NOW / 1000) + 3600,
      }),
    )
    expect(JSON.stringify(signed)).not.toContain(device.productKey)
  })

  test('baidu: iotCoreId productKey, deviceKey deviceName, timestamp now in seconds, SHA256 by default', () => {
    const signed = baiduAuth().sign(device, context)
    expect(signed.username).toBe(`thingidp@L4WG9V9M2M|meter-01|${Math.floor(NOW / 1000)}|SHA256`)
    expect(baiduAuth({ algorithm: 'MD5' }).sign(device, context).username).toMatch(/\|MD5$/)
  })

  test('thingsboard: the access token is the username, no password', () => {
    expect(thingsboardAuth().sign(device, context)).toEqual({
      clientId: 'L4WG9V9M2M.meter-01',
      username: device.deviceSecret,
    })
  })

  test('default ports for a bare connect.host over mqtts', () => {
    const ports = [tencentAuth(), huaweiAuth(), onenetAuth(), azureAuth(), baiduAuth(), thingsboardAuth()].map(
      (s: AuthStrategy) => [s.name, s.defaultPort],
    )
    expect(Object.fromEntries(ports)).toEqual({
      tencent: 8883,
      huawei: 8883,
      onenet: 8883,
      azure: 8883,
      baidu: 1884,
      thingsboard: 8883,
    })
  })
})

describe('a triplet a strategy cannot sign for: AuthError ERR_AUTH_INVALID_IDENTITY naming the field, unquoted', () => {
  test.each([
    ['tencent', tencentAuth(), { deviceName: 'a;b' }, 'deviceName'],
    ['tencent', tencentAuth(), { deviceSecret: 'S3cr3t not base64' }, 'deviceSecret'],
    ['baidu', baiduAuth(), { deviceSecret: '' }, 'deviceSecret'],
    ['onenet', onenetAuth(), { productKey: 'p/x' }, 'productKey'],
    ['onenet', onenetAuth(), { deviceSecret: 'S3cr3t not base64' }, 'deviceSecret'],
    ['azure', azureAuth(), { deviceName: 'a/b' }, 'deviceName'],
    ['azure', azureAuth(), { deviceSecret: 'S3cr3t not base64' }, 'deviceSecret'],
    ['baidu', baiduAuth(), { deviceName: 'a|b' }, 'deviceName'],
    ['baidu', baiduAuth(), { productKey: 'a&b' }, 'productKey'],
    ['huawei', huaweiAuth(), { deviceSecret: '' }, 'deviceSecret'],
    ['thingsboard', thingsboardAuth(), { deviceSecret: '' }, 'deviceSecret'],
  ] as const)('%s %o', (_name, strategy, change, field) => {
    let error: unknown
    try {
      strategy.sign({ ...device, ...change }, context)
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(AuthError)
    expect(error).toMatchObject({ code: 'ERR_AUTH_INVALID_IDENTITY', transient: false })
    expect((error as Error).message).toContain(field)
    expect((error as Error).message).not.toContain('S3cr3t')
  })
})

describe('verifyTencentCredentials', () => {
  const v = vectors.tencent[0]
  const at = (seconds: number) => () => seconds * 1000
  const psk = (productId: string, deviceName: string) =>
    productId === v.productId && deviceName === v.deviceName ? v.devicePsk : undefined
  const connect = { clientId: v.clientId, username: v.username, password: v.password }

  test('a vector verifies within its validity, with its identity', () => {
    expect(verifyTencentCredentials(connect, psk, { now: at(v.expiry - 60) })).toEqual({
      productId: v.productId,
      deviceName: v.deviceName,
      connId: v.connId,
      expiry: v.expiry,
    })
    const sha1 = vectors.tencent[1]
    expect(verifyTencentCredentials({ ...sha1 }, psk, { now: at(v.expiry) })).toMatchObject({ expiry: v.expiry })
  })

  test('freshness: refused past the expiry (beyond the skew) or valid for longer than allowed', () => {
    expect(verifyTencentCredentials(connect, psk, { now: at(v.expiry + 15 * 60) })).toBeDefined()
    expect(verifyTencentCredentials(connect, psk, { now: at(v.expiry + 15 * 60 + 1) })).toBeUndefined()
    expect(verifyTencentCredentials(connect, psk, { now: at(v.expiry + 1), maxSkewMs: 0 })).toBeUndefined()
    expect(verifyTencentCredentials(connect, psk, { now: at(v.expiry - 2 * 86_400) })).toBeUndefined()
    expect(
      verifyTencentCredentials(connect, psk, { now: at(v.expiry - 600), maxLifetimeSeconds: 300, maxSkewMs: 0 }),
    ).toBeUndefined()
  })

  test.each([
    ['another clientId', { clientId: 'L4WG9V9M2MTEST3' }],
    ['a tampered expiry', { username: v.username.replace(/;\d+$/, `;${v.expiry + 1}`) }],
    ['a tampered connId', { username: v.username.replace(';abc12;', ';abc13;') }],
    ['another method', { password: v.password.replace(';hmacsha256', ';hmacsha1') }],
    ['no password', { password: undefined }],
    ['a Buffer of another signature', { password: Buffer.from(`${'0'.repeat(64)};hmacsha256`) }],
    ['a username of five fields', { username: `${v.username};x` }],
    // Signed for the number, so the password would match: the whole username must be what was signed.
    ['the expiry written with a leading zero', { username: v.username.replace(/;(\d+)$/, ';0$1') }],
  ])('%s: refused', (_name, change) => {
    expect(verifyTencentCredentials({ ...connect, ...change }, psk, { now: at(v.expiry - 60) })).toBeUndefined()
  })

  test('an unknown device is refused; bad options are InvalidOptionErrors', () => {
    expect(verifyTencentCredentials(connect, () => undefined, { now: at(v.expiry) })).toBeUndefined()
    expect(() => verifyTencentCredentials(connect, psk, { maxSkewMs: -1 })).toThrow(InvalidOptionError)
    expect(() => verifyTencentCredentials(connect, psk, { maxLifetimeSeconds: 0 })).toThrow(InvalidOptionError)
    expect(() => verifyTencentCredentials(connect, psk, { productIdLength: 0 })).toThrow(InvalidOptionError)
    expect(() => verifyTencentCredentials(connect, psk, null as never)).toThrow(InvalidOptionError)
    expect(() => verifyTencentCredentials(connect, psk, { now: 'x' as unknown as () => number })).toThrow(
      InvalidOptionError,
    )
  })

  test('a stored PSK that is not base64 verifies nothing (and does not throw); a NaN clock accepts nothing', () => {
    expect(verifyTencentCredentials(connect, () => 'not base64!', { now: at(v.expiry) })).toBeUndefined()
    expect(verifyTencentCredentials(connect, psk, { now: () => Number.NaN })).toBeUndefined()
  })
})

describe('verifyAzureSas', () => {
  const v = vectors.azure[0]
  const signed = signAzureSas(v)
  const key = (deviceId: string) => (deviceId === v.deviceId ? v.key : undefined)
  const now = () => (v.expiry - 600) * 1000

  test('the vector verifies for its hub, with its identity', () => {
    expect(signed.password).toBe(v.password)
    expect(verifyAzureSas(signed, key, { now, hostName: v.hostName })).toEqual({
      hostName: v.hostName,
      deviceId: v.deviceId,
      expiry: v.expiry,
    })
  })

  test.each([
    ['another device as clientId', { clientId: 'other' }],
    ['a username for another device', { username: `${v.hostName}/other/?api-version=2021-04-12` }],
    ['a tampered expiry', { password: signed.password.replace(/se=\d+$/, `se=${v.expiry + 1}`) }],
    ['a policy token (skn)', { password: `${signed.password}&skn=device` }],
    ['a repeated field', { password: `${signed.password}&se=${v.expiry}` }],
    ['a malformed escape', { password: signed.password.replace('sig=', 'sig=%E0%A4%A') }],
    ['not a SAS token', { password: 'SharedAccessKey=abc' }],
    ['no password', { password: undefined }],
  ])('%s: refused', (_name, change) => {
    expect(verifyAzureSas({ ...signed, ...change }, key, { now, hostName: v.hostName })).toBeUndefined()
  })

  test('freshness, the hub, and bad options', () => {
    const { hostName } = v
    expect(verifyAzureSas(signed, key, { now: () => (v.expiry + 16 * 60) * 1000, hostName })).toBeUndefined()
    expect(verifyAzureSas(signed, key, { now: () => (v.expiry - 2 * 86_400) * 1000, hostName })).toBeUndefined()
    expect(verifyAzureSas(signed, key, { now, hostName: 'other.azure-devices.net' })).toBeUndefined()
    expect(verifyAzureSas(signed, () => undefined, { now, hostName })).toBeUndefined()
    expect(() => verifyAzureSas(signed, key, { maxSkewMs: Number.NaN, hostName })).toThrow(InvalidOptionError)
    expect(() => verifyAzureSas(signed, key, { now: 5 as unknown as () => number, hostName })).toThrow(
      InvalidOptionError,
    )
    expect(() => verifyAzureSas(signed, key, undefined as never)).toThrow(/hostName/)
    expect(() => verifyAzureSas(signed, key, { now } as never)).toThrow(/hostName/)
  })

  test('a stored key that is not base64 verifies nothing (and does not throw); a NaN clock accepts nothing', () => {
    expect(verifyAzureSas(signed, () => 'not base64!', { now, hostName: v.hostName })).toBeUndefined()
    expect(verifyAzureSas(signed, key, { now: () => Number.NaN, hostName: v.hostName })).toBeUndefined()
  })

  test('azureAuth({ hostName }) signs for the named hub whatever the broker URL', () => {
    const fixed = azureAuth({ hostName: v.hostName }).sign(
      { productKey: 'p', deviceName: v.deviceId, deviceSecret: v.key, productSecret: null },
      { brokerUrl: 'mqtts://127.0.0.1:8883', now: (v.expiry - 3600) * 1000 },
    )
    expect(fixed).toEqual(signed)
    expect(() => azureAuth({ hostName: 'a/b' })).toThrow(InvalidOptionError)
    expect(() => azureAuth({ hostName: '' })).toThrow(InvalidOptionError)
  })
})
