import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { describe, expect, test } from 'vitest'
import {
  type CredentialStore,
  connectProvisioned,
  createBootstrap,
  FileCredentialStore,
  MemoryCredentialStore,
} from '../packages/mqtt-bootstrap/src/index.js'
import { startBroker } from './helpers/broker.js'
import { boot, eventTrail, FIRST_BOOT_TRAIL, payloads, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'
import { until } from './helpers/until.js'

const env = useTestEnv()

const ALIYUN_CLIENT_ID = /^a1TestPK001\.device-001\|securemode=(2|3),signmethod=hmacsha256,timestamp=\d+\|$/

describe('connectProvisioned', () => {
  test('provisions, signs with aliyun and connects: a real mqtt.js client', async () => {
    const { boot: bootstrap, events } = boot(env.options())
    const client = env.track(await bootstrap.connect())
    expect(client).toBeInstanceOf(mqtt.MqttClient)
    expect(client.connected).toBe(true)
    expect(env.server.requests).toHaveLength(1)
    // The credentials are cached once the broker has accepted them.
    expect(eventTrail(events)).toEqual(FIRST_BOOT_TRAIL)
    const [connect] = env.broker.connects
    expect(connect?.clientId).toMatch(ALIYUN_CLIENT_ID)
    expect(connect?.clientId).toContain('securemode=3') // plain TCP
    expect(connect?.username).toBe(`${DEVICE.deviceName}&${DEVICE.productKey}`)
    expect(env.broker.accepted).toBe(1)
  })

  test('is a drop-in: the function form resolves to a connected client', async () => {
    const client = env.track(await connectProvisioned(env.options()))
    expect(client.connected).toBe(true)
  })

  test('cleanSession 0 -> clean false on the broker; 1 -> clean true', async () => {
    env.answerValid({ cleanSession: 0 })
    env.track(await connectProvisioned(env.options()))
    env.answerValid({ cleanSession: true })
    env.track(await connectProvisioned(env.options({ data: { imei: 'other' } })))
    expect(env.broker.connects.map((c) => c.clean)).toEqual([false, true])
  })

  test('publish and subscribe default to the provisioned qos; an explicit qos wins', async () => {
    env.answerValid({ qos: 1 })
    const client = env.track(await connectProvisioned(env.options()))
    await client.subscribeAsync('cmd/a')
    await client.subscribeAsync('cmd/b', { qos: 0 })
    await client.publishAsync('telemetry/a', 'x')
    await client.publishAsync('telemetry/b', 'y', { qos: 0 })
    await new Promise<void>((resolve) => client.publish('telemetry/c', 'z', () => resolve()))
    await new Promise<void>((resolve) => client.publish('telemetry/d', 'w', { retain: false }, () => resolve()))
    expect(env.broker.subscribed).toEqual([
      { topic: 'cmd/a', qos: 1 },
      { topic: 'cmd/b', qos: 0 },
    ])
    expect(env.broker.published.map(({ topic, qos }) => [topic, qos])).toEqual([
      ['telemetry/a', 1],
      ['telemetry/b', 0],
      ['telemetry/c', 1],
      ['telemetry/d', 1],
    ])
  })

  test('qos 0 provisioned: publishes at qos 0', async () => {
    env.answerValid({ qos: 0 })
    const client = env.track(await connectProvisioned(env.options()))
    await client.publishAsync('t', 'x')
    await until(() => env.broker.published.length === 1, 2000, 'the broker to see the publish')
    expect(env.broker.published[0]?.qos).toBe(0)
  })

  test('a host with a scheme is used as given', async () => {
    env.answerValid({ host: `mqtt://${env.broker.host}` })
    const { boot: bootstrap, events } = boot(env.options({ broker: undefined }))
    env.track(await bootstrap.connect())
    const connected = events.find(([name]) => name === 'connected')
    expect(connected?.[1]).toMatchObject({ url: `mqtt://${env.broker.host}` })
  })

  test('a bare host gets mqtts and broker.port; aliyun signs securemode=2 over TLS', async () => {
    const tlsBroker = await startBroker({
      tls: env.tls,
      secrets: { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret },
    })
    try {
      env.answerValid({ host: '127.0.0.1' })
      const { boot: bootstrap, events } = boot(
        env.options({ broker: { port: tlsBroker.port }, mqtt: { ca: env.tls.ca, keepalive: 30 } }),
      )
      env.track(await bootstrap.connect())
      expect(events.find(([name]) => name === 'connected')?.[1]).toMatchObject({
        url: `mqtts://127.0.0.1:${tlsBroker.port}`,
      })
      expect(tlsBroker.connects[0]?.clientId).toContain('securemode=2')
      expect(tlsBroker.connects[0]?.keepalive).toBe(30)
    } finally {
      await env.cleanup()
      await tlsBroker.close()
    }
  })

  test('plain auth: clientId pk.dn, username deviceName, password deviceSecret', async () => {
    const plainBroker = await startBroker({
      auth: 'plain',
      secrets: { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret },
    })
    try {
      env.answerValid({ host: plainBroker.host })
      env.track(await connectProvisioned(env.options({ auth: 'plain' })))
      expect(plainBroker.connects[0]).toMatchObject({
        clientId: `${DEVICE.productKey}.${DEVICE.deviceName}`,
        username: DEVICE.deviceName,
        password: DEVICE.deviceSecret,
      })
    } finally {
      await env.cleanup()
      await plainBroker.close()
    }
  })

  test('a custom strategy (function or object) signs the CONNECT', async () => {
    const plainBroker = await startBroker({
      auth: 'plain',
      secrets: { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret },
    })
    try {
      env.answerValid({ host: plainBroker.host })
      const seen: string[] = []
      const sign = (
        device: { productKey: string; deviceName: string; deviceSecret: string },
        ctx: { brokerUrl: string },
      ) => {
        seen.push(ctx.brokerUrl)
        return {
          clientId: `${device.productKey}.${device.deviceName}`,
          username: device.deviceName,
          password: device.deviceSecret,
        }
      }
      env.track(await connectProvisioned(env.options({ auth: sign })))
      env.track(await connectProvisioned(env.options({ auth: { name: 'mine', sign } })))
      expect(seen).toEqual([`mqtt://${plainBroker.host}`, `mqtt://${plainBroker.host}`])
      expect(plainBroker.accepted).toBe(2)
    } finally {
      await env.cleanup()
      await plainBroker.close()
    }
  })

  test('a strategy that returns no strings is a TypeError naming auth, never retried', async () => {
    const bad = () => ({ clientId: 'x' }) as never
    const clock = new FakeClock()
    await expect(boot(env.options({ auth: bad }), { clock }).boot.connect()).rejects.toMatchObject({
      name: 'InvalidOptionError',
      option: 'auth',
    })
    expect(clock.sleeps).toEqual([])
    expect(env.broker.connects).toHaveLength(0)
  })

  test('provision() and connectOptions() failures are fatal error events too', async () => {
    env.server.handle((_req, res) => res.writeHead(200).end('not json'))
    const { boot: bootstrap, events } = boot(env.options())
    await expect(bootstrap.provision()).rejects.toMatchObject({ code: 'ERR_PROVISION_INVALID_RESPONSE' })
    await expect(bootstrap.connectOptions()).rejects.toMatchObject({ code: 'ERR_PROVISION_INVALID_RESPONSE' })
    expect(payloads(events, 'error').map((e) => [e.fatal, (e.error as { code?: string }).code])).toEqual([
      [true, 'ERR_PROVISION_INVALID_RESPONSE'],
      [true, 'ERR_PROVISION_INVALID_RESPONSE'],
    ])
  })
})

describe('cache first', () => {
  test('a second boot with the same store connects with zero provisioning requests', async () => {
    const cache = new MemoryCredentialStore()
    env.track(await connectProvisioned(env.options({ cache })))
    expect(env.server.requests).toHaveLength(1)
    const { boot: bootstrap, events } = boot(env.options({ cache }))
    env.track(await bootstrap.connect())
    expect(env.server.requests).toHaveLength(1)
    expect(eventTrail(events)).toEqual(['cache:hit', 'provisioned:cache', 'connecting', 'connected'])
  })

  test('offline boot: the file cache connects while the provisioning server is down', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-'))
    const { startHttpsServer, json, configAnswer } = await import('./helpers/https-server.js')
    const own = await startHttpsServer(env.tls, (_req, res) => json(res, 200, configAnswer({ host: env.broker.host })))
    try {
      const path = join(dir, 'state', 'credentials.json')
      env.track(await connectProvisioned(env.options({ url: own.url, cache: new FileCredentialStore(path) })))
      await own.close()
      const { boot: bootstrap, events } = boot(
        env.options({ url: own.url, cache: new FileCredentialStore(path), retry: false }),
      )
      const client = env.track(await bootstrap.connect())
      expect(client.connected).toBe(true)
      expect(own.requests).toHaveLength(1)
      expect(events.filter(([name]) => name === 'provisioning')).toHaveLength(0)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('other data never reuses the cached credentials', async () => {
    const cache = new MemoryCredentialStore()
    env.track(await connectProvisioned(env.options({ cache, data: { imei: 'A' } })))
    env.track(await connectProvisioned(env.options({ cache, data: { imei: 'B' } })))
    env.track(await connectProvisioned(env.options({ cache, data: { imei: 'A' } })))
    expect(env.server.requests.map((r) => JSON.parse(r.body).imei)).toEqual(['A', 'B'])
    expect(cache.size).toBe(2)
  })

  test('the default store lives as long as its bootstrap', async () => {
    const bootstrap = createBootstrap(env.options())
    env.track(await bootstrap.connect())
    env.track(await bootstrap.connect())
    expect(env.server.requests).toHaveLength(1)
  })

  test('an invalid entry from any store is a reported miss, deleted, and the device provisions', async () => {
    const deleted: string[] = []
    const broken: CredentialStore = {
      get: async () => ({ savedAt: 1, config: { device: { productKey: 'pk' } } as never }),
      set: async () => {},
      delete: async (key) => {
        deleted.push(key)
      },
    }
    const { boot: bootstrap, events } = boot(env.options({ cache: broken }))
    env.track(await bootstrap.connect())
    expect(payloads(events, 'cache')[0]).toMatchObject({ action: 'miss', reason: 'corrupt' })
    expect(payloads(events, 'cache')[0]?.error?.code).toBe('ERR_STORE_CORRUPT')
    expect(deleted).toHaveLength(1)
    expect(env.server.requests).toHaveLength(1)
  })

  test('concurrent calls share one provisioning request', async () => {
    const { boot: bootstrap } = boot(env.options())
    const configs = await Promise.all([bootstrap.provision(), bootstrap.provision(), bootstrap.connectOptions()])
    expect(env.server.requests).toHaveLength(1)
    expect(configs[0]).toEqual(configs[1])
  })
})

describe('connectOptions()', () => {
  test('gives { url, ...IClientOptions } that mqtt.connect accepts', async () => {
    env.answerValid({ cleanSession: 0 })
    const bootstrap = createBootstrap(env.options({ mqtt: { keepalive: 42 } }))
    const opts = await bootstrap.connectOptions()
    expect(opts).toMatchObject({
      url: `mqtt://${env.broker.host}`,
      username: `${DEVICE.deviceName}&${DEVICE.productKey}`,
      clean: false,
      keepalive: 42,
      // explicit: an app's mqtt.connect() must not take verification from NODE_TLS_REJECT_UNAUTHORIZED
      rejectUnauthorized: true,
    })
    expect(opts.clientId).toMatch(ALIYUN_CLIENT_ID)
    const client = env.track(await mqtt.connectAsync(opts.url, opts), 'test')
    expect(client.connected).toBe(true)
    expect(env.broker.accepted).toBeGreaterThanOrEqual(1)
  })

  test('an mqtt.rejectUnauthorized left undefined does not undo the explicit verification', async () => {
    env.answerValid()
    const opts = await createBootstrap(env.options({ mqtt: { rejectUnauthorized: undefined } })).connectOptions()
    expect(opts.rejectUnauthorized).toBe(true)
  })
})
