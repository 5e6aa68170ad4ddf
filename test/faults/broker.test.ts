import mqtt from 'mqtt'
import { describe, expect, test } from 'vitest'
import { credentialKey, MemoryCredentialStore } from '../../packages/mqtt-bootstrap/src/index.js'
import { signedAs, startBroker, type TestBroker } from '../helpers/broker.js'
import { nextEvent, payloads } from '../helpers/env.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { DEVICE } from '../helpers/https-server.js'
import { freePort } from '../helpers/ports.js'
import { until } from '../helpers/until.js'
import { KEY, ROTATED, useFaultEnv } from './fault-env.js'

const fault = useFaultEnv()
const reconnect = { minDelay: 20, maxDelay: 100, stableAfter: 1000 }

describe('the broker', () => {
  test('down at boot, then up: the connect is retried until it succeeds', async () => {
    const port = await freePort()
    fault.env.answerValid({ host: `127.0.0.1:${port}` })
    let late: TestBroker | undefined
    const clock = new FakeClock()
    clock.onSleep = async () => {
      if (clock.sleeps.length === 3) late = await startBroker({ secrets: { [KEY]: DEVICE.deviceSecret }, port })
    }
    try {
      const { boot, events } = fault.boot({}, { clock })
      const client = fault.env.track(await boot.connect())
      expect(client.connected).toBe(true)
      expect(payloads(events, 'retry').map((e) => e.phase)).toEqual(['connect', 'connect', 'connect'])
      expect(fault.env.server.requests).toHaveLength(1) // provisioned once, not again per connect attempt
    } finally {
      await fault.env.cleanup()
      await late?.close()
    }
  })

  test('restarted while connected: the same client reconnects, resubscribes, and delivers what was queued', async () => {
    const port = await freePort()
    let broker = await startBroker({ secrets: { [KEY]: DEVICE.deviceSecret }, port })
    fault.env.answerValid({ host: broker.host, qos: 1 })
    try {
      const { boot } = fault.boot({ reconnect })
      const client = fault.env.track(await boot.connect())
      const received: string[] = []
      client.on('message', (_topic, payload) => received.push(payload.toString()))
      await client.subscribeAsync('cmd/device-001')

      await broker.close() // the broker goes down...
      await until(() => !client.connected, 2000, 'the disconnect')
      const queued = client.publishAsync('telemetry', 'sent while offline') // qos 1 (provisioned): kept until acked
      broker = await startBroker({ secrets: { [KEY]: DEVICE.deviceSecret }, port }) // ...and comes back empty
      await nextEvent(boot, 'connected', () => true, 5000)
      await queued
      await until(() => broker.published.some((p) => p.payload === 'sent while offline'), 2000, 'the queued message')
      await until(() => broker.subscribed.some((s) => s.topic === 'cmd/device-001'), 2000, 'the resubscription')

      const sender = fault.env.track(
        await mqtt.connectAsync(`mqtt://${broker.host}`, signedAs(DEVICE, 'sender')),
        'test',
      )
      await sender.publishAsync('cmd/device-001', 'after restart', { qos: 1 })
      await until(() => received.includes('after restart'), 2000, 'a message after the restart')
      expect(client.connected).toBe(true)
    } finally {
      await fault.env.cleanup()
      await broker.close()
    }
  })

  test('credentials revoked while connected: re-provisioned, the same client reconnects with the new ones', async () => {
    const cache = new MemoryCredentialStore()
    const { boot, events } = fault.boot({ cache, reconnect })
    const client = fault.env.track(await boot.connect())
    fault.env.broker.secrets.set(KEY, ROTATED.deviceSecret) // the cloud revokes the old secret...
    fault.env.answerValid({}, ROTATED) // ...and the provisioning server hands out the new one
    fault.env.broker.drop()
    await nextEvent(boot, 'connected', () => true, 5000)
    expect(client.connected).toBe(true)
    expect(payloads(events, 'auth-rejected')).toEqual([{ returnCode: 4, source: 'server', reprovision: true }])
    const { url, data } = fault.env.options()
    expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(ROTATED.deviceSecret)
  })
})
