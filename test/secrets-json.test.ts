// Secrets in JSON: options objects, the sealed password, errors down their cause chain and a real pino logger show
// none; the credentials themselves do, by contract. Echoes of a secret in a server's message are redacted.
import { Writable } from 'node:stream'
import { inspect } from 'node:util'
import pino from 'pino'
import { describe, expect, onTestFinished, test } from 'vitest'
import {
  AliyunRegistration,
  type CredentialStore,
  credentialKey,
  MemoryCredentialStore,
  PointAccess,
  ProvisioningError,
  RegistrationError,
  type StoredCredentials,
} from '../packages/mqtt-bootstrap/src/index.js'
import {
  ECHO_RUN,
  INSPECT_CUSTOM,
  REDACTED,
  redactEchoes,
  redactOnInspect,
  redactOnJson,
  redactUrl,
  SECRET_OPTION_KEYS,
  sealedPassword,
  withSealedKeys,
} from '../packages/mqtt-bootstrap/src/redact.js'
import { startBroker } from './helpers/broker.js'
import { boot, useTestEnv } from './helpers/env.js'
import { rawJson, suite } from './helpers/exposure.js'
import { DEVICE, json } from './helpers/https-server.js'

const env = useTestEnv()

/** The identity, shown by design: the test device's secret happens to contain its name ("device-001"). */
const PUBLIC = `${DEVICE.productKey}.${DEVICE.deviceName}`

/** Every 8-character run of `secret` (but those of public names): none may appear where the secret must not. */
const runsOf = (secret: string) =>
  Array.from({ length: secret.length - ECHO_RUN + 1 }, (_, i) => secret.slice(i, i + ECHO_RUN)).filter(
    (run) => !PUBLIC.includes(run),
  )

function expectNoRunOf(text: string, ...secrets: string[]): void {
  for (const secret of secrets) for (const run of runsOf(secret)) expect(text, run).not.toContain(run)
}

describe('redactEchoes', () => {
  const secret = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345'

  test('every run of 8 or more characters of a secret goes, wherever it is; 7 stay', () => {
    expect(redactEchoes(`bad ${secret} given`, [secret])).toBe(`bad ${REDACTED} given`)
    expect(redactEchoes(`got ${secret.slice(0, 12)}…`, [secret])).toBe(`got ${REDACTED}…`)
    expect(redactEchoes(`x${secret.slice(9, 17)}y`, [secret])).toBe(`x${REDACTED}y`) // the middle
    expect(redactEchoes(`x${secret.slice(-8)}`, [secret])).toBe(`x${REDACTED}`) // the end
    expect(redactEchoes(`x${secret.slice(3, 10)}y`, [secret])).toBe(`x${secret.slice(3, 10)}y`) // 7: no echo
    expect(redactEchoes('nothing here', [secret])).toBe('nothing here')
  })

  test('several echoes, overlapping ones, runs of two secrets side by side, a short secret whole', () => {
    const other = 'zyxwvutsrqponmlk'
    expect(redactEchoes(`${secret.slice(0, 9)}-${secret.slice(20)}`, [secret])).toBe(`${REDACTED}-${REDACTED}`)
    // Two runs that overlap in the text ("…HIJKLMN" then "HIJKLMNOP…" sharing characters) are one redaction.
    expect(redactEchoes(`<${secret.slice(0, 14)}${secret.slice(7, 20)}>`, [secret])).toBe(`<${REDACTED}>`)
    expect(redactEchoes(`${secret.slice(0, 8)}${other.slice(0, 8)}!`, [secret, other])).toBe(`${REDACTED}!`)
    expect(redactEchoes('key=abc12 and abc1', ['abc12'])).toBe(`key=${REDACTED} and abc1`)
    expect(redactEchoes('abc', ['', null, undefined])).toBe('abc')
  })

  test('bounded: the message is capped first; 1024-character secrets and messages cost little', () => {
    expect(redactEchoes('a'.repeat(5000), [])).toHaveLength(1024)
    const long = Array.from({ length: 1024 }, (_, i) => String.fromCharCode(33 + ((i * 7919) % 90))).join('')
    const message = `${long.slice(100, 600)}|${long.slice(0, 523)}`
    const started = performance.now()
    for (let i = 0; i < 100; i++) expect(redactEchoes(message, [long, long.slice(1)])).toBe(`${REDACTED}|${REDACTED}`)
    expect((performance.now() - started) / 100).toBeLessThan(20)
  })
})

describe('redact.ts', () => {
  test('redactOnInspect: set fields print [redacted], empty ones as they are; the hook is hidden or travels', () => {
    const keys = ['secret', 'other'] as const
    const target = { name: 'n', secret: 's3cret', other: '', none: null }
    expect(redactOnInspect(target, keys)).toBe(target)
    expect(inspect(target)).toBe("{ name: 'n', secret: '[redacted]', other: '', none: null }")
    expect(inspect(redactOnInspect({ secret: null, other: undefined }, keys))).toBe(
      '{ secret: null, other: undefined }',
    )
    expect(Object.getOwnPropertySymbols({ ...target })).toEqual([]) // not enumerable: a spread drops it
    const travelling = redactOnInspect({ secret: 'x' }, keys, true)
    expect(inspect({ ...travelling })).toBe("{ secret: '[redacted]' }")
    const hook = Object.getOwnPropertyDescriptor(target, INSPECT_CUSTOM)
    expect(hook).toMatchObject({ enumerable: false, writable: true, configurable: true })
    expect(Object.getOwnPropertyDescriptor(travelling, INSPECT_CUSTOM)?.value).toBe(hook?.value) // one per key list
    expect(inspect(target.secret)).toBe("'s3cret'") // the object keeps its value
  })

  test('redactOnJson: one toJSON per key list, hidden from spreads; what it gives has no hook left', () => {
    const a = redactOnJson({ key: 'k', passphrase: 'p' }, SECRET_OPTION_KEYS)
    const b = redactOnJson({ pfx: 'x' }, SECRET_OPTION_KEYS)
    expect(Object.getOwnPropertyDescriptor(a, 'toJSON')).toMatchObject({
      enumerable: false,
      configurable: true,
      writable: true,
    })
    expect(Object.getOwnPropertyDescriptor(a, 'toJSON')?.value).toBe(
      Object.getOwnPropertyDescriptor(b, 'toJSON')?.value,
    )
    expect(JSON.stringify(a)).toBe('{"key":"[redacted]","passphrase":"[redacted]"}')
    const travelling = redactOnJson(redactOnInspect({ password: 'p' }, SECRET_OPTION_KEYS, true), SECRET_OPTION_KEYS)
    expect(Object.getOwnPropertySymbols((travelling as unknown as { toJSON(): object }).toJSON())).toEqual([])
  })

  test('withSealedKeys: a string or Buffer key or pfx becomes a sealed copy; anything else is left alone', () => {
    const keyBuffer = Buffer.from('KEY')
    const sealed = withSealedKeys({ key: 'PEM', pfx: keyBuffer, cert: 'C' })
    expect(JSON.stringify(sealed)).toBe('{"key":"[redacted]","pfx":"[redacted]","cert":"C"}')
    expect(inspect(sealed.key)).toBe(REDACTED)
    expect(String(sealed.key)).toBe('PEM')
    expect(sealed.pfx).not.toBe(keyBuffer)
    expect(String(sealed.pfx)).toBe('KEY')
    expect(JSON.stringify(keyBuffer)).toContain('"type":"Buffer"') // the caller's Buffer is untouched
    expect(JSON.stringify(withSealedKeys({ key: 'PEM' }))).toBe('{"key":"[redacted]"}')
    expect(JSON.stringify(withSealedKeys({ pfx: 'P' }))).toBe('{"pfx":"[redacted]"}')
    const none = { cert: 'C', key: 42, wsOptions: { headers: {} } }
    expect(withSealedKeys(none)).toBe(none)
    expect(withSealedKeys({ key: 'K', pfx: [1] }).pfx).toEqual([1])
  })

  // Plain test names (no commas, braces or parentheses): StrykerJS's vitest runner selects tests by name.
  test('withSealedKeys seals arrays of keys and the pem and buf object forms and the keys in wsOptions', () => {
    const options = {
      key: ['PEM-A', Buffer.from('PEM-B'), { pem: 'PEM-C', passphrase: 'pass-c' }],
      pfx: [{ buf: Buffer.from('PFX-D') }],
      wsOptions: { key: 'PEM-E', pfx: 'PFX-F', headers: { h: 'v' } },
    }
    const sealed = withSealedKeys(options)
    // What a logger that walks the fields itself sees (pino at the top level), without any toJSON of ours:
    const walked = JSON.stringify({ ...sealed, wsOptions: { ...sealed.wsOptions } })
    for (const secret of ['PEM-A', 'PEM-B', 'PEM-C', 'PFX-D', 'PEM-E', 'PFX-F']) expect(walked).not.toContain(secret)
    expect(walked).toContain('"passphrase":"pass-c"') // a passphrase must stay a string for tls (README: redact it)
    expect(walked).toContain('"headers":{"h":"v"}')
    // tls reads the same bytes; the caller's objects are left as they were.
    const [a, b, c] = sealed.key as [Buffer, Buffer, { pem: Buffer }]
    expect([String(a), String(b), String(c.pem)]).toEqual(['PEM-A', 'PEM-B', 'PEM-C'])
    expect(String((sealed.pfx as [{ buf: Buffer }])[0].buf)).toBe('PFX-D')
    expect(JSON.stringify((sealed.pfx as [{ buf: Buffer }])[0].buf)).toBe(`"${REDACTED}"`) // sealed, not its bytes
    expect(String(sealed.wsOptions.key)).toBe('PEM-E')
    expect(options.key[0]).toBe('PEM-A')
    expect(options.wsOptions.key).toBe('PEM-E')
  })

  test('withSealedKeys leaves what is no key as it is and adds no field', () => {
    expect(Object.keys(withSealedKeys({ pfx: 'P' }))).toEqual(['pfx'])
    expect(Object.keys(withSealedKeys({ key: 'K' }))).toEqual(['key'])
    expect(withSealedKeys({ key: [{ pem: 42 }, 7] }).key).toEqual([{ pem: 42 }, 7])
  })

  test('redactOnJson copies only plain objects one level down and leaves Buffers and instances to their own JSON', () => {
    const ca = Buffer.from('CA')
    const when = new Date(0)
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { passphrase: 'BARE-PASS', origin: 'o' })
    const json = JSON.stringify(redactOnJson({ ca, when, wsOptions: bare }, SECRET_OPTION_KEYS))
    expect(json).toBe(
      `{"ca":${JSON.stringify(ca)},"when":${JSON.stringify(when)},"wsOptions":{"passphrase":"${REDACTED}","origin":"o"}}`,
    )
  })

  test('redactOnJson redacts the secret keys in wsOptions where mqtt.js copies the TLS options over wss', () => {
    const target = redactOnJson(
      { passphrase: 'top', wsOptions: { passphrase: 'NESTED-PASS', key: 'NESTED-KEY', origin: 'o' } },
      SECRET_OPTION_KEYS,
    )
    const json = JSON.stringify(target)
    expect(json).not.toContain('NESTED')
    expect(json).toContain('"origin":"o"')
    expect(target.wsOptions.passphrase).toBe('NESTED-PASS') // the object itself is unchanged
  })

  test('redactUrl: no credentials, query or fragment; an invalid URL says so', () => {
    expect(redactUrl('https://user:pw@host:8443/path?token=t#frag')).toBe('https://host:8443/path')
    expect(redactUrl('not a url')).toBe('[invalid url]')
    expect(redactUrl('mqtt:user:pw-1234@host')).toBe('[invalid url]') // no authority: the rest could be a credential
    expect(redactUrl('x:S3CRET-token')).toBe('[invalid url]')
    expect(redactUrl('mqtts://[::1]:8883/')).toBe('mqtts://[::1]:8883/')
  })
})

describe('JSON of options and passwords', () => {
  test('the sealed password: JSON and inspect show [redacted], the bytes stay; a toJSON keeps all but secrets', () => {
    const password = sealedPassword('device-secret-value')
    expect(JSON.stringify({ password })).toBe('{"password":"[redacted]"}')
    expect(inspect(password)).toBe(REDACTED)
    expect(password.toString()).toBe('device-secret-value')
    expect(Object.keys(password)).toEqual(Object.keys(Buffer.from('device-secret-value')))
    const options = redactOnJson({ clientId: 'c', key: 'PRIVATE', passphrase: '', pfx: undefined }, ['key', 'pfx'])
    expect(JSON.parse(JSON.stringify(options))).toEqual({ clientId: 'c', key: REDACTED, passphrase: '' })
    expect(Object.keys(options)).toEqual(['clientId', 'key', 'passphrase', 'pfx']) // spreads see the same fields
    expect({ ...options }.key).toBe('PRIVATE')
  })

  test('plain auth over mutual TLS: the broker gets the secret; client.options, connectOptions() and pino show none', async () => {
    const broker = await startBroker({
      auth: 'plain',
      tls: env.tls,
      secrets: { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret },
    })
    onTestFinished(() => broker.close())
    env.answerValid({ host: `mqtts://${broker.host}` })
    const keyBody = env.tls.client.key.split('\n')[1] as string
    suite.secret(keyBody)
    const lines: string[] = []
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk))
        done()
      },
    })
    const logger = pino({ level: 'debug' }, sink)
    const { boot: bootstrap } = boot(
      env.options({
        auth: 'plain',
        broker: undefined,
        logger,
        mqtt: { ca: env.tls.ca, cert: env.tls.client.cert, key: env.tls.client.key },
      }),
    )
    const client = env.track(await bootstrap.connect())
    expect(broker.connects.at(-1)?.password).toBe(DEVICE.deviceSecret) // mqtt-packet wrote the real bytes
    const options = await bootstrap.connectOptions()

    const shown = [JSON.stringify(client.options), JSON.stringify(options), rawJson(client)]
    logger.info(client.options, 'top level')
    logger.info({ options: client.options, connect: options }, 'nested')
    logger.info(options, 'connectOptions at top level')
    await new Promise((resolve) => setImmediate(resolve))
    expect(lines.length).toBeGreaterThan(3)
    const text = [...shown, ...lines].join('\n')
    expectNoRunOf(text, DEVICE.deviceSecret)
    expect(text).not.toContain(keyBody) // (its runs: ASN.1 headers that certificates share)
    // Everything but the secrets is there.
    const parsed = JSON.parse(JSON.stringify(options))
    expect(parsed).toMatchObject({ url: `mqtts://${broker.host}`, password: REDACTED, key: REDACTED })
    expect(parsed.clientId).toBe(options.clientId)
    expect(parsed.username).toBe(DEVICE.deviceName) // plain auth
    expect(parsed.cert).toBe(env.tls.client.cert)
    expect(JSON.parse(JSON.stringify(client.options))).toMatchObject({ password: REDACTED, key: REDACTED })
    // ... and connectOptions() still connects (the sealed key and password are the same bytes).
    const { connectAsync } = await import('mqtt')
    const again = env.track(await connectAsync(options.url, { ...options, reconnectPeriod: 0 }), 'test')
    expect(again.connected).toBe(true)
  })

  test('the credentials hold their secrets in JSON: provision(), PointAccess.deviceConfig, what a store is given', async () => {
    const given: StoredCredentials[] = []
    const memory = new MemoryCredentialStore()
    const store: CredentialStore = {
      get: (key) => memory.get(key),
      set: async (key, entry) => {
        given.push(JSON.parse(JSON.stringify(entry)))
        await memory.set(key, entry)
      },
      delete: (key) => memory.delete(key),
    }
    const { boot: bootstrap } = boot(env.options({ cache: store }))
    const config = await bootstrap.provision()
    expect(JSON.parse(JSON.stringify(config)).device.deviceSecret).toBe(DEVICE.deviceSecret)
    expect(given.map((entry) => entry.config.device.deviceSecret)).toEqual([DEVICE.deviceSecret])
    const pa = new PointAccess({ tls: { ca: env.tls.ca } })
    expect(await pa.request(env.server.url, {})).toBe('00000')
    expect(JSON.parse(JSON.stringify(pa.deviceConfig)).device.deviceSecret).toBe(DEVICE.deviceSecret)
  })
})

describe('refusals echoing a secret', () => {
  const STALE = 'stale-secret-ABCDEFGHIJKLMNOPQRSTUV'

  test('re-provisioning after an auth rejection: the refused secrets are not echoed by the error', async () => {
    suite.secret(STALE)
    const cache = new MemoryCredentialStore()
    const { url } = env.options()
    const data = { imei: 'echo' }
    await cache.set(credentialKey(url, data), {
      savedAt: 0,
      config: {
        device: { ...DEVICE, deviceSecret: STALE, productSecret: null },
        connect: { qos: 1, host: env.broker.host, cleanSession: 1 },
      },
    })
    const echoed = `E:${STALE.slice(6, 26)}`
    env.server.handle((_req, res) => json(res, 200, { code: echoed }))
    const { boot: bootstrap, events } = boot(env.options({ data, cache }))
    const error = (await bootstrap.connect().catch((e: unknown) => e)) as ProvisioningError
    expect(error).toBeInstanceOf(ProvisioningError)
    expect(error.code).toBe('ERR_PROVISION_REFUSED')
    expect(error.message).toBe(`provisioning server refused the device: "E:${REDACTED}", at ${env.server.url}`)
    expect(error.resultCode).toBe(`E:${REDACTED}`)
    expect(error.cause).toBeUndefined()
    expectNoRunOf([error.message, rawJson(error), rawJson(events), inspect(error)].join('\n'), STALE)
  })

  test('PointAccess: a refusal echoing the configuration it holds; the code itself passes through', async () => {
    const pa = new PointAccess({ tls: { ca: env.tls.ca } })
    expect(await pa.request(env.server.url, {})).toBe('00000')
    const code = `x${DEVICE.deviceSecret.slice(3, 15)}`
    env.server.handle((_req, res) => json(res, 200, { code }))
    expect(await pa.request(env.server.url, {})).toBe(code)
    expect(pa.lastError?.message).toBe(`provisioning server refused the device: "x${REDACTED}", at ${env.server.url}`)
    expect(pa.lastError?.resultCode).toBe(code) // the contract: the code PointAccess returned
  })

  test('registration: an echo of any part of the product secret is redacted in serverMessage and message', async () => {
    const productSecret = 'PS-echo-test-0123456789abcdef'
    suite.secret(productSecret)
    const registration = new AliyunRegistration({ url: `${env.server.url}/register`, tls: { ca: env.tls.ca } })
    const message = `sign for ${productSecret.slice(5, 19)} failed; also ${productSecret.slice(-9)}`
    env.server.handle((_req, res) => json(res, 200, { code: 6666, message }))
    const error = await registration
      .register({ productKey: 'pk', deviceName: 'dn', productSecret, host: 'h' }, { signal: undefined, now: () => 0 })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RegistrationError)
    expect(error).toMatchObject({
      code: 'ERR_REGISTER_REFUSED',
      serverCode: 6666,
      serverMessage: `sign for ${REDACTED} failed; also ${REDACTED}`,
    })
    expectNoRunOf([(error as Error).message, rawJson(error), inspect(error)].join('\n'), productSecret)
  })
})
