// tsyringe needs the Reflect polyfill before it loads; mqtt-bootstrap imports it, but tsyringe is imported first here.
import 'reflect-metadata'
import { execFileSync } from 'node:child_process'
import type { IClientOptions, MqttClient } from 'mqtt'
import { container as globalContainer } from 'tsyringe'
import { expect, expectTypeOf, test } from 'vitest'
import {
  type CredentialStore,
  connectProvisioned,
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
  MemoryCredentialStore,
  MqttBootstrap,
  type MqttConnector,
  MqttJsConnector,
  registerBootstrap,
  TOKENS,
  UndiciTransport,
} from '../packages/mqtt-bootstrap/src/index.js'
import { useTestEnv } from './helpers/env.js'
import { until } from './helpers/until.js'

const env = useTestEnv()

class CountingTransport implements HttpTransport {
  readonly requests: HttpRequest[] = []
  readonly #inner: UndiciTransport
  constructor(ca: string) {
    this.#inner = new UndiciTransport({ ca })
  }
  post(request: HttpRequest): Promise<HttpResponse> {
    this.requests.push(request)
    return this.#inner.post(request)
  }
}

class CountingConnector implements MqttConnector {
  readonly urls: string[] = []
  readonly #inner = new MqttJsConnector()
  connect(url: string, options: IClientOptions, signal?: AbortSignal) {
    this.urls.push(url)
    return this.#inner.connect(url, options, signal)
  }
}

const ALL_TOKENS: symbol[] = Object.values(TOKENS) as symbol[]

test('tokens are typed symbols', () => {
  for (const token of ALL_TOKENS) expect(typeof token).toBe('symbol')
  const resolveStore = () => globalContainer.resolve(TOKENS.CredentialStore)
  expectTypeOf(resolveStore).returns.toEqualTypeOf<CredentialStore>()
})

test("a user's container overrides the store, the transport and the connector", async () => {
  const store = new MemoryCredentialStore()
  const transport = new CountingTransport(env.tls.ca)
  const connector = new CountingConnector()
  const mine = globalContainer.createChildContainer()
  mine.register(TOKENS.CredentialStore, { useValue: store })
  mine.register(TOKENS.HttpTransport, { useValue: transport })
  mine.register(TOKENS.MqttConnector, { useValue: connector })

  env.track(await connectProvisioned(env.options({ container: mine })))
  expect(transport.requests).toHaveLength(1)
  expect(transport.requests[0]?.headers['content-type']).toBe('application/json')
  expect(store.size).toBe(1)
  expect(connector.urls).toEqual([`mqtt://${env.broker.host}`])

  // The same container again: the cache in the registered store answers, no request.
  env.track(await connectProvisioned(env.options({ container: mine })))
  expect(transport.requests).toHaveLength(1)
  expect(env.server.requests).toHaveLength(1)
})

test('an explicit option wins over the container registration', async () => {
  const registered = new MemoryCredentialStore()
  const explicit = new MemoryCredentialStore()
  const mine = globalContainer.createChildContainer()
  mine.register(TOKENS.CredentialStore, { useValue: registered })
  env.track(await connectProvisioned(env.options({ container: mine, cache: explicit })))
  expect(explicit.size).toBe(1)
  expect(registered.size).toBe(0)
})

test('registerBootstrap fills a container the caller resolves MqttBootstrap from', async () => {
  const mine = globalContainer.createChildContainer()
  registerBootstrap(mine, env.options())
  for (const token of ALL_TOKENS) expect(mine.isRegistered(token)).toBe(true)
  const bootstrap = mine.resolve(MqttBootstrap)
  env.track(await bootstrap.connect())
  expect(env.server.requests).toHaveLength(1)
})

test('nothing is ever registered in the global container', async () => {
  env.track(await connectProvisioned(env.options()))
  for (const token of ALL_TOKENS) expect(globalContainer.isRegistered(token, true)).toBe(false)
})

test('an app that never loads tsyringe: the bootstrap works, and tsyringe stays unloaded', () => {
  const output = execFileSync(process.execPath, ['--import', 'tsx', 'test/fixtures/no-tsyringe.ts'], {
    encoding: 'utf8',
  })
  // The provisioning server is unreachable (port 1): the point is that the bootstrap ran its course without DI.
  expect(JSON.parse(output)).toEqual({ outcome: 'ERR_PROVISION_NETWORK', tsyringeLoaded: false })
})

test("a connector's client with publish and subscribe of its own keeps them, under the provisioned qos", async () => {
  env.answerValid({ qos: 1 })
  const calls: string[] = []
  const connector = new MqttJsConnector()
  const own: MqttConnector = {
    async connect(url, options, signal) {
      const client = await connector.connect(url, options, signal)
      const { publish, subscribe } = client
      client.publish = function (this: MqttClient, ...args: Parameters<typeof publish>) {
        calls.push('publish')
        return publish.apply(this, args)
      } as typeof publish
      client.subscribe = function (this: MqttClient, ...args: Parameters<typeof subscribe>) {
        calls.push('subscribe')
        return subscribe.apply(this, args)
      } as typeof subscribe
      return client
    },
  }
  const container = globalContainer.createChildContainer()
  container.register(TOKENS.MqttConnector, { useValue: own })
  const client = env.track(await connectProvisioned(env.options({ container })))
  await client.subscribeAsync('cmd/a')
  await client.publishAsync('telemetry/a', 'x')
  await client.publishAsync('telemetry/b', 'y', { qos: 0 })
  expect(calls).toEqual(['subscribe', 'publish', 'publish'])
  await until(() => env.broker.published.length === 2, 2000, 'the broker to see the qos 0 publish')
  expect(env.broker.subscribed).toEqual([{ topic: 'cmd/a', qos: 1 }])
  expect(env.broker.published.map(({ topic, qos }) => [topic, qos])).toEqual([
    ['telemetry/a', 1],
    ['telemetry/b', 0],
  ])
})
