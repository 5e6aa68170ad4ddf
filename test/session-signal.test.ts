/**
 * The bootstrap's `signal` is the boot's (an app may well pass AbortSignal.timeout() there): once connected, the
 * session outlives it, and a re-provisioning after the broker revoked the credentials still runs. Real aedes and HTTPS.
 */
import { afterEach, expect, test } from 'vitest'
import { MemoryCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import { boot, nextEvent, payloads, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'

const env = useTestEnv()
const KEY = `${DEVICE.productKey}.${DEVICE.deviceName}`
const ROTATED = { ...DEVICE, deviceSecret: 'rotated-secret-3333333333' }
afterEach(() => {
  env.broker.secrets.set(KEY, DEVICE.deviceSecret)
})

test("the boot's signal aborted after connecting: a revoked secret is still re-provisioned and the client reconnects", async () => {
  const controller = new AbortController()
  const reconnect = { minDelay: 20, maxDelay: 200, factor: 2, stableAfter: 150 }
  const options = env.options({ cache: new MemoryCredentialStore(), reconnect, signal: controller.signal })
  const { boot: bootstrap, events } = boot(options)
  const client = env.track(await bootstrap.connect())
  controller.abort() // the boot is over; the session must not care

  env.broker.secrets.set(KEY, ROTATED.deviceSecret)
  env.answerValid({}, ROTATED)
  env.broker.drop()
  await nextEvent(bootstrap, 'connected', () => true, 5000)

  expect(client.connected).toBe(true)
  expect(env.server.requests).toHaveLength(2) // the re-provisioning ran, after the abort
  expect(payloads(events, 'error').filter((e) => e.fatal)).toEqual([])
})
