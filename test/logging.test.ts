// Observability in the ecosystem's conventions: a pino logger passed as is, and `debug` namespaces
// (DEBUG=mqtt-bootstrap:*), both without secrets.
import { execFile } from 'node:child_process'
import { format, promisify } from 'node:util'
import createDebug from 'debug'
import { pino } from 'pino'
import { expect, expectTypeOf, test } from 'vitest'
import { type Logger, MemoryCredentialStore } from '../packages/mqtt-bootstrap/src/index.js'
import { logFor, silentLogger } from '../packages/mqtt-bootstrap/src/logger.js'
import { boot, payloads, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'
import { pinoLines } from './helpers/pino.js'
import { until } from './helpers/until.js'

const env = useTestEnv()

test('a pino logger is a Logger, as is', () => {
  expectTypeOf(pino()).toMatchTypeOf<Logger>()
})

test('a pino logger gets every step of a boot, at its level, without secrets', async () => {
  const { logger, lines } = pinoLines()
  const cache = new MemoryCredentialStore()
  env.track(await boot(env.options({ logger, cache })).boot.connect())
  env.track(await boot(env.options({ logger, cache })).boot.connect())

  const steps = lines.map((line) => `${line.level}:${line.msg}`)
  // pino's levels: 20 debug, 30 info. First boot from the server, second from the cache.
  expect(steps).toEqual([
    '20:cache miss',
    '20:provisioning',
    '30:provisioned',
    '20:connecting',
    '30:connected',
    '20:cache write',
    '20:cache hit',
    '30:provisioned',
    '20:connecting',
    '30:connected',
  ])
  expect(lines[2]).toMatchObject({ source: 'server', productKey: DEVICE.productKey, deviceName: DEVICE.deviceName })
  expect(lines[4]).toMatchObject({ source: 'server', url: `mqtt://${env.broker.host}` })
  const text = JSON.stringify(lines)
  expect(text).not.toContain(DEVICE.deviceSecret)
  expect(text).not.toContain('password')
  expect(text).not.toContain('[redacted]') // nothing secret-named was even passed
})

test('the debug namespaces trace provisioning, transport, store and connect, without secrets', async () => {
  const printed: string[] = []
  const print = createDebug.log
  createDebug.log = (...args: unknown[]) => {
    printed.push(args.map(String).join(' '))
    print(...args)
  }
  try {
    env.track(await boot(env.options()).boot.connect())
  } finally {
    createDebug.log = print
  }
  const namespaces = new Set(printed.map((line) => /mqtt-bootstrap:[a-z]+/.exec(line)?.[0]))
  expect([...namespaces].sort()).toEqual([
    'mqtt-bootstrap:connect',
    'mqtt-bootstrap:provision',
    'mqtt-bootstrap:store',
    'mqtt-bootstrap:transport',
  ])
  expect(printed.some((line) => line.includes('POST') && line.includes(`127.0.0.1:${env.server.port}`))).toBe(true)
  expect(printed.join('\n')).not.toContain(DEVICE.deviceSecret)
})

test('a field named like a secret is redacted before any sink sees it', () => {
  const seen: object[] = []
  const recording: Logger = { ...silentLogger, warn: (fields) => seen.push(fields) }
  logFor(recording, 'boot').warn({ deviceSecret: 's3cr3t-value', password: 'pw-value', sign: 'abc', ok: 1 }, 'x')
  expect(seen).toEqual([{ deviceSecret: '[redacted]', password: '[redacted]', sign: '[redacted]', ok: 1 }])
})

test('nested fields named like a secret, in any case, are redacted too; cycles are cut', () => {
  const seen: object[] = []
  const recording: Logger = { ...silentLogger, info: (fields) => seen.push(fields) }
  const cyclic: Record<string, unknown> = { name: 'loop' }
  cyclic.self = cyclic
  logFor(recording, 'boot').info(
    { device: { DeviceSecret: 'nested-secret-1' }, headers: [{ Authorization: 'Bearer t0ken' }], cyclic },
    'x',
  )
  expect(seen).toEqual([
    {
      device: { DeviceSecret: '[redacted]' },
      headers: [{ Authorization: '[redacted]' }],
      cyclic: { name: 'loop', self: '[…]' },
    },
  ])
})

test("mqtt.js's own trace (DEBUG=mqttjs*) shows no password, at boot and on a reconnect", async () => {
  const printed: string[] = []
  const before = createDebug.disable()
  createDebug.enable(`${before},mqttjs*`)
  const print = createDebug.log
  createDebug.log = (...args: unknown[]) => {
    printed.push(format(...args))
  }
  try {
    const { boot: bootstrap, events } = boot(env.options({ reconnect: { minDelay: 10, maxDelay: 20 } }))
    env.track(await bootstrap.connect())
    env.broker.drop()
    await until(() => payloads(events, 'connected').length === 2, 5_000)
  } finally {
    createDebug.log = print
    createDebug.enable(before)
  }
  const passwords = env.broker.connects.map((connect) => connect.password ?? '')
  expect(passwords).toHaveLength(2)
  expect(passwords[0]).not.toBe(passwords[1]) // signed anew for the reconnect
  const text = printed.join('\n')
  expect(text).toMatch(/_writePacket/) // mqtt.js did print its CONNECT packets
  expect(text).toContain('password: [redacted]')
  for (const secret of [DEVICE.deviceSecret, ...passwords]) expect(text).not.toContain(secret)
})

const run = promisify(execFile)
const probe = `
  const { logFor, silentLogger } = await import('./packages/mqtt-bootstrap/src/logger.ts')
  logFor(silentLogger, 'boot').info({ step: 1 }, 'probe line')
`

test('DEBUG=mqtt-bootstrap:* prints the trace on stderr; without DEBUG nothing is printed', async () => {
  const tsx = ['--import', 'tsx', '--input-type=module', '-e', probe]
  const { DEBUG: _, ...quiet } = process.env
  const off = await run(process.execPath, tsx, { env: quiet, timeout: 15_000 })
  expect(off.stderr).not.toContain('probe line')
  const on = await run(process.execPath, tsx, { env: { ...quiet, DEBUG: 'mqtt-bootstrap:*' }, timeout: 15_000 })
  expect(on.stderr).toMatch(/mqtt-bootstrap:boot probe line \{ step: 1 \}/)
})
