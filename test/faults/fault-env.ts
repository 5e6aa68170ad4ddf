/**
 * The fault suite's environment: the usual loopback servers, answering a productSecret too, so that the suite-wide
 * leak check (test/setup.ts) looks for product secrets in every fault case as well as device secrets and passwords.
 */
import { afterEach } from 'vitest'
import type { BootstrapOptions, Clock, MqttBootstrap } from '../../packages/mqtt-bootstrap/src/index.js'
import { boot, type RecordedEvent, type TestEnv, useTestEnv } from '../helpers/env.js'
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
  const env = useTestEnv({ device: { ...DEVICE, productSecret: PRODUCT_SECRET } })
  afterEach(() => {
    env.broker.secrets.set(KEY, DEVICE.deviceSecret)
  })
  return { env, boot: (overrides = {}, seams = {}) => boot(env.options(overrides), seams) }
}
