// The public types (checked by `tsc --noEmit` in `npm test`; the runtime part is trivial).
import type { MqttClient } from 'mqtt'
import type { DependencyContainer } from 'tsyringe'
import { expectTypeOf, test } from 'vitest'
import type { Container } from '../packages/mqtt-bootstrap/src/container.js'
import {
  type BootstrapEvents,
  type BootstrapOptions,
  type ConnectOptions,
  connectProvisioned,
  createBootstrap,
  type DeviceConfig,
  type ErrorCode,
  type Logger,
  type MqttBootstrap,
  type PointAccess,
  ResultCode,
  registerBootstrap,
  TOKENS,
} from '../packages/mqtt-bootstrap/src/index.js'

test('public API types', () => {
  expectTypeOf(connectProvisioned).parameter(0).toEqualTypeOf<BootstrapOptions>()
  expectTypeOf(connectProvisioned).returns.toEqualTypeOf<Promise<MqttClient>>()
  expectTypeOf(createBootstrap).returns.toEqualTypeOf<MqttBootstrap>()
  expectTypeOf<MqttBootstrap['connectOptions']>().returns.toEqualTypeOf<Promise<ConnectOptions>>()
  expectTypeOf<ConnectOptions['url']>().toEqualTypeOf<string>()
  expectTypeOf<PointAccess['request']>().returns.toEqualTypeOf<Promise<string>>()
  expectTypeOf<PointAccess['deviceConfig']>().toEqualTypeOf<DeviceConfig>()
  expectTypeOf<DeviceConfig['device']['productSecret']>().toEqualTypeOf<string | null>()
  expectTypeOf<DeviceConfig['connect']['qos']>().toEqualTypeOf<0 | 1 | 2>()
  expectTypeOf(ResultCode.SUCCESS).toEqualTypeOf<'00000'>()
  expectTypeOf<Parameters<BootstrapEvents['provisioned']>[0]['source']>().toEqualTypeOf<'cache' | 'server'>()
  expectTypeOf<Parameters<BootstrapEvents['cache']>[0]['action']>().toEqualTypeOf<
    'hit' | 'miss' | 'write' | 'invalidate'
  >()
  expectTypeOf<Parameters<BootstrapEvents['retry']>[0]>().toHaveProperty('delayMs').toEqualTypeOf<number>()
  expectTypeOf<'ERR_BROKER_AUTH_REJECTED'>().toMatchTypeOf<ErrorCode>()
  // @ts-expect-error: url and data are required
  expectTypeOf(connectProvisioned).toBeCallableWith({ url: 'https://x' })
})

// Type-checked, never called (tsyringe is not loaded here).
const resolveLogger = (app: DependencyContainer) => app.resolve(TOKENS.Logger)
export const registerAWrongLogger = (app: DependencyContainer) =>
  // @ts-expect-error: a value that is not a Logger is refused for the Logger token
  app.register(TOKENS.Logger, { useValue: 42 })

test("the library's own Container and Token types accept tsyringe's, and tsyringe infers a seam's type from its token", () => {
  expectTypeOf<DependencyContainer>().toExtend<Container>()
  expectTypeOf<ReturnType<typeof resolveLogger>>().toEqualTypeOf<Logger>()
  expectTypeOf(registerBootstrap).parameter(0).toEqualTypeOf<Container>()
  expectTypeOf<BootstrapOptions['container']>().toEqualTypeOf<Container | undefined>()
})
