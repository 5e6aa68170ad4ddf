/** One test environment: a TLS fixture, an aedes broker (plain TCP, aliyun auth) and an HTTPS provisioning server. */
import 'reflect-metadata' // tsyringe (imported below) needs it first
import type { MqttClient } from 'mqtt'
import { container as rootContainer } from 'tsyringe'
import { afterAll, afterEach, beforeAll } from 'vitest'
import {
  type BootstrapEvents,
  type BootstrapOptions,
  type Clock,
  createBootstrap,
  type MqttBootstrap,
  TOKENS,
} from '../../packages/mqtt-bootstrap/src/index.js'
import { startBroker, type TestBroker } from './broker.js'
import { EVENT_NAMES, suite } from './exposure.js'
import { FakeClock } from './fake-clock.js'
import { configAnswer, DEVICE, json, startHttpsServer, type TestServer } from './https-server.js'
import { type TlsFixture, tlsFixture } from './tls.js'

export interface TestEnv {
  tls: TlsFixture
  broker: TestBroker
  server: TestServer
  /** Options that reach this environment's server and broker; `overrides` win. */
  options(overrides?: Partial<BootstrapOptions>): BootstrapOptions
  /** Answer a valid configuration pointing at the broker. */
  answerValid(
    connect?: { qos?: number; cleanSession?: number | boolean; host?: string },
    device?: Record<string, unknown>,
  ): void
  /** What the server answers by default (`answerValid()` without a device). */
  device: Record<string, unknown>
  /**
   * Clients opened by a test, ended by `cleanup()`. The library's clients are also inspected for secrets after the
   * test; `by: 'test'` marks a client the test made itself with mqtt.js (its options are mqtt.js's, not ours).
   */
  track(client: MqttClient, by?: 'library' | 'test'): MqttClient
  /** The clients tracked and not yet ended. */
  readonly clients: readonly MqttClient[]
  cleanup(): Promise<void>
  close(): Promise<void>
}

export async function startEnv(options: { device?: Record<string, unknown> } = {}): Promise<TestEnv> {
  const device = options.device ?? DEVICE
  const tls = await tlsFixture()
  const broker = await startBroker({ secrets: { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret } })
  const server = await startHttpsServer(tls, (_req, res) => json(res, 200, configAnswer({ host: broker.host }, device)))
  const clients: MqttClient[] = []
  const env: TestEnv = {
    tls,
    broker,
    server,
    device,
    clients,
    options: (overrides = {}) => ({
      url: server.url,
      data: { imei: '860000000000001' },
      tls: { ca: tls.ca },
      broker: { protocol: 'mqtt' },
      retry: { retries: 3, minTimeout: 1000, factor: 2 },
      ...overrides,
    }),
    answerValid: (connect = {}, answered = device) =>
      server.handle((_req, res) => json(res, 200, configAnswer({ host: broker.host, ...connect }, answered))),
    track: (client, by = 'library') => {
      clients.push(client)
      if (by === 'library') suite.objects.push(client)
      return client
    },
    cleanup: async () => {
      await Promise.all(clients.splice(0).map((client) => client.endAsync(true)))
      server.requests.length = 0
      broker.connects.length = 0
      broker.published.length = 0
      broker.subscribed.length = 0
      broker.refuse.length = 0
      env.answerValid()
    },
    close: async () => {
      await env.cleanup()
      await Promise.all([server.close(), broker.close()])
    },
  }
  return env
}

/**
 * The environment of the tests that follow, in a file or a describe block: started before them (beforeAll), cleaned up
 * after each, closed after all. Use it in tests and in hooks registered after this call.
 */
export function useTestEnv(options: { device?: Record<string, unknown> } = {}): TestEnv {
  let env: TestEnv | undefined
  beforeAll(async () => {
    env = await startEnv(options)
  })
  afterEach(() => env?.cleanup())
  afterAll(() => env?.close())
  return new Proxy({} as TestEnv, {
    get: (_target, key) => {
      if (env === undefined) throw new Error('the test environment starts in beforeAll: use it in tests and hooks')
      return Reflect.get(env, key)
    },
  })
}

export type RecordedEvent = {
  [K in keyof BootstrapEvents]: [K, Parameters<BootstrapEvents[K]>[0]]
}[keyof BootstrapEvents]

/** A bootstrap with the given seams registered in a child container, and every event it emits. */
export function boot(
  options: BootstrapOptions,
  seams: { clock?: Clock } = {},
): { boot: MqttBootstrap; events: RecordedEvent[] } {
  const container = (options.container ?? rootContainer).createChildContainer()
  if (seams.clock) container.register(TOKENS.Clock, { useValue: seams.clock })
  // Everything it logs and emits goes to the suite's exposure (checked for secrets after each test).
  const logger = options.logger ?? suite.exposure.logger()
  const bootstrap = suite.exposure.watch(createBootstrap({ ...options, logger, container }))
  suite.objects.push(bootstrap)
  const events: RecordedEvent[] = []
  for (const name of EVENT_NAMES) {
    bootstrap.on(name, (payload: unknown) => {
      events.push([name, payload] as RecordedEvent)
    })
  }
  return { boot: bootstrap, events }
}

/**
 * Boot with `options` on a fake clock whose sleeps hold, and abort the moment the first backoff sleep starts: what
 * `connect()` rejected with, and the events up to then.
 */
export async function abortDuringBackoff(
  options: BootstrapOptions,
): Promise<{ error: unknown; events: RecordedEvent[] }> {
  const clock = new FakeClock()
  clock.hold = true
  const controller = new AbortController()
  const { boot: bootstrap, events } = boot({ ...options, signal: controller.signal }, { clock })
  const pending = bootstrap.connect().catch((error: unknown) => error)
  await clock.sleeping()
  controller.abort()
  return { error: await pending, events }
}

/** Event names in order, with the cache action / provisioned source appended. */
/** The events of a first boot: nothing cached, provisioned, connected, then cached. */
export const FIRST_BOOT_TRAIL: readonly string[] = [
  'cache:miss',
  'provisioning',
  'provisioned:server',
  'connecting',
  'connected',
  'cache:write',
]

/**
 * The events of a boot whose cached credentials the broker refuses: invalidated, provisioned afresh once, connected,
 * the new ones cached. The same on every broker.
 */
export const REPROVISIONED_TRAIL: readonly string[] = [
  'cache:hit',
  'provisioned:cache',
  'connecting',
  'auth-rejected',
  'cache:invalidate',
  'provisioning',
  'provisioned:server',
  'connecting',
  'connected',
  'cache:write',
]

export function eventTrail(events: RecordedEvent[]): string[] {
  return events.map(([name, payload]) => {
    if (name === 'cache') return `cache:${payload.action}`
    if (name === 'provisioned') return `provisioned:${payload.source}`
    return name
  })
}

/** The payloads of one event, typed. */
export function payloads<K extends keyof BootstrapEvents>(
  events: RecordedEvent[],
  name: K,
): Array<Parameters<BootstrapEvents[K]>[0]> {
  return events.filter((event) => event[0] === name).map((event) => event[1] as Parameters<BootstrapEvents[K]>[0])
}

/** The next event `name` (matching `predicate`) from `emitter`: bounded in time. */
export function nextEvent<K extends keyof BootstrapEvents>(
  bootstrap: MqttBootstrap,
  name: K,
  predicate: (payload: Parameters<BootstrapEvents[K]>[0]) => boolean = () => true,
  timeoutMs = 5000,
): Promise<Parameters<BootstrapEvents[K]>[0]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      bootstrap.off(name, listener as never)
      reject(new Error(`no '${String(name)}' event within ${timeoutMs} ms`))
    }, timeoutMs)
    const listener = (payload: Parameters<BootstrapEvents[K]>[0]) => {
      if (!predicate(payload)) return
      clearTimeout(timer)
      bootstrap.off(name, listener as never)
      resolve(payload)
    }
    bootstrap.on(name, listener as never)
  })
}
