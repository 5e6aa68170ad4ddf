import 'reflect-metadata' // before tsyringe, which this file imports first
import { setTimeout as sleep } from 'node:timers/promises'
import { container as rootContainer } from 'tsyringe'
import { expect, test } from 'vitest'
import {
  BrokerError,
  credentialKey,
  MemoryCredentialStore,
  type MqttConnector,
  MqttJsConnector,
  TOKENS,
} from '../packages/mqtt-bootstrap/src/index.js'
import { boot, eventTrail, payloads, REPROVISIONED_TRAIL, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'

const env = useTestEnv()

const STALE = { ...DEVICE, deviceSecret: 'revoked-secret' }

/** A store that already holds (revoked) credentials for this environment's url and data. */
async function staleCache(): Promise<MemoryCredentialStore> {
  const cache = new MemoryCredentialStore()
  const { url, data } = env.options()
  await cache.set(credentialKey(url, data), {
    savedAt: 0,
    config: {
      device: { ...STALE, productSecret: null },
      connect: { qos: 1, host: env.broker.host, cleanSession: 1 },
    },
  })
  return cache
}

test('cached credentials the broker rejects are invalidated, provisioned afresh once, and connect', async () => {
  const cache = await staleCache()
  const { boot: bootstrap, events } = boot(env.options({ cache }))
  const client = env.track(await bootstrap.connect())
  expect(client.connected).toBe(true)
  expect(env.server.requests).toHaveLength(1)
  expect(env.broker.connects).toHaveLength(2)
  expect(eventTrail(events)).toEqual(REPROVISIONED_TRAIL)
  expect(events.find(([name]) => name === 'auth-rejected')?.[1]).toEqual({
    returnCode: 4,
    source: 'cache',
    reprovision: true,
  })
  const { url, data } = env.options()
  expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(DEVICE.deviceSecret)
})

test('a second rejection, with fresh credentials, is a typed error and no loop', async () => {
  env.answerValid({}, STALE)
  const cache = await staleCache()
  const { boot: bootstrap, events } = boot(env.options({ cache }))
  const error = await bootstrap.connect().catch((e: unknown) => e)
  expect(error).toBeInstanceOf(BrokerError)
  expect(error).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', returnCode: 4, transient: false })
  await sleep(100) // nothing reconnects behind our back
  expect(env.broker.connects).toHaveLength(2)
  expect(env.server.requests).toHaveLength(1)
  expect(events.filter(([name]) => name === 'auth-rejected').map(([, e]) => e)).toEqual([
    { returnCode: 4, source: 'cache', reprovision: true },
    { returnCode: 4, source: 'server', reprovision: false },
  ])
  // Fresh credentials the broker refused are never cached; the entry is left as it was for the next boot.
  const { url, data } = env.options()
  expect((await cache.get(credentialKey(url, data)))?.savedAt).toBe(0)
})

test('a re-provisioning that fails keeps the cached credentials (nothing is deleted before replacement)', async () => {
  env.server.handle((_req, res) => res.writeHead(503).end())
  const cache = await staleCache()
  const { boot: bootstrap, events } = boot(env.options({ cache, retry: { retries: 1, minTimeout: 1 } }))
  await expect(bootstrap.connect()).rejects.toMatchObject({ code: 'ERR_PROVISION_HTTP_STATUS', attempts: 2 })
  const { url, data } = env.options()
  expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(STALE.deviceSecret)
  expect(payloads(events, 'cache').map((e) => e.action)).toEqual(['hit', 'invalidate'])
})

test('fresh credentials rejected at first boot: one connect, no re-provisioning', async () => {
  env.answerValid({}, STALE)
  const cache = new MemoryCredentialStore()
  const { boot: bootstrap } = boot(env.options({ cache }))
  await expect(bootstrap.connect()).rejects.toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED' })
  expect(env.broker.connects).toHaveLength(1)
  expect(env.server.requests).toHaveLength(1)
})

test('concurrent connects on rejected cached credentials share one fresh provisioning', async () => {
  const cache = await staleCache()
  const { boot: bootstrap, events } = boot(env.options({ cache }))
  const clients = await Promise.all([bootstrap.connect(), bootstrap.connect(), bootstrap.connect()])
  for (const client of clients) env.track(client)
  // All three resolved (the broker then keeps one session per clientId: that is MQTT, not us).
  expect(clients).toHaveLength(3)
  expect(env.server.requests).toHaveLength(1)
  expect(payloads(events, 'auth-rejected')).toHaveLength(3)
  const { url, data } = env.options()
  expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(DEVICE.deviceSecret)
})

test('a rejection that arrives after another call re-provisioned uses the new credentials, not a second request', async () => {
  // The second connect attempt (call B, stale credentials) is held until call A has re-provisioned and connected.
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  let attempts = 0
  const inner = new MqttJsConnector()
  const connector: MqttConnector = {
    async connect(url, options, signal) {
      if (attempts++ === 1) await gate
      return inner.connect(url, options, signal)
    },
  }
  const container = rootContainer.createChildContainer()
  container.register(TOKENS.MqttConnector, { useValue: connector })
  const cache = await staleCache()
  const { boot: bootstrap, events } = boot(env.options({ cache, container }))
  const a = bootstrap.connect().then((client) => {
    release()
    return client
  })
  const b = bootstrap.connect()
  for (const client of await Promise.all([a, b])) env.track(client)
  expect(env.server.requests).toHaveLength(1)
  expect(payloads(events, 'cache').filter((e) => e.action === 'write')).toHaveLength(1)
  const { url, data } = env.options()
  expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(DEVICE.deviceSecret)
})

test('invalidate() forgets the cache: the next connect provisions', async () => {
  const cache = new MemoryCredentialStore()
  const { boot: bootstrap, events } = boot(env.options({ cache }))
  env.track(await bootstrap.connect())
  await bootstrap.invalidate()
  env.track(await bootstrap.connect())
  expect(env.server.requests).toHaveLength(2)
  expect(events.find(([name, e]) => name === 'cache' && e.action === 'invalidate')?.[1]).toMatchObject({
    reason: 'requested',
  })
})
