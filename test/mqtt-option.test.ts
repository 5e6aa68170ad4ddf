// The `mqtt` option at run time (JavaScript callers, `as any`): what provisioning owns is refused, every offending key
// in one InvalidOptionError (issue 12: one per run made a migration a loop of edits). The types: test/types.test.ts.
import { describe, expect, test } from 'vitest'
import {
  connectProvisioned,
  createBootstrap,
  InvalidOptionError,
  PROVISIONED_MQTT_KEYS,
} from '../packages/mqtt-bootstrap/src/index.js'
import { resolveOptions } from '../packages/mqtt-bootstrap/src/options.js'
import { useTestEnv } from './helpers/env.js'

const base = { url: 'https://provision.example/bootstrap', data: { imei: '1' } }

function refusal(mqtt: Record<string, unknown>): InvalidOptionError {
  try {
    resolveOptions({ ...base, mqtt } as never)
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidOptionError)
    return error as InvalidOptionError
  }
  throw new Error('expected the mqtt option to be refused')
}

describe('the mqtt option, at run time', () => {
  test('every key provisioning owns is named in one error, in the order given', () => {
    const error = refusal({ keepalive: 30, clientId: 'mine', username: 'me', clean: false, password: 'pw-1234567' })
    expect(error).toMatchObject({
      code: 'ERR_INVALID_OPTION',
      option: 'mqtt.clientId',
      options: ['mqtt.clientId', 'mqtt.username', 'mqtt.clean', 'mqtt.password'],
    })
    expect(error.message).toBe(
      '`mqtt.clientId`, `mqtt.username`, `mqtt.clean` and `mqtt.password` are set by provisioning: remove them',
    )
    expect(error.message).not.toContain('pw-1234567') // a value is never quoted
  })

  test('a getter cannot show the check one value and mqtt.js another: the checked copy is what is used', () => {
    let reads = 0
    const mqtt = {
      keepalive: 30,
      get host() {
        reads++
        return reads === 1 ? undefined : 'evil.example'
      },
    }
    const resolved = resolveOptions({ ...base, mqtt } as never)
    expect(reads).toBe(1)
    expect(resolved.mqtt).toStrictEqual({ keepalive: 30 }) // an owned key set to undefined is dropped too
  })

  test('one key: the same error, in the singular', () => {
    const error = refusal({ clientId: 'mine' })
    expect(error).toMatchObject({ option: 'mqtt.clientId', options: ['mqtt.clientId'] })
    expect(error.message).toBe('`mqtt.clientId` is set by provisioning: remove it')
  })

  test('turning verification off is refused in the same error', () => {
    const error = refusal({ host: 'elsewhere', rejectUnauthorized: false, wsOptions: { rejectUnauthorized: false } })
    expect(error.options).toEqual(['mqtt.host', 'mqtt.rejectUnauthorized', 'mqtt.wsOptions.rejectUnauthorized'])
    expect(error.message).toBe(
      '`mqtt.host` is set by provisioning: remove it; `mqtt.rejectUnauthorized` and ' +
        '`mqtt.wsOptions.rejectUnauthorized` must be absent or true: certificate verification stays on',
    )
  })

  test.each(PROVISIONED_MQTT_KEYS)('`mqtt.%s` alone is refused', (key) => {
    const value = key === 'servers' ? [{ host: 'x', port: 1 }] : key === 'port' ? 1883 : 'x'
    expect(refusal({ [key]: value })).toMatchObject({ option: `mqtt.${key}`, options: [`mqtt.${key}`] })
  })

  test('the broker-side options pass through: ca, cert, key, servername, keepalive, rejectUnauthorized: true', () => {
    const mqtt = {
      ca: 'CA PEM',
      cert: 'CERT PEM',
      key: 'KEY PEM',
      servername: 'broker.example',
      keepalive: 30,
      rejectUnauthorized: true,
      will: { topic: 'status', payload: 'offline', qos: 1 as const, retain: true },
      // An owned key left undefined is no contradiction (a spread of defaults).
      clientId: undefined,
    }
    expect(resolveOptions({ ...base, mqtt } as never).mqtt).toEqual(mqtt)
  })

  test('every key the list names is an mqtt.js option, and the list is frozen', () => {
    expect(Object.isFrozen(PROVISIONED_MQTT_KEYS)).toBe(true)
    expect(PROVISIONED_MQTT_KEYS).toEqual(expect.arrayContaining(['clientId', 'username', 'password', 'clean']))
  })
})

describe('through connectProvisioned', () => {
  const env = useTestEnv()

  test('rejects before any request, naming every owned key', async () => {
    const mqtt = { clientId: 'app-client', username: 'app', clean: true }
    const error = await connectProvisioned(env.options({ mqtt } as never)).catch((e: unknown) => e)
    expect(error).toMatchObject({ options: ['mqtt.clientId', 'mqtt.username', 'mqtt.clean'] })
    expect(env.server.requests).toHaveLength(0)
  })

  test('a broker-side option reaches the client', async () => {
    const bootstrap = createBootstrap(env.options({ mqtt: { keepalive: 17 } }))
    const events: unknown[] = []
    bootstrap.on('connected', (e) => events.push(e))
    const client = env.track(await bootstrap.connect())
    expect(client.options.keepalive).toBe(17)
    expect(client.options.clientId).toMatch(/\|securemode=3,signmethod=hmacsha256,timestamp=\d+\|$/)
    expect(events).toHaveLength(1)
  })
})
