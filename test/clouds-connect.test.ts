/**
 * The other clouds end to end (issue 19): for each strategy a device provisions from the reference server (handler +
 * JSON registry, HTTPS) and connects to a real aedes broker whose `authenticate` checks the CONNECT fields with an
 * implementation written here from the vendor's specification, not with the library's signer. The device's clock is a
 * FakeClock: the broker checks the time-dependent field against that same clock.
 */
import { createHash, createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import {
  AuthError,
  type AuthOption,
  azureAuth,
  baiduAuth,
  huaweiAuth,
  onenetAuth,
  tencentAuth,
  verifyAzureSas,
  verifyTencentCredentials,
} from '../packages/mqtt-bootstrap/src/index.js'
import { type BrokerCheck, startBroker, type TestBroker } from './helpers/broker.js'
import { boot, nextEvent } from './helpers/env.js'
import { suite } from './helpers/exposure.js'
import { FakeClock } from './helpers/fake-clock.js'
import { startReferenceServer } from './helpers/reference-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

type Cloud = 'tencent' | 'huawei' | 'onenet' | 'azure' | 'baidu' | 'thingsboard'
type Triplet = { productKey: string; deviceName: string; deviceSecret: string }

const DEVICES: Record<Cloud, Triplet> = {
  tencent: { productKey: 'L4WG9V9M2M', deviceName: 'meter-01', deviceSecret: 'q1bT3N8wz0lM+Z2xk7Y4Ug==' },
  huawei: { productKey: '64b7f1e2a1c3', deviceName: 'meter-02', deviceSecret: 'Hw-S3cr3t-meter-02' },
  onenet: {
    productKey: 'Ck2AF9QD2K',
    deviceName: 'meter-03',
    deviceSecret: 'dGhpcyBpcyBhIG9uZW5ldCBkZXZpY2Uga2V5IDMyYg==',
  },
  azure: {
    productKey: 'hub-product',
    deviceName: 'meter-04',
    deviceSecret: 'YXp1cmUgZGV2aWNlIHN5bW1ldHJpYyBrZXkgMzIgYnl0ZQ==',
  },
  baidu: { productKey: 'abcd123', deviceName: 'meter-05', deviceSecret: 'BaiduS3cr3tMeter05' },
  thingsboard: { productKey: 'tb', deviceName: 'meter-06', deviceSecret: 'TB_ACCESS_TOKEN_meter06xyz' },
}
const CLOUDS = Object.keys(DEVICES) as Cloud[]
const imeiOf = (cloud: Cloud) => `86000000000010${CLOUDS.indexOf(cloud)}`
/** A device whose deviceSecret is not the base64 key Tencent needs. */
const NOT_BASE64 = { productKey: 'L4WG9V9M2M', deviceName: 'meter-bad', deviceSecret: 'not base64: a password!' }

const seconds = (ms: number) => Math.floor(ms / 1000)
const hex = (algorithm: string, key: Buffer | string, message: string) =>
  createHmac(algorithm, key).update(message).digest('hex')
const b64 = (text: string) => Buffer.from(text, 'base64')

/**
 * Each vendor's check, from its documentation, for the device `d` at the broker's time `now` (ms); `lifetime` is the
 * validity the device was configured with. Returns what is wrong, or '' when the CONNECT is good.
 */
const CHECKS: Record<Cloud, (c: Parameters<BrokerCheck>[0], d: Triplet, now: number, lifetime: number) => string> = {
  // Tencent IoT Explorer: clientId productId+deviceName; username "clientId;sdkappid;connid;expiry"; password
  // hmac(base64decode(psk), username) in hex, then ";hmacsha256".
  tencent: (c, d, now, lifetime) => {
    const [clientId, appId, connId, expiry, ...rest] = (c.username ?? '').split(';')
    if (c.clientId !== d.productKey + d.deviceName || clientId !== c.clientId || rest.length > 0) return 'identity'
    if (appId !== '12010126' || !/^[A-Za-z0-9]{5}$/.test(connId ?? '')) return 'sdkappid or connid'
    if (Number(expiry) !== seconds(now) + lifetime) return `expiry ${expiry}`
    const [digest, method] = (c.password?.toString() ?? '').split(';')
    const algorithm = method === 'hmacsha256' ? 'sha256' : method === 'hmacsha1' ? 'sha1' : ''
    return algorithm !== '' && digest === hex(algorithm, b64(d.deviceSecret), c.username ?? '') ? '' : 'signature'
  },
  // Huawei IoTDA: device_id = product_id + "_" + node_id; clientId "device_id_0_1_YYYYMMDDHH" (UTC);
  // password = HMAC-SHA256 of the secret keyed by the hour stamp, hex.
  huawei: (c, d, now) => {
    const t = new Date(now)
    const pad = (n: number) => String(n).padStart(2, '0')
    const stamp = `${t.getUTCFullYear()}${pad(t.getUTCMonth() + 1)}${pad(t.getUTCDate())}${pad(t.getUTCHours())}`
    const deviceId = `${d.productKey}_${d.deviceName}`
    if (c.username !== deviceId || c.clientId !== `${deviceId}_0_1_${stamp}`) return `identity or stamp ${c.clientId}`
    return c.password?.toString() === hex('sha256', stamp, d.deviceSecret) ? '' : 'signature'
  },
  // OneNET: clientId the device name, username the product id, password the token of version 2018-10-31 whose sign
  // is base64(hmac(base64decode(key), et + "\n" + method + "\n" + res + "\n" + version)).
  onenet: (c, d, now, lifetime) => {
    if (c.clientId !== d.deviceName || c.username !== d.productKey) return 'identity'
    const token = new URLSearchParams(c.password?.toString() ?? '')
    const res = `products/${d.productKey}/devices/${d.deviceName}`
    const [version, et, method] = [token.get('version'), token.get('et'), token.get('method')]
    if (version !== '2018-10-31' || token.get('res') !== res || method !== 'sha256') return 'token fields'
    if (Number(et) !== seconds(now) + lifetime) return `et ${et}`
    const sign = createHmac('sha256', b64(d.deviceSecret)).update(`${et}\n${method}\n${res}\n${version}`).digest()
    return token.get('sign') === sign.toString('base64') ? '' : 'signature'
  },
  // Azure IoT Hub: clientId the device id, username "{host}/{deviceId}/?api-version=…", password
  // "SharedAccessSignature sr={url-encoded host/devices/id}&sig={url-encoded base64 hmac}&se={expiry}".
  azure: (c, d, now, lifetime) => {
    const host = '127.0.0.1'
    if (c.clientId !== d.deviceName || !c.username?.startsWith(`${host}/${d.deviceName}/?api-version=`)) {
      return 'identity'
    }
    const password = c.password?.toString() ?? ''
    if (!password.startsWith('SharedAccessSignature ')) return 'not a SAS token'
    const fields = new URLSearchParams(password.slice('SharedAccessSignature '.length))
    const sr = encodeURIComponent(`${host}/devices/${d.deviceName}`)
    if (fields.get('sr') !== `${host}/devices/${d.deviceName}`) return 'resource'
    if (Number(fields.get('se')) !== seconds(now) + lifetime) return `se ${fields.get('se')}`
    const sig = createHmac('sha256', b64(d.deviceSecret))
      .update(`${sr}\n${fields.get('se')}`)
      .digest('base64')
    return fields.get('sig') === sig ? '' : 'signature'
  },
  // Baidu IoT Core: username "thingidp@{iotCoreId}|{deviceKey}|{timestamp}|{algorithm}", password the lower-case hex
  // digest of "{deviceKey}&{timestamp}&{algorithm}{deviceSecret}".
  baidu: (c, d, now) => {
    const ts = seconds(now)
    if (c.username !== `thingidp@${d.productKey}|${d.deviceName}|${ts}|SHA256`) return `username ${c.username}`
    const digest = createHash('sha256').update(`${d.deviceName}&${ts}&SHA256${d.deviceSecret}`).digest('hex')
    return c.password?.toString() === digest ? '' : 'signature'
  },
  // ThingsBoard: the access token is the username; no password.
  thingsboard: (c, d) => (c.username === d.deviceSecret && c.password === undefined ? '' : 'token'),
}

let tls: TlsFixture
let broker: TestBroker
let server: Awaited<ReturnType<typeof startReferenceServer>>
let dir: string
const clock = new FakeClock()
/** What the broker checks the next CONNECTs against, and what it found wrong. */
let expecting: { cloud: Cloud; lifetime: number } | undefined
const faults: string[] = []

beforeAll(async () => {
  tls = await tlsFixture()
  broker = await startBroker({
    auth: (connect) => {
      if (expecting === undefined) return false
      const fault = CHECKS[expecting.cloud](connect, DEVICES[expecting.cloud], clock.now(), expecting.lifetime)
      if (fault !== '') faults.push(`${expecting.cloud}: ${fault}`)
      return fault === ''
    },
  })
  dir = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-clouds-'))
  const path = join(dir, 'devices.json')
  const devices = [...CLOUDS.map((cloud) => ({ match: { imei: imeiOf(cloud) }, device: DEVICES[cloud] }))]
  devices.push({ match: { imei: '860000000000199' }, device: NOT_BASE64 })
  const registry = {
    version: 1,
    attestation: 'none',
    defaults: { connect: { host: broker.host, qos: 1, cleanSession: 1 } },
    devices,
  }
  writeFileSync(path, JSON.stringify(registry))
  server = await startReferenceServer(tls, path)
  for (const device of [...Object.values(DEVICES), NOT_BASE64]) suite.secret(device.deviceSecret)
})
afterEach(() => {
  expecting = undefined
  faults.length = 0
  broker.connects.length = 0
  broker.published.length = 0
})
afterAll(async () => {
  await Promise.all([server?.close(), broker?.close()])
  rmSync(dir, { recursive: true, force: true })
})

const reconnect = { minDelay: 20, maxDelay: 200, factor: 2, stableAfter: 150 }
const optionsFor = (imei: string, auth: AuthOption) => ({
  url: server.url,
  data: { imei },
  tls: { ca: tls.ca },
  broker: { protocol: 'mqtt' as const },
  auth,
  reconnect,
  retry: { retries: 1, minTimeout: 10 },
})

describe.each(CLOUDS)("auth: '%s'", (cloud) => {
  const lifetime = cloud === 'huawei' || cloud === 'baidu' || cloud === 'thingsboard' ? 0 : 3600

  test('provisions, connects to a broker checking the vendor scheme, publishes QoS 1', async () => {
    clock.time = 1_767_225_600_000 + CLOUDS.indexOf(cloud) * 3_600_123 // 2026-01-01, a different hour each
    expecting = { cloud, lifetime }
    const { boot: bootstrap } = boot(optionsFor(imeiOf(cloud), cloud), { clock })
    const client = await bootstrap.connect()
    try {
      expect(faults).toEqual([])
      expect(broker.connects).toHaveLength(1)
      await client.publishAsync(`${cloud}/up`, 'reading 1', { qos: 1 })
      expect(broker.published).toContainEqual({ topic: `${cloud}/up`, qos: 1, payload: 'reading 1' })
      // The device secret shows neither in the client's options (ThingsBoard's username is the secret) nor in JSON.
      const secret = DEVICES[cloud].deviceSecret
      expect(inspect(client.options, { depth: 4 })).not.toContain(secret)
      expect(JSON.stringify(client.options)).not.toContain(secret)
    } finally {
      await client.endAsync(true)
    }
  })
})

describe('every reconnect signs afresh, with the time of the injected clock', () => {
  test.each([
    ['tencent', tencentAuth({ lifetimeSeconds: 600 }), 600],
    ['onenet', onenetAuth({ lifetimeSeconds: 900 }), 900],
    ['azure', azureAuth({ lifetimeSeconds: 120 }), 120],
    ['huawei', huaweiAuth(), 0],
    ['baidu', baiduAuth(), 0],
  ] as const)('%s: a dropped connection (an expired token) reconnects with a new one', async (cloud, auth, life) => {
    clock.time = 1_767_225_600_000
    expecting = { cloud, lifetime: life }
    const { boot: bootstrap } = boot(optionsFor(imeiOf(cloud), auth), { clock })
    const client = await bootstrap.connect()
    try {
      clock.time += 2 * 3_600_000 // two hours on: the first token has expired, the hour stamp moved
      const reconnected = nextEvent(bootstrap, 'connected')
      broker.drop()
      await reconnected
      expect(faults).toEqual([])
      const [first, second] = broker.connects
      expect(broker.connects).toHaveLength(2)
      expect([second?.clientId, second?.username, second?.password]).not.toEqual([
        first?.clientId,
        first?.username,
        first?.password,
      ])
    } finally {
      await client.endAsync(true)
    }
  })
})

describe('a clock that is not a number', () => {
  test('signs nothing: connect() rejects with a typed error naming the clock, and no CONNECT is sent', async () => {
    expecting = { cloud: 'azure', lifetime: 3600 }
    const nanClock = new FakeClock()
    nanClock.time = Number.NaN
    const { boot: bootstrap } = boot(optionsFor(imeiOf('azure'), 'azure'), { clock: nanClock })
    await expect(bootstrap.connect()).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION', option: 'clock' })
    expect(broker.connects).toEqual([])
  })
})

describe('ThingsBoard: the access token is the username, sealed on every connect', () => {
  test('after a reconnect the broker got the token again and the client options still do not show it', async () => {
    clock.time = 1_767_225_600_000
    expecting = { cloud: 'thingsboard', lifetime: 0 }
    const { boot: bootstrap } = boot(optionsFor(imeiOf('thingsboard'), 'thingsboard'), { clock })
    const client = await bootstrap.connect()
    try {
      const reconnected = nextEvent(bootstrap, 'connected')
      broker.drop()
      await reconnected
      expect(faults).toEqual([])
      const secret = DEVICES.thingsboard.deviceSecret
      expect(broker.connects.map((c) => c.username)).toEqual([secret, secret])
      expect(inspect(client.options, { depth: 4 })).not.toContain(secret)
      expect(JSON.stringify(client.options)).not.toContain(secret)
      expect(inspect(bootstrap, { depth: 6 })).not.toContain(secret)
    } finally {
      await client.endAsync(true)
    }
  })
})

describe("the library's verifiers accept what the device sent, and only then", () => {
  test('verifyTencentCredentials: identity at the broker clock; refused once expired', async () => {
    clock.time = 1_767_225_600_000
    expecting = { cloud: 'tencent', lifetime: 3600 }
    const { boot: bootstrap } = boot(optionsFor(imeiOf('tencent'), 'tencent'), { clock })
    const client = await bootstrap.connect()
    await client.endAsync(true)
    const sent = broker.connects[0]
    if (sent === undefined) throw new Error('no CONNECT')
    const d = DEVICES.tencent
    const psk = (productId: string, deviceName: string) =>
      productId === d.productKey && deviceName === d.deviceName ? d.deviceSecret : undefined
    const connect = { ...sent, password: sent.password }
    expect(verifyTencentCredentials(connect, psk, { now: () => clock.time })).toMatchObject({
      productId: d.productKey,
      deviceName: d.deviceName,
      expiry: seconds(clock.time) + 3600,
    })
    const later = clock.time + 3600_000 + 16 * 60_000 // past the expiry and the 15 minutes' skew
    expect(verifyTencentCredentials(connect, psk, { now: () => later })).toBeUndefined()
  })

  test('verifyAzureSas: identity for the hub; refused for another hub or once expired', async () => {
    clock.time = 1_767_225_600_000
    expecting = { cloud: 'azure', lifetime: 3600 }
    const { boot: bootstrap } = boot(optionsFor(imeiOf('azure'), 'azure'), { clock })
    const client = await bootstrap.connect()
    await client.endAsync(true)
    const sent = broker.connects[0]
    if (sent === undefined) throw new Error('no CONNECT')
    const d = DEVICES.azure
    const key = (deviceId: string) => (deviceId === d.deviceName ? d.deviceSecret : undefined)
    const now = () => clock.time
    expect(verifyAzureSas(sent, key, { now, hostName: '127.0.0.1' })).toEqual({
      hostName: '127.0.0.1',
      deviceId: d.deviceName,
      expiry: seconds(clock.time) + 3600,
    })
    expect(verifyAzureSas(sent, key, { now, hostName: 'other.azure-devices.net' })).toBeUndefined()
    expect(verifyAzureSas(sent, key, { now: () => clock.time + 2 * 3_600_000, hostName: '127.0.0.1' })).toBeUndefined()
  })
})

test('a triplet the strategy cannot sign for: AuthError ERR_AUTH_INVALID_IDENTITY, no CONNECT, the secret unquoted', async () => {
  expecting = { cloud: 'tencent', lifetime: 3600 }
  const { boot: bootstrap } = boot(optionsFor('860000000000199', 'tencent'), { clock })
  const error = await bootstrap.connect().catch((e: unknown) => e)
  expect(error).toBeInstanceOf(AuthError)
  expect(error).toMatchObject({ code: 'ERR_AUTH_INVALID_IDENTITY', transient: false })
  expect((error as Error).message).toMatch(/deviceSecret/)
  expect((error as Error).message).not.toContain(NOT_BASE64.deviceSecret)
  expect(broker.connects).toHaveLength(0)
})
