import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, test } from 'vitest'
import { aliyunAuth, credentialKey, MemoryCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import { RECONNECT_DEFAULTS, reconnectDelay } from '../packages/mqtt-bootstrap/src/reconnect.js'
import { signedAs, startBroker } from './helpers/broker.js'
import { boot, nextEvent, payloads, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'
import { until } from './helpers/until.js'

const env = useTestEnv()
afterEach(() => {
  env.broker.secrets.set(KEY, DEVICE.deviceSecret)
})

const KEY = `${DEVICE.productKey}.${DEVICE.deviceName}`
const ROTATED = { ...DEVICE, deviceSecret: 'rotated-secret-2222222222' }
/** Small, real waits: mqtt.js's reconnect timers are real. random() is 0.5, so every delay is known. */
const reconnect = { minDelay: 20, maxDelay: 200, factor: 2, stableAfter: 150 }

describe('reconnect delay', () => {
  test('full jitter between minDelay and a ceiling that grows by factor, capped by maxDelay', () => {
    const policy = { ...RECONNECT_DEFAULTS, minDelay: 100, maxDelay: 1000, factor: 2 }
    expect([1, 2, 3, 4, 5].map((n) => reconnectDelay(policy, n, () => 0))).toEqual([100, 100, 100, 100, 100])
    expect([1, 2, 3, 4, 5].map((n) => reconnectDelay(policy, n, () => 0.999999))).toEqual([199, 399, 799, 999, 999])
    expect(reconnectDelay(policy, 1, () => 0.5)).toBe(150)
  })
})

describe('after the first connection', () => {
  test('every reconnect is signed afresh (new aliyun timestamp) through client.options', async () => {
    const { boot: bootstrap } = boot(env.options({ reconnect }))
    const client = env.track(await bootstrap.connect())
    await sleep(5)
    env.broker.drop()
    await nextEvent(bootstrap, 'connected')
    expect(client.connected).toBe(true)
    const [first, second] = env.broker.connects
    expect(second?.clientId).not.toBe(first?.clientId)
    expect(second?.password).not.toBe(first?.password)
    expect(env.broker.accepted).toBe(2)
    expect(env.server.requests).toHaveLength(1)
  })

  test('waits grow with full jitter between the bounds, and start over after a stable connection', async () => {
    const clock = new FakeClock() // random() = 0.5; sleeps are mqtt.js's own (real) timers
    const down = await startBroker({ secrets: { [KEY]: DEVICE.deviceSecret } })
    env.answerValid({ host: down.host })
    const { boot: bootstrap, events } = boot(env.options({ reconnect }), { clock })
    const client = env.track(await bootstrap.connect())
    await down.close() // the broker goes away: every reconnect is refused
    await until(() => payloads(events, 'retry').length >= 5, 5000, 'five reconnect waits')
    const waits = payloads(events, 'retry').slice(0, 5)
    expect(waits.map((e) => [e.phase, e.attempt, e.delayMs])).toEqual([
      // Counted from 1, as in every phase (issue 12; was 0, 1, 2, …): the wait before reconnect attempt n says n.
      ['reconnect', 1, 30], // 20 + 0.5 × (min(200, 20·2¹) − 20)
      ['reconnect', 2, 50],
      ['reconnect', 3, 90],
      ['reconnect', 4, 110],
      ['reconnect', 5, 110],
    ])
    expect(
      payloads(events, 'connecting')
        .slice(1, 5)
        .map((e) => e.attempt),
    ).toEqual([1, 2, 3, 4])
    // The broker comes back on the same port: the same client object reconnects.
    const back = await startBroker({ secrets: { [KEY]: DEVICE.deviceSecret }, port: Number(down.host.split(':')[1]) })
    try {
      await nextEvent(bootstrap, 'connected', () => true, 3000)
      expect(client.connected).toBe(true)
      await sleep(reconnect.stableAfter + 50) // stable: the backoff starts over
      const before = payloads(events, 'retry').length
      back.drop()
      await nextEvent(bootstrap, 'connected', () => true, 3000)
      expect(payloads(events, 'retry')[before]).toMatchObject({ attempt: 1, delayMs: 30 })
    } finally {
      await env.cleanup()
      await back.close()
    }
  })

  test('revoked while connected: re-provisions and reconnects the same client; listeners and subscriptions survive', async () => {
    const cache = new MemoryCredentialStore()
    const { boot: bootstrap, events } = boot(env.options({ cache, reconnect }))
    const client = env.track(await bootstrap.connect())
    const received: string[] = []
    client.on('message', (_topic, payload) => received.push(payload.toString()))
    await client.subscribeAsync('cmd/device-001')

    // The cloud rotates the device's secret and the provisioning server now hands out the new one.
    env.broker.secrets.set(KEY, ROTATED.deviceSecret)
    env.answerValid({}, ROTATED)
    env.broker.drop()
    await nextEvent(bootstrap, 'connected', () => true, 5000)

    expect(client.connected).toBe(true)
    expect(payloads(events, 'auth-rejected')).toEqual([{ returnCode: 4, source: 'server', reprovision: true }])
    expect(env.server.requests).toHaveLength(2)
    const { url, data } = env.options()
    expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(ROTATED.deviceSecret)

    // The subscription was renewed on the new session, and the app's listener still gets messages.
    await until(
      () => env.broker.subscribed.filter((s) => s.topic === 'cmd/device-001').length >= 2,
      3000,
      'resubscribe',
    )
    const { default: mqtt } = await import('mqtt')
    const sender = env.track(await mqtt.connectAsync(`mqtt://${env.broker.host}`, signedAs(ROTATED, 'sender')), 'test')
    await sender.publishAsync('cmd/device-001', 'reboot', { qos: 1 })
    await until(() => received.includes('reboot'), 3000, 'the message after re-provisioning')
  })

  test('fresh credentials refused too: a fatal error event, the client is ended, no loop', async () => {
    const cache = new MemoryCredentialStore()
    const { boot: bootstrap, events } = boot(env.options({ cache, reconnect }))
    const client = env.track(await bootstrap.connect())
    env.broker.secrets.set(KEY, 'nobody-knows-this-secret') // every credential is refused from now on
    env.answerValid({}, ROTATED)
    const fatal = nextEvent(bootstrap, 'error', (e) => e.fatal)
    env.broker.drop()
    const { error } = await fatal
    expect(error).toMatchObject({ code: 'ERR_BROKER_AUTH_REJECTED', returnCode: 4 })
    await until(() => client.disconnected, 2000, 'the client to be ended')
    const connects = env.broker.connects.length
    await sleep(300)
    expect(env.broker.connects).toHaveLength(connects) // nothing more
    expect(connects).toBe(3) // boot, the refused reconnect, the refused fresh credentials
    expect(payloads(events, 'auth-rejected').map((e) => e.reprovision)).toEqual([true, false])
    // Credentials that never connected are not cached: the last good ones stay.
    const { url, data } = env.options()
    expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(DEVICE.deviceSecret)
  })

  test('a reconnect refused as "server unavailable" (3) is retried after a jittered wait', async () => {
    const { boot: bootstrap, events } = boot(env.options({ reconnect }))
    const client = env.track(await bootstrap.connect())
    env.broker.refuse.push(3, 3)
    env.broker.drop()
    await nextEvent(bootstrap, 'connected', () => true, 5000)
    expect(client.connected).toBe(true)
    expect(env.broker.connects).toHaveLength(4) // boot, two refusals, the one accepted
    expect(payloads(events, 'retry').map((e) => e.phase)).toEqual(['reconnect', 'reconnect', 'reconnect'])
    expect(env.server.requests).toHaveLength(1) // not a reason to provision again
  })

  test('a reconnect refused for good (2, identifier rejected): a fatal error event, the client is ended', async () => {
    const { boot: bootstrap } = boot(env.options({ reconnect }))
    const client = env.track(await bootstrap.connect())
    env.broker.refuse.push(2)
    const fatal = nextEvent(bootstrap, 'error', (e) => e.fatal)
    env.broker.drop()
    expect((await fatal).error).toMatchObject({ code: 'ERR_BROKER_CONNECT', returnCode: 2, transient: false })
    await until(() => client.disconnected, 2000, 'the client to be ended')
    await sleep(200)
    expect(env.broker.connects).toHaveLength(2)
  })

  test('revoked, and the provisioning server refuses the device: a fatal error event, no loop', async () => {
    const { boot: bootstrap } = boot(env.options({ reconnect }))
    const client = env.track(await bootstrap.connect())
    env.broker.secrets.set(KEY, 'revoked')
    env.server.handle((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"code":"10001"}'))
    const fatal = nextEvent(bootstrap, 'error', (e) => e.fatal)
    env.broker.drop()
    expect((await fatal).error).toMatchObject({ code: 'ERR_PROVISION_REFUSED', resultCode: '10001' })
    await until(() => client.disconnected, 2000, 'the client to be ended')
    await sleep(200)
    expect(env.broker.connects).toHaveLength(2)
    expect(env.server.requests).toHaveLength(2)
  })

  test('newer credentials already in a shared cache: used at once, the same client reconnects, stays connected', async () => {
    const cache = new MemoryCredentialStore()
    const { boot: bootstrap, events } = boot(env.options({ cache, reconnect }))
    const client = env.track(await bootstrap.connect())
    // Another process (sharing the cache) has already been given the rotated secret.
    const { url, data } = env.options()
    await cache.set(credentialKey(url, data), {
      savedAt: 1,
      config: {
        device: { ...ROTATED, productSecret: null },
        connect: { qos: 1, host: env.broker.host, cleanSession: 1 },
      },
    })
    env.broker.secrets.set(KEY, ROTATED.deviceSecret)
    env.broker.drop()
    await nextEvent(bootstrap, 'connected', () => true, 5000)
    await sleep(300) // nothing else happens: no stray timer, no second session
    expect(client.connected).toBe(true)
    expect(env.broker.connects).toHaveLength(3)
    expect(env.server.requests).toHaveLength(1)
    expect(payloads(events, 'provisioned').map((e) => e.source)).toEqual(['server', 'cache'])
  })

  test('an auth strategy that throws on a reconnect: a non-fatal error, the previous fields are used, no crash', async () => {
    let calls = 0
    const strategy = {
      name: 'flaky',
      sign: (
        device: { productKey: string; deviceName: string; deviceSecret: string },
        ctx: { brokerUrl: string; now: number },
      ) => {
        if (++calls === 2) throw new Error('secure element busy')
        return aliyunAuth().sign({ ...device, productSecret: null }, ctx)
      },
    }
    const { boot: bootstrap, events } = boot(env.options({ auth: strategy, reconnect }))
    const client = env.track(await bootstrap.connect())
    env.broker.drop()
    await nextEvent(bootstrap, 'connected', () => true, 5000)
    expect(client.connected).toBe(true)
    expect(payloads(events, 'error')).toMatchObject([{ fatal: false, error: { message: 'secure element busy' } }])
  })

  test('a revocation that moves the device to another broker reconnects the same client there', async () => {
    const other = await startBroker({ secrets: { [KEY]: ROTATED.deviceSecret } })
    try {
      const { boot: bootstrap } = boot(env.options({ reconnect }))
      const client = env.track(await bootstrap.connect())
      env.broker.secrets.set(KEY, 'revoked-here')
      env.answerValid({ host: other.host }, ROTATED)
      env.broker.drop()
      const connected = await nextEvent(bootstrap, 'connected', () => true, 5000)
      expect(connected.url).toBe(`mqtt://${other.host}`)
      expect(client.connected).toBe(true)
      expect(other.accepted).toBe(1)
    } finally {
      await env.cleanup()
      await other.close()
    }
  })

  test('a failed re-provisioning keeps the old credentials, which connect again once accepted', async () => {
    const cache = new MemoryCredentialStore()
    const { boot: bootstrap, events } = boot(env.options({ cache, reconnect, retry: { retries: 0 } }))
    const client = env.track(await bootstrap.connect())
    env.broker.secrets.set(KEY, 'temporarily-refused')
    env.server.handle((_req, res) => res.writeHead(503).end())
    const failed = nextEvent(
      bootstrap,
      'error',
      (e) => !e.fatal && (e.error as { code?: string }).code === 'ERR_PROVISION_HTTP_STATUS',
    )
    env.broker.drop()
    await failed
    const { url, data } = env.options()
    expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(DEVICE.deviceSecret)
    env.broker.secrets.set(KEY, DEVICE.deviceSecret) // the refusal passes
    await nextEvent(bootstrap, 'connected', () => true, 5000)
    expect(client.connected).toBe(true)
    expect(payloads(events, 'error').every((e) => !e.fatal)).toBe(true)
  })

  test('reconnect: false leaves a dropped client disconnected', async () => {
    const { boot: bootstrap, events } = boot(env.options({ reconnect: false }))
    const client = env.track(await bootstrap.connect())
    env.broker.drop()
    await until(() => !client.connected, 2000, 'the drop')
    await sleep(200)
    expect(client.connected).toBe(false)
    expect(env.broker.connects).toHaveLength(1)
    expect(payloads(events, 'retry')).toEqual([])
  })

  test('ending the client stops the session: its listeners are gone', async () => {
    const { boot: bootstrap, events } = boot(env.options({ reconnect }))
    const client = await bootstrap.connect()
    const watched = ['reconnect', 'connect', 'close', 'end'] as const
    const before = watched.map((name) => client.listenerCount(name))
    await client.endAsync()
    expect(watched.map((name) => client.listenerCount(name))).toEqual(before.map((n) => n - 1))
    // The app may reconnect the ended client itself: the session no longer signs or reports for it.
    client.reconnect()
    await until(() => client.connected, 2000, 'the app-driven reconnect')
    expect(payloads(events, 'connecting')).toHaveLength(1)
    await client.endAsync()
  })
})
