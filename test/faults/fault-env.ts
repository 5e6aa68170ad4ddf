/**
 * The fault suite's environment: the usual loopback servers, plus a leak check after every case. Each case runs
 * with a recording logger and event listener; afterwards no device secret, product secret or derived MQTT password
 * may appear in anything it exposed.
 */
import { afterAll, afterEach, beforeAll, expect } from 'vitest'
import type { BootstrapOptions, Clock, MqttBootstrap } from '../../src/index.js'
import { boot, type RecordedEvent, startEnv, type TestEnv } from '../helpers/env.js'
import { Exposure } from '../helpers/exposure.js'
import { DEVICE } from '../helpers/https-server.js'

/** Every answer of the fault suite carries a productSecret too, so that its absence from logs is checked as well. */
export const PRODUCT_SECRET = 'PS-fault-suite-product-secret'
export const ROTATED = Object.freeze({
  ...DEVICE,
  deviceSecret: 'rotated-secret-3333333333',
  productSecret: PRODUCT_SECRET,
})
export const KEY = `${DEVICE.productKey}.${DEVICE.deviceName}`

export interface FaultEnv {
  readonly env: TestEnv
  readonly exposure: Exposure
  /** A watched bootstrap: its events and logs go to `exposure`. */
  boot(
    overrides?: Partial<BootstrapOptions>,
    seams?: { clock?: Clock },
  ): { boot: MqttBootstrap; events: RecordedEvent[] }
  /** More secrets to look for (e.g. passwords seen by another broker). */
  secrets: Set<string>
}

export function useFaultEnv(): FaultEnv {
  const exposure = new Exposure()
  const secrets = new Set<string>()
  let env: TestEnv | undefined
  const fault: FaultEnv = {
    get env() {
      if (env === undefined) throw new Error('the fault environment starts in beforeAll')
      return env
    },
    exposure,
    secrets,
    boot: (overrides = {}, seams = {}) => {
      const watched = boot(fault.env.options({ logger: exposure.logger(), ...overrides }), seams)
      exposure.watch(watched.boot)
      bootstraps.push(watched.boot)
      return watched
    },
  }
  const bootstraps: MqttBootstrap[] = []
  beforeAll(async () => {
    env = await startEnv({ device: { ...DEVICE, productSecret: PRODUCT_SECRET } })
  })
  afterEach(async () => {
    // The library objects of the case, inspected, join what it exposed.
    exposure.add(...bootstraps.splice(0), ...fault.env.clients)
    const all = new Set([DEVICE.deviceSecret, ROTATED.deviceSecret, PRODUCT_SECRET, ...secrets])
    for (const connect of fault.env.broker.connects) if (connect.password) all.add(connect.password)
    const leaks = exposure.leaks(all)
    exposure.clear()
    secrets.clear()
    await fault.env.cleanup()
    fault.env.broker.secrets.set(KEY, DEVICE.deviceSecret)
    expect(leaks, 'secrets exposed by this case').toEqual([])
  })
  afterAll(() => env?.close())
  return fault
}
