/**
 * The fault suite's environment: the usual loopback servers, answering a productSecret too, so that the suite-wide
 * leak check (test/setup.ts) looks for product secrets in every fault case as well as device secrets and passwords.
 */
import { afterAll, afterEach, beforeAll } from 'vitest'
import type { BootstrapOptions, Clock, MqttBootstrap } from '../../src/index.js'
import { boot, type RecordedEvent, startEnv, type TestEnv } from '../helpers/env.js'
import { DEVICE } from '../helpers/https-server.js'

export const PRODUCT_SECRET = 'PS-fault-suite-product-secret'
export const ROTATED = Object.freeze({
  ...DEVICE,
  deviceSecret: 'rotated-secret-3333333333',
  productSecret: PRODUCT_SECRET,
})
export const KEY = `${DEVICE.productKey}.${DEVICE.deviceName}`

export interface FaultEnv {
  readonly env: TestEnv
  /** A bootstrap reaching this environment (its logs and events are checked for secrets after the case). */
  boot(
    overrides?: Partial<BootstrapOptions>,
    seams?: { clock?: Clock },
  ): { boot: MqttBootstrap; events: RecordedEvent[] }
}

export function useFaultEnv(): FaultEnv {
  let env: TestEnv | undefined
  const fault: FaultEnv = {
    get env() {
      if (env === undefined) throw new Error('the fault environment starts in beforeAll')
      return env
    },
    boot: (overrides = {}, seams = {}) => boot(fault.env.options(overrides), seams),
  }
  beforeAll(async () => {
    env = await startEnv({ device: { ...DEVICE, productSecret: PRODUCT_SECRET } })
  })
  afterEach(async () => {
    await fault.env.cleanup()
    fault.env.broker.secrets.set(KEY, DEVICE.deviceSecret)
  })
  afterAll(() => env?.close())
  return fault
}
