/**
 * Issue 11, the aliyun strategy and its broker side: the signer refuses identities that make its clientId or username
 * ambiguous (before any CONNECT), and verifyAliyunCredentials refuses a stale or replayed timestamp and a clientId
 * naming another device, on a real aedes broker as in unit form.
 */
import { describe, expect, test } from 'vitest'
import { ALIYUN_MAX_SKEW_MS } from '../packages/mqtt-bootstrap/src/auth/aliyun.js'
import {
  AuthError,
  type AuthFunction,
  aliyunAuth,
  InvalidOptionError,
  plainAuth,
  signAliyun,
  verifyAliyunCredentials,
} from '../packages/mqtt-bootstrap/src/index.js'
import { startBroker } from './helpers/broker.js'
import { boot, eventTrail, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'

const SECRET = 'verify-secret-0123456789'
const T = 1_800_000_000_000

/** CONNECT fields of `device` signed at `timestamp`, with `cid` (the device's own by default). */
function signed(timestamp: number, device = { productKey: 'pk', deviceName: 'dn' }, cid?: string) {
  return signAliyun({
    cid: cid ?? `${device.productKey}.${device.deviceName}`,
    ...device,
    deviceSecret: SECRET,
    timestamp,
    signMethod: 'hmacsha256',
    secureMode: 2,
  })
}
const lookup = () => SECRET
const at = (now: number) => ({ now: () => now })

describe('verifyAliyunCredentials: the timestamp must be fresh', () => {
  test('by default within 15 minutes of the broker clock, either way, inclusive', () => {
    expect(ALIYUN_MAX_SKEW_MS).toBe(15 * 60 * 1000)
    for (const skew of [0, ALIYUN_MAX_SKEW_MS, -ALIYUN_MAX_SKEW_MS]) {
      expect(verifyAliyunCredentials(signed(T + skew), lookup, at(T)), String(skew)).toEqual({
        productKey: 'pk',
        deviceName: 'dn',
        timestamp: T + skew,
      })
    }
    // One millisecond more, behind (a replay, a device that slept) or ahead (a clock that runs fast).
    for (const skew of [ALIYUN_MAX_SKEW_MS + 1, -ALIYUN_MAX_SKEW_MS - 1, T]) {
      expect(verifyAliyunCredentials(signed(T + skew), lookup, at(T)), String(skew)).toBeUndefined()
    }
  })

  test("the broker's clock is Date.now unless given", () => {
    expect(verifyAliyunCredentials(signed(Date.now()), lookup)).toBeDefined()
    expect(verifyAliyunCredentials(signed(Date.now() - ALIYUN_MAX_SKEW_MS - 60_000), lookup)).toBeUndefined()
    expect(verifyAliyunCredentials(signed(Date.now() + ALIYUN_MAX_SKEW_MS + 60_000), lookup)).toBeUndefined()
  })

  test('maxSkewMs sets the window; Infinity accepts any timestamp; a broken clock (NaN) accepts none', () => {
    const window = { ...at(T), maxSkewMs: 1000 }
    expect(verifyAliyunCredentials(signed(T - 1000), lookup, window)).toBeDefined()
    expect(verifyAliyunCredentials(signed(T + 1001), lookup, window)).toBeUndefined()
    expect(verifyAliyunCredentials(signed(T), lookup, { ...at(T), maxSkewMs: 0 })).toBeDefined()
    expect(verifyAliyunCredentials(signed(T + 1), lookup, { ...at(T), maxSkewMs: 0 })).toBeUndefined()
    expect(verifyAliyunCredentials(signed(0), lookup, { ...at(T), maxSkewMs: Infinity })).toBeDefined()
    expect(verifyAliyunCredentials(signed(T), lookup, { now: () => Number.NaN, maxSkewMs: Infinity })).toBeUndefined()
  })

  test('a bad maxSkewMs is an InvalidOptionError naming it', () => {
    for (const maxSkewMs of [-1, Number.NaN, '900000', null]) {
      const call = () => verifyAliyunCredentials(signed(T), lookup, { maxSkewMs: maxSkewMs as number })
      expect(call, String(maxSkewMs)).toThrow(InvalidOptionError)
      expect(call, String(maxSkewMs)).toThrow(/`maxSkewMs`/)
      expect(() => call(), String(maxSkewMs)).toThrow(expect.objectContaining({ option: 'maxSkewMs' }))
    }
  })
})

describe('verifyAliyunCredentials: the signed clientId names the device of the username', () => {
  test('a cid naming another device (or a suffixed one) is refused, though the signature is right', () => {
    expect(verifyAliyunCredentials(signed(T, undefined, 'pk.dn'), lookup, at(T))).toBeDefined()
    for (const cid of ['pk.other', 'other.dn', 'pk.dn-2', 'x-pk.dn', 'dn.pk', 'pk&dn', 'pkdn']) {
      expect(verifyAliyunCredentials(signed(T, undefined, cid), lookup, at(T)), cid).toBeUndefined()
    }
  })

  test('an empty deviceName or productKey in the username is no device, however it is signed', () => {
    for (const device of [
      { productKey: 'pk', deviceName: '' },
      { productKey: '', deviceName: 'dn' },
    ]) {
      const fields = signed(T, device)
      expect(fields.username).toMatch(/^&|&$/)
      expect(verifyAliyunCredentials(fields, lookup, at(T))).toBeUndefined()
    }
  })

  test('the identity comes from the username: a `.` makes the cid ambiguous, the answer is not', () => {
    // Both sign the clientId cid "a.b.c"; each is verified as itself, with its own secret.
    const secrets: Record<string, string> = { 'a.b|c': 'secret-of-a-b', 'a|b.c': 'secret-of-b-c' }
    const byIdentity = (pk: string, dn: string) => secrets[`${pk}|${dn}`]
    for (const [productKey, deviceName] of [
      ['a.b', 'c'],
      ['a', 'b.c'],
    ] as const) {
      const fields = signAliyun({
        cid: `${productKey}.${deviceName}`,
        productKey,
        deviceName,
        deviceSecret: secrets[`${productKey}|${deviceName}`] as string,
        timestamp: T,
        signMethod: 'hmacsha1',
        secureMode: 3,
      })
      expect(fields.clientId.startsWith('a.b.c|')).toBe(true)
      expect(verifyAliyunCredentials(fields, byIdentity, at(T))).toEqual({ productKey, deviceName, timestamp: T })
    }
  })

  test('malformed fields: no username, a username with two `&`, no password, a clientId without the suffix', () => {
    const good = signed(T)
    const cases = [
      { ...good, username: undefined },
      { ...good, username: 'dn&pk&x' },
      { ...good, username: `x&${good.username}` },
      { ...good, password: undefined },
      { ...good, clientId: 'pk.dn' },
      { ...good, clientId: good.clientId.replace('securemode=2', 'securemode=4') },
      // Nothing before the cid (not even past a line break) and nothing after the closing `|`.
      { ...good, clientId: `other\n${good.clientId}` },
      { ...good, clientId: `${good.clientId}x` },
      { ...good, clientId: `${good.clientId}\n` },
      // A password of another length (timingSafeEqual would throw on it).
      { ...good, password: 'short' },
      { ...good, password: `${good.password}0` },
    ]
    for (const fields of cases) expect(verifyAliyunCredentials(fields, lookup, at(T))).toBeUndefined()
    expect(verifyAliyunCredentials({ ...good, password: Buffer.from(good.password) }, lookup, at(T))).toBeDefined()
  })
})

describe('the aliyun strategy refuses `|` and `&` in productKey or deviceName', () => {
  const sign: AuthFunction = (device, context) => aliyunAuth().sign(device, context)
  test('by default: named aliyun, port 1883, hmacsha256', () => {
    const strategy = aliyunAuth()
    expect([strategy.name, strategy.defaultPort]).toEqual(['aliyun', 1883])
    const device = { ...DEVICE, productSecret: null }
    expect(strategy.sign(device, { brokerUrl: 'mqtts://b', now: T })).toEqual(
      signAliyun({
        cid: `${DEVICE.productKey}.${DEVICE.deviceName}`,
        ...DEVICE,
        timestamp: T,
        signMethod: 'hmacsha256',
        secureMode: 2,
      }),
    )
  })

  test.each([
    ['productKey', 'a1|PK'],
    ['productKey', 'a1&PK'],
    ['deviceName', 'dev|1'],
    ['deviceName', 'dev&1'],
    ['deviceName', 'x|y&z'],
  ])('%s %s: AuthError ERR_AUTH_INVALID_IDENTITY, not transient', (field, value) => {
    const device = { ...DEVICE, productSecret: null, [field]: value }
    const error = (() => {
      try {
        sign(device, { brokerUrl: 'mqtts://b:1883', now: T })
      } catch (caught) {
        return caught
      }
    })()
    expect(error).toBeInstanceOf(AuthError)
    expect(error).toMatchObject({ code: 'ERR_AUTH_INVALID_IDENTITY', transient: false })
    // It names the field and the rule, never the value.
    expect((error as Error).message).toContain(field)
    expect((error as Error).message).not.toContain(value)
  })

  test('identities other strategies use are fine: `_`, `.`, `-`, `@`, `#`, non-ASCII', () => {
    for (const deviceName of ['meter_0002', 'a.b', 'dev-1', 'x@y', 'n#1', 'Gerät']) {
      const fields = sign({ ...DEVICE, deviceName, productSecret: null }, { brokerUrl: 'mqtt://b', now: T })
      expect(verifyAliyunCredentials(fields, () => DEVICE.deviceSecret, at(T))).toMatchObject({ deviceName })
    }
  })
})

describe('against a real broker', () => {
  const env = useTestEnv()

  test('connect() ends with the AuthError before any CONNECT; provision() still works', async () => {
    const device = { ...DEVICE, deviceName: 'dev&001' }
    env.answerValid({}, device)
    const { boot: bootstrap, events } = boot(env.options())
    const error = await bootstrap.connect().catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(AuthError)
    expect(error).toMatchObject({ code: 'ERR_AUTH_INVALID_IDENTITY', transient: false })
    expect(env.broker.connects).toHaveLength(0)
    expect(eventTrail(events)).not.toContain('connecting')
    expect(eventTrail(events)).not.toContain('retry')
    expect(env.server.requests).toHaveLength(1)

    const config = await boot(env.options()).boot.provision()
    expect(config.device.deviceName).toBe('dev&001')
  })

  test('plain and custom strategies sign such identities as before', async () => {
    const device = { ...DEVICE, productKey: 'a1|PK', deviceName: 'dev&001' }
    const plain = await startBroker({ auth: 'plain', secrets: { 'a1|PK.dev&001': DEVICE.deviceSecret } })
    try {
      env.answerValid({ host: plain.host }, device)
      const custom: AuthFunction = (d) => ({
        clientId: `${d.productKey}.${d.deviceName}`,
        username: d.deviceName,
        password: d.deviceSecret,
      })
      for (const auth of [plainAuth(), custom]) {
        const client = env.track(await boot(env.options({ auth })).boot.connect())
        expect(client.connected).toBe(true)
      }
      expect(plain.connects.map((c) => c.username)).toEqual(['dev&001', 'dev&001'])
      expect(plain.accepted).toBe(2)
    } finally {
      await env.cleanup()
      await plain.close()
    }
  })

  test('a CONNECT replayed outside the window is refused; the device itself re-signs and gets in', async () => {
    const clock = new FakeClock()
    env.broker.freshness = { now: () => clock.now() }
    try {
      const first = env.track(await boot(env.options(), { clock }).boot.connect())
      expect(first.connected).toBe(true)
      const [seen] = env.broker.connects
      if (seen === undefined) throw new Error('no CONNECT seen')
      expect(seen.clientId).toContain(`timestamp=${clock.time}|`)
      await first.endAsync(true)

      const { default: mqtt } = await import('mqtt')
      const replay = () =>
        mqtt.connectAsync(`mqtt://${env.broker.host}`, {
          clientId: seen.clientId,
          username: seen.username,
          password: seen.password,
          reconnectPeriod: 0,
        })
      // Stateless: inside the window a replay passes (TLS, securemode 2, is what keeps the fields from being seen).
      clock.time += ALIYUN_MAX_SKEW_MS
      env.track(await replay(), 'test')
      await env.cleanup()

      clock.time += 1
      await expect(replay()).rejects.toMatchObject({ code: 4 })
      expect(env.broker.accepted).toBeGreaterThanOrEqual(2)

      const again = env.track(await boot(env.options(), { clock }).boot.connect())
      expect(again.connected).toBe(true)
    } finally {
      env.broker.freshness = { maxSkewMs: Infinity }
    }
  })

  test('a device on the real clock connects to a broker with the default window', async () => {
    env.broker.freshness = {}
    try {
      const client = env.track(await boot(env.options()).boot.connect())
      expect(client.connected).toBe(true)
      expect(env.broker.accepted).toBeGreaterThan(0)
    } finally {
      env.broker.freshness = { maxSkewMs: Infinity }
    }
  })
})
