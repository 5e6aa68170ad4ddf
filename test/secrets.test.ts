import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { afterAll, beforeAll, expect, onTestFinished, test } from 'vitest'
import {
  credentialKey,
  FileCredentialStore,
  type Logger,
  MemoryCredentialStore,
  PointAccess,
} from '../packages/mqtt-bootstrap/src/index.js'
import { startBroker } from './helpers/broker.js'
import { boot, type RecordedEvent, type TestEnv, useTestEnv } from './helpers/env.js'
import { configAnswer, DEVICE, json } from './helpers/https-server.js'

const env = useTestEnv()
let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-secrets-'))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const PRODUCT_SECRET = 'PS-product-secret-ZZZZZZZZZZ'
const STALE_SECRET = 'stale-device-secret-YYYYYYYY'
const API_KEY = 'api-key-QQQQQQQQQQQQ'

/** Everything a scenario exposed: log lines, event payloads, errors, and inspected library objects. */
const exposed: string[] = []
const deep = (value: unknown) => inspect(value, { depth: Number.POSITIVE_INFINITY, showHidden: false, getters: true })

function recordingLogger(): Logger {
  const line = (level: string) => (fields: object, message?: string) =>
    exposed.push(`${level} ${message} ${deep(fields)}`)
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') }
}

function expose(events: RecordedEvent[], ...values: unknown[]): void {
  for (const [name, payload] of events) exposed.push(`${name} ${deep(payload)} ${JSON.stringify(payload, jsonSafe)}`)
  for (const value of values) {
    exposed.push(deep(value))
    for (let e = value; e instanceof Error; e = e.cause) exposed.push(`${e.message}\n${e.stack}`)
  }
}

const jsonSafe = (_key: string, value: unknown) =>
  value instanceof Error ? { message: value.message, stack: value.stack, cause: value.cause } : value

/** Run a scenario with the recording logger; whatever it throws is recorded too. */
async function scenario(overrides: Parameters<TestEnv['options']>[0] = {}) {
  const { boot: bootstrap, events } = boot(
    env.options({ logger: recordingLogger(), headers: { 'x-api-key': API_KEY }, retry: { retries: 1 }, ...overrides }),
  )
  let outcome: unknown
  try {
    const client = env.track(await bootstrap.connect())
    outcome = client
    expose(events, bootstrap, client, client.options, await bootstrap.connectOptions(), await bootstrap.provision())
  } catch (error) {
    outcome = error
    expose(events, bootstrap, error)
  }
  return outcome
}

test('no deviceSecret, productSecret, derived password or header token appears anywhere', async () => {
  const withProductSecret = { ...DEVICE, productSecret: PRODUCT_SECRET }
  const cache = new MemoryCredentialStore()
  const filePath = join(dir, 'credentials.json')

  // 1. success, with a productSecret in the answer, into a memory cache and a file cache
  env.answerValid({}, withProductSecret)
  await scenario({ cache })
  await scenario({ cache: new FileCredentialStore(filePath) })
  expose([], cache, new FileCredentialStore(filePath))

  // 2. a transient failure, then success
  let first = true
  env.server.handle((_req, res) => {
    if (first) {
      first = false
      res.writeHead(503).end()
    } else json(res, 200, configAnswer({ host: env.broker.host }, withProductSecret))
  })
  await scenario({ data: { imei: 'retry' } })

  // 3. a truncated answer that contains the secret (V8's JSON errors quote the text they choke on)
  env.server.handle((_req, res) =>
    res.writeHead(200).end(JSON.stringify(configAnswer({ host: 'h' }, withProductSecret)).slice(0, -20)),
  )
  await scenario({ data: { imei: 'truncated' } })
  // ... and a Python dict repr instead of JSON (V8: `Unexpected token ''', "{'code': ..." is not valid JSON`)
  const pythonRepr = JSON.stringify(configAnswer({ host: 'h' }, withProductSecret)).replaceAll('"', "'")
  env.server.handle((_req, res) => res.writeHead(200).end(pythonRepr))
  await scenario({ data: { imei: 'python' } })
  // ... and plain text that is the secret itself (V8 quotes the first 10 characters of a body it cannot parse)
  env.server.handle((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(DEVICE.deviceSecret))
  await scenario({ data: { imei: 'plain-text' } })

  // 4. an invalid secret field (valibot's messages quote the value)
  env.server.handle((_req, res) =>
    json(res, 200, configAnswer({ host: 'h' }, { ...DEVICE, deviceSecret: `${DEVICE.deviceSecret}\u0001` })),
  )
  await scenario({ data: { imei: 'invalid' } })

  // 5. cached credentials rejected by the broker, then fresh ones also rejected
  env.answerValid({}, { ...DEVICE, deviceSecret: STALE_SECRET })
  const stale = new MemoryCredentialStore()
  const { url } = env.options()
  await stale.set(credentialKey(url, { imei: 'stale' }), {
    savedAt: 0,
    config: {
      device: { ...DEVICE, deviceSecret: STALE_SECRET, productSecret: PRODUCT_SECRET },
      connect: { qos: 1, host: env.broker.host, cleanSession: 1 },
    },
  })
  const rejected = await scenario({ data: { imei: 'stale' }, cache: stale })
  expect(rejected).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED' })

  // 6. a corrupt cache file holding a secret
  await writeFile(filePath, `{"format":"mqtt-bootstrap/credentials","version":1,"x":"${DEVICE.deviceSecret}`)
  env.answerValid()
  await scenario({ cache: new FileCredentialStore(filePath) })

  // 7. over TLS with plain auth: the password is the deviceSecret, and Node's TLS socket keeps a copy of the options
  const tlsBroker = await startBroker({
    auth: 'plain',
    tls: env.tls,
    secrets: { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret },
  })
  onTestFinished(() => tlsBroker.close())
  env.answerValid({ host: `mqtts://${tlsBroker.host}` }, withProductSecret)
  const client = await scenario({
    data: { imei: 'tls' },
    auth: 'plain',
    broker: undefined,
    mqtt: { ca: env.tls.ca, cert: env.tls.client.cert, key: env.tls.client.key },
  })
  expect(client).toMatchObject({ connected: true })
  expect(tlsBroker.connects[0]?.password).toBe(DEVICE.deviceSecret)

  // 8. PointAccess itself, with mutual TLS options holding a private key
  env.answerValid({}, withProductSecret)
  const pa = new PointAccess({ tls: { ca: env.tls.ca, cert: env.tls.client.cert, key: env.tls.client.key } })
  expect(await pa.request(env.server.url, {}, { headers: { 'x-api-key': API_KEY } })).toBe('00000')
  expose([], pa, pa.deviceConfig)

  const derived = env.broker.connects.map((c) => c.password).filter((p): p is string => p !== undefined)
  expect(derived.length).toBeGreaterThan(5)
  const secrets = [DEVICE.deviceSecret, PRODUCT_SECRET, STALE_SECRET, API_KEY, ...derived, keyBody(env.tls.client.key)]
  const text = exposed.join('\n')
  expect(text.length).toBeGreaterThan(10_000) // the scenarios did expose a lot
  for (const secret of secrets) {
    expect(text).not.toContain(secret)
    expect(text).not.toContain(secret.slice(0, 10)) // no partial quote either
  }
  expect(text).toContain('[redacted]')
  expect(text).toContain(DEVICE.productKey) // identities are not secret, and are shown
})

/** A line from the middle of a PEM key (the part that must not leak). */
function keyBody(pem: string): string {
  return pem.split('\n')[1] ?? pem
}
