/**
 * The files a device app is given: an ESM and a CJS script that provision for real and check that the client is an
 * instance of the app's own mqtt.js `MqttClient`, and TypeScript consumers of the published declarations.
 */
import { FIXTURE_IMEI, FIXTURE_TOPIC } from './fixture.js'

/** The body both scripts share: the fixture's URL comes in PROVISION_URL. */
const roundTrip = `
const url = process.env.PROVISION_URL
const client = await connectProvisioned({
  url,
  data: { imei: ${JSON.stringify(FIXTURE_IMEI)} },
  allowInsecureHttp: true,
  retry: false,
  reconnect: false,
})
const own = client instanceof MqttClient
const connected = client.connected
await client.publishAsync(${JSON.stringify(FIXTURE_TOPIC)}, 'hello', { qos: 1 })
await client.endAsync()
const unknown = await new PointAccess({ allowInsecureHttp: true, timeoutMs: 5000 }).request(url, { imei: '1' })
if (!own) throw new Error("the client is not an instance of the app's MqttClient")
if (!connected) throw new Error('the client is not connected')
if (unknown === ResultCode.SUCCESS) throw new Error('an unknown device was provisioned')
if (contract.ResultCode.SUCCESS !== '00000' || typeof contract.parseDeviceConfig !== 'function') {
  throw new Error('mqtt-bootstrap/contract is missing exports')
}
if (typeof schema.$schema !== 'string') throw new Error('mqtt-bootstrap/schema.json is not the schema')
const owned = { clientId: 'x', username: 'u' }
const refused = await connectProvisioned({ url, data: {}, allowInsecureHttp: true, mqtt: owned }).then(
  () => undefined,
  (error) => error,
)
if (!(refused instanceof InvalidOptionError) || !/clientId.*username/.test(refused.message)) {
  throw new Error('mqtt.clientId and mqtt.username were not refused in one InvalidOptionError: ' + refused)
}
let tsyringe = 'absent'
try {
  requireFromApp.resolve('tsyringe')
  tsyringe = 'present'
} catch {}
console.log('round trip instanceof=' + own + ' connected=' + connected + ' unknown=' + unknown + ' tsyringe=' + tsyringe)
`

export const ROUND_TRIP_OUTPUT = /round trip instanceof=true connected=true unknown=\d{5} tsyringe=absent/

export const esmScript = `import { createRequire } from 'node:module'
import { MqttClient } from 'mqtt'
import { connectProvisioned, InvalidOptionError, PointAccess, ResultCode } from 'mqtt-bootstrap'
import * as contract from 'mqtt-bootstrap/contract'
import schema from 'mqtt-bootstrap/schema.json' with { type: 'json' }
const requireFromApp = createRequire(import.meta.url)
${roundTrip}`

export const cjsScript = `const { MqttClient } = require('mqtt')
const { connectProvisioned, InvalidOptionError, PointAccess, ResultCode } = require('mqtt-bootstrap')
const contract = require('mqtt-bootstrap/contract')
const schema = require('mqtt-bootstrap/schema.json')
const requireFromApp = require
;(async () => {
${roundTrip}
})().catch((error) => {
  console.error(error)
  process.exitCode = 1
})`

/**
 * What the type checks prove refused: provisioning owns the client id, so the `mqtt` option (MqttOptions) must not
 * take one. A switch so that the other refusals still run should that type ever be loosened on purpose.
 */
export const CLIENT_ID_REFUSED = true

const clientIdRefusal = CLIENT_ID_REFUSED
  ? `// @ts-expect-error: provisioning owns the client id, the mqtt option refuses one
connectProvisioned({ url: 'https://127.0.0.1/x', data: {}, mqtt: { clientId: 'x' } })
`
  : ''

/** ESM TypeScript (checked with node16 and with bundler). */
export const consumerTs = `import { MqttClient } from 'mqtt'
import {
  type BootstrapOptions,
  connectProvisioned,
  createBootstrap,
  type DeviceConfig,
  type MqttOptions,
  ResultCode,
} from 'mqtt-bootstrap'
import { parseDeviceConfig, ResultCode as ContractCode } from 'mqtt-bootstrap/contract'

const mqtt: MqttOptions = { keepalive: 30, connectTimeout: 5000, reconnectPeriod: 0 }
const options: BootstrapOptions = { url: 'https://127.0.0.1:8443/bootstrap', data: { imei: '860000000000001' }, mqtt }
export async function boot(): Promise<MqttClient> {
  const c: MqttClient = await connectProvisioned(options)
  c.on('connect', () => undefined)
  return c
}
export const boot2 = createBootstrap(options)
export const qos: DeviceConfig['connect']['qos'] = 1
export const ok: '00000' = ResultCode.SUCCESS
export const same: typeof ResultCode.SUCCESS = ContractCode.SUCCESS
export const parse: (value: unknown) => unknown = parseDeviceConfig
export const isClient = (value: unknown): value is MqttClient => value instanceof MqttClient
${clientIdRefusal}// @ts-expect-error: the types are real, so an unknown option is refused
createBootstrap({ url: 'https://127.0.0.1/x', data: {}, noSuchOption: true })
// @ts-expect-error: the resolved client is mqtt.js's, not a string
export const wrong: Promise<string> = connectProvisioned(options)
`

/** The same consumer as CommonJS TypeScript (node16 only: a .cts file). */
export const consumerCts = `import mqtt = require('mqtt')
import mqttBootstrap = require('mqtt-bootstrap')
import contract = require('mqtt-bootstrap/contract')

export async function boot(): Promise<mqtt.MqttClient> {
  const c: mqtt.MqttClient = await mqttBootstrap.connectProvisioned({ url: 'https://127.0.0.1/x', data: {} })
  return c
}
export const code: '00000' = contract.ResultCode.SUCCESS
// @ts-expect-error: qos 7 is not a QoS
export const qos: mqttBootstrap.DeviceConfig['connect']['qos'] = 7
`

/** The schema entry through TypeScript (resolveJsonModule), where the module kind allows a JSON import. */
export const schemaTs = `import schema from 'mqtt-bootstrap/schema.json'
export const id: string = schema.$schema
`

export function tsconfig(module: string, moduleResolution: string, include: readonly string[]): string {
  const compilerOptions = {
    module,
    moduleResolution,
    target: 'ES2022',
    lib: ['ES2023'],
    types: ['node'],
    strict: true,
    resolveJsonModule: true,
    noEmit: true,
  }
  return JSON.stringify({ compilerOptions, include }, null, 2)
}
