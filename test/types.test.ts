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
  type MqttOptions,
  type PointAccess,
  type ProvisionedMqttKey,
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
const registerAWrongLogger = (app: DependencyContainer) =>
  // @ts-expect-error: a value that is not a Logger is refused for the Logger token
  app.register(TOKENS.Logger, { useValue: 42 })

test("the library's own Container and Token types accept tsyringe's, and tsyringe infers a seam's type from its token", () => {
  expectTypeOf<DependencyContainer>().toExtend<Container>()
  expectTypeOf(registerAWrongLogger).toBeFunction()
  expectTypeOf<ReturnType<typeof resolveLogger>>().toEqualTypeOf<Logger>()
  expectTypeOf(registerBootstrap).parameter(0).toEqualTypeOf<Container>()
  expectTypeOf<BootstrapOptions['container']>().toEqualTypeOf<Container | undefined>()
})

// The `mqtt` option rejects, in an editor, what provisioning owns (issue 12). expectTypeOf never calls the function.
const base = { url: 'https://provision.example/bootstrap', data: { imei: '1' } }
test('the mqtt option is mqtt.js client options less the keys provisioning owns', () => {
  expectTypeOf<BootstrapOptions['mqtt']>().toEqualTypeOf<MqttOptions | undefined>()
  expectTypeOf<'clientId' | 'username' | 'password' | 'clean'>().toExtend<ProvisionedMqttKey>()
  expectTypeOf<MqttOptions>().not.toHaveProperty('clientId')
  expectTypeOf<MqttOptions>().toHaveProperty('ca')
  expectTypeOf<MqttOptions>().toHaveProperty('keepalive')
  expectTypeOf<MqttOptions['rejectUnauthorized']>().toEqualTypeOf<true | undefined>()
  const broker = {
    ca: 'PEM',
    cert: 'PEM',
    key: 'PEM',
    servername: 'b',
    keepalive: 30,
    rejectUnauthorized: true as const,
  }
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: broker })
  // @ts-expect-error: clientId comes from provisioning
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { clientId: 'x' } })
  // @ts-expect-error: username comes from provisioning
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { username: 'x' } })
  // @ts-expect-error: password comes from provisioning
  expectTypeOf(connectProvisioned).toBeCallableWith({ ...base, mqtt: { password: 'x' } })
  // @ts-expect-error: clean comes from cleanSession
  expectTypeOf(connectProvisioned).toBeCallableWith({ ...base, mqtt: { clean: false } })
  // @ts-expect-error: mqtt.js would take username and password from `auth`
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { auth: 'user:pass' } })
  // @ts-expect-error: where to connect comes from connect.host
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { host: 'elsewhere' } })
  // @ts-expect-error: the library connects the client itself
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { manualConnect: true } })
  // @ts-expect-error: broker certificate verification stays on
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { rejectUnauthorized: false } })
  // @ts-expect-error: over wss:// too
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { wsOptions: { rejectUnauthorized: false } } })
  expectTypeOf(createBootstrap).toBeCallableWith({ ...base, mqtt: { wsOptions: { headers: { 'x-a': '1' } } } })
})
