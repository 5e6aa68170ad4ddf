// timeoutMs bounds a whole attempt and an abort settles within 100 ms, at every stage of the exchange (TCP accepted
// but TLS never spoken, TLS done but no headers, headers sent but the body stalls, the backoff between attempts):
// for PointAccess, the bootstrap's provisioning and its registration, direct and through a proxy. Real loopback
// servers and real timers: the waits are what is being measured. The server must also see the connection closed,
// or a stopped request would leave its socket behind.
import { once } from 'node:events'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest'
import { type BootstrapOptions, PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import { type ConnectProxy, startConnectProxy } from './helpers/connect-proxy.js'
import { boot, useTestEnv } from './helpers/env.js'
import { json } from './helpers/https-server.js'
import { PRODUCT } from './helpers/registration-server.js'
import type { TlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const env = useTestEnv()

/** Time after the timer is due, and after an abort, within which a request must have settled. */
const TIMEOUT_MS = 300
const TIMEOUT_SLACK_MS = 200
const ABORT_MS = 100

type Stage = 'tls' | 'headers' | 'body'
const STAGES: Array<[Stage, string]> = [
  ['tls', 'TCP accepted, TLS never spoken'],
  ['headers', 'TLS done, no response headers'],
  ['body', 'headers sent, the body stalls'],
]

interface Stall {
  url: string
  port: number
  /** Connections accepted so far. */
  accepted: number
  /** Connections still open on the server's side. */
  readonly open: number
  /** Resolves once a client is stuck at the stage (its ClientHello, its request, the partial body sent). */
  reached: Promise<void>
  close(): Promise<void>
}

/** A loopback server that lets a client get as far as `stage` and no further. */
async function startStall(stage: Stage, fixture: TlsFixture): Promise<Stall> {
  let reach: () => void = () => {}
  const reached = new Promise<void>((resolve) => {
    reach = resolve
  })
  const pem = { key: fixture.key, cert: fixture.cert, noDelay: true }
  const server: net.Server =
    stage === 'tls'
      ? net.createServer((socket) => socket.once('data', reach)) // the ClientHello, never answered
      : stage === 'headers'
        ? tls.createServer(pem, (socket) => socket.once('data', reach)) // the request, never answered
        : https.createServer(pem, (req, res) => {
            req.resume()
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': '64' })
            res.write('{"code":', () => reach())
          })
  const sockets = new Set<net.Socket>()
  const stall = {
    url: '',
    port: 0,
    accepted: 0,
    get open() {
      return sockets.size
    },
    reached,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      server.close()
      await once(server, 'close')
    },
  }
  server.on('connection', (socket: net.Socket) => {
    stall.accepted++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  stall.port = (server.address() as net.AddressInfo).port
  stall.url = `https://127.0.0.1:${stall.port}/provision`
  return stall
}

/** The server saw every connection it accepted closed, within `ms` of the request settling. */
async function expectClosed(stall: Stall, ms = ABORT_MS): Promise<void> {
  expect(stall.accepted).toBeGreaterThan(0)
  await until(() => stall.open === 0, ms, 'the server to see the connection closed')
}

/** How long `start()`'s promise takes to settle, timed from before it is called (its timer may start at once). */
async function timed(start: () => Promise<unknown>): Promise<{ ms: number; outcome: unknown }> {
  const started = performance.now()
  const outcome = await start().catch((error: unknown) => error)
  return { ms: performance.now() - started, outcome }
}

/** Abort `controller` once the stall server has the client stuck (and a little after), timing the abort to the settle. */
async function abortWhenStuck(
  stall: Stall,
  controller: AbortController,
  pending: Promise<unknown>,
): Promise<{ ms: number; outcome: unknown }> {
  const settled = pending.catch((error: unknown) => error)
  await Promise.race([stall.reached, settled])
  await new Promise((resolve) => setTimeout(resolve, 30))
  const started = performance.now()
  controller.abort()
  const outcome = await settled
  return { ms: performance.now() - started, outcome }
}

const stalls: Stall[] = []
async function stallAt(stage: Stage): Promise<Stall> {
  const stall = await startStall(stage, env.tls)
  stalls.push(stall)
  return stall
}
afterEach(async () => {
  await Promise.all(stalls.splice(0).map((stall) => stall.close()))
})

const once0 = { retries: 0 }

/** The provisioning server answers the product secret and no device secret: the bootstrap then registers. */
function answerProductSecret(): void {
  env.answerValid(
    {},
    { productKey: PRODUCT.productKey, deviceName: 'meter-0001', productSecret: PRODUCT.productSecret },
  )
}

function registeringAt(stall: Stall, overrides: Partial<BootstrapOptions> = {}): BootstrapOptions {
  return env.options({
    registration: { url: stall.url, tls: { ca: env.tls.ca }, timeoutMs: TIMEOUT_MS },
    retry: once0,
    ...overrides,
  })
}

describe.each(STAGES)('%s (%s)', (stage) => {
  test('PointAccess: timeoutMs bounds the attempt, and the connection is closed', async () => {
    const stall = await stallAt(stage)
    const pa = new PointAccess({ tls: { ca: env.tls.ca }, timeoutMs: TIMEOUT_MS })
    const { ms, outcome } = await timed(() => pa.request(stall.url, {}))
    expect(outcome).toBe('77777')
    expect(pa.lastError).toMatchObject({ code: 'ERR_PROVISION_TIMEOUT', transient: true })
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5)
    expect(ms).toBeLessThan(TIMEOUT_MS + TIMEOUT_SLACK_MS)
    await expectClosed(stall)
  })

  test('PointAccess: an abort settles within 100 ms, and the connection is closed', async () => {
    const stall = await stallAt(stage)
    const pa = new PointAccess({ tls: { ca: env.tls.ca }, timeoutMs: 60_000 })
    const controller = new AbortController()
    const { ms, outcome } = await abortWhenStuck(
      stall,
      controller,
      pa.request(stall.url, {}, { signal: controller.signal }),
    )
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
    expect(ms).toBeLessThan(ABORT_MS)
    await expectClosed(stall)
  })

  test('provisioning: timeoutMs bounds the attempt', async () => {
    const stall = await stallAt(stage)
    const { boot: bootstrap } = boot(env.options({ url: stall.url, timeoutMs: TIMEOUT_MS, retry: once0 }))
    const { ms, outcome } = await timed(() => bootstrap.provision())
    expect(outcome).toMatchObject({ code: 'ERR_PROVISION_TIMEOUT' })
    expect(ms).toBeLessThan(TIMEOUT_MS + TIMEOUT_SLACK_MS)
    await expectClosed(stall)
  })

  test('provisioning: the signal option settles connect() within 100 ms', async () => {
    const stall = await stallAt(stage)
    const controller = new AbortController()
    const { boot: bootstrap } = boot(env.options({ url: stall.url, timeoutMs: 60_000, signal: controller.signal }))
    const { ms, outcome } = await abortWhenStuck(stall, controller, bootstrap.connect())
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
    expect(ms).toBeLessThan(ABORT_MS)
    await expectClosed(stall)
  })

  test('registration: timeoutMs bounds the attempt', async () => {
    const stall = await stallAt(stage)
    answerProductSecret()
    const { boot: bootstrap } = boot(registeringAt(stall))
    let registering = 0
    bootstrap.on('registering', () => {
      registering = performance.now()
    })
    const outcome = await bootstrap.provision().catch((error: unknown) => error)
    expect(outcome).toMatchObject({ code: 'ERR_REGISTER_TIMEOUT' })
    expect(registering).toBeGreaterThan(0)
    expect(performance.now() - registering).toBeLessThan(TIMEOUT_MS + TIMEOUT_SLACK_MS)
    await expectClosed(stall)
  })

  test('registration: the signal option settles provision() within 100 ms', async () => {
    const stall = await stallAt(stage)
    answerProductSecret()
    const controller = new AbortController()
    const { boot: bootstrap } = boot(
      registeringAt(stall, {
        registration: { url: stall.url, tls: { ca: env.tls.ca }, timeoutMs: 60_000 },
        signal: controller.signal,
      }),
    )
    const { ms, outcome } = await abortWhenStuck(stall, controller, bootstrap.provision())
    expect(outcome).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
    expect(ms).toBeLessThan(ABORT_MS)
    expect(env.server.requests).toHaveLength(1) // provisioned first: the stall was the registration
    await expectClosed(stall)
  })
})

describe('a kept-alive connection', () => {
  test('reused by a request that is then aborted: the server sees it closed, and no other opened', async () => {
    let answered = 0
    const server = https.createServer({ key: env.tls.key, cert: env.tls.cert, noDelay: true }, (req, res) => {
      req.resume()
      if (answered++ === 0) json(res, 200, { code: '10001' }) // the second request gets no answer at all
    })
    let accepted = 0
    const sockets = new Set<net.Socket>()
    server.on('connection', (socket: net.Socket) => {
      accepted++
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const url = `https://127.0.0.1:${(server.address() as net.AddressInfo).port}/`
      const pa = new PointAccess({ tls: { ca: env.tls.ca }, timeoutMs: 60_000 })
      expect(await pa.request(url, {})).toBe('10001')
      await new Promise((resolve) => setTimeout(resolve, 20)) // the connection back in the pool, idle
      const controller = new AbortController()
      const pending = pa.request(url, {}, { signal: controller.signal }).catch((error: unknown) => error)
      await until(() => answered === 2, 2000, 'the second request')
      const started = performance.now()
      controller.abort()
      expect(await pending).toMatchObject({ code: 'ERR_ABORTED' })
      expect(performance.now() - started).toBeLessThan(ABORT_MS)
      await until(() => sockets.size === 0, ABORT_MS, 'the server to see the connection closed')
      // One connection carried both requests; undici's own abort would have connected once more, for nothing.
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(accepted).toBe(1)
      expect(sockets.size).toBe(0)
    } finally {
      server.closeAllConnections()
      server.close()
    }
  })
})

describe('the backoff between attempts (real timers)', () => {
  const slowRetry = { retries: 3, minTimeout: 5_000, maxTimeout: 5_000, randomize: false }

  test('provisioning: an abort during the backoff settles connect() within 100 ms', async () => {
    env.server.handle((_req, res) => res.writeHead(503).end())
    const controller = new AbortController()
    const { boot: bootstrap, events } = boot(env.options({ retry: slowRetry, signal: controller.signal }))
    const settled = bootstrap.connect().catch((error: unknown) => error)
    await until(() => events.some(([name]) => name === 'retry'), 2000, 'the first retry')
    const started = performance.now()
    controller.abort()
    expect(await settled).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
    expect(performance.now() - started).toBeLessThan(ABORT_MS)
    expect(env.server.requests).toHaveLength(1)
  })

  test('registration: an abort during the backoff settles provision() within 100 ms', async () => {
    answerProductSecret()
    // The registration service answers "busy" (Alibaba's 503 code): transient, retried after the backoff.
    const registry = https.createServer({ key: env.tls.key, cert: env.tls.cert, noDelay: true }, (req, res) => {
      req.resume()
      req.on('end', () => json(res, 200, { code: 503, message: 'service unavailable' }))
    })
    registry.listen(0, '127.0.0.1')
    await once(registry, 'listening')
    try {
      const url = `https://127.0.0.1:${(registry.address() as net.AddressInfo).port}/auth/register/device`
      const controller = new AbortController()
      const { boot: bootstrap, events } = boot(
        env.options({ registration: { url, tls: { ca: env.tls.ca } }, retry: slowRetry, signal: controller.signal }),
      )
      const settled = bootstrap.provision().catch((error: unknown) => error)
      await until(() => events.some(([name]) => name === 'retry'), 2000, 'the first retry')
      const started = performance.now()
      controller.abort()
      expect(await settled).toMatchObject({ name: 'AbortError', code: 'ERR_ABORTED' })
      expect(performance.now() - started).toBeLessThan(ABORT_MS)
      expect(events.filter(([name]) => name === 'registering')).toHaveLength(1)
    } finally {
      registry.closeAllConnections()
      registry.close()
    }
  })
})

describe('through a CONNECT proxy', () => {
  let proxy: ConnectProxy
  beforeAll(async () => {
    proxy = await startConnectProxy()
  })
  afterEach(() => {
    proxy.silent = false
    proxy.tunnels.length = 0
    delete process.env.HTTPS_PROXY
  })
  afterAll(() => proxy.close())

  /** A PointAccess made while HTTPS_PROXY names the proxy (the transport reads it when it is made). */
  function proxied(timeoutMs: number): PointAccess {
    process.env.HTTPS_PROXY = proxy.url
    return new PointAccess({ tls: { ca: env.tls.ca }, timeoutMs })
  }
  // provision.test: a name the certificate holds and only the proxy resolves (no loopback name: those go direct).
  const viaName = (stall: Stall) => `https://provision.test:${stall.port}/provision`

  test('TLS never spoken behind the tunnel: an abort settles within 100 ms; the server and the proxy see it closed', async () => {
    const stall = await stallAt('tls')
    const pa = proxied(60_000)
    const controller = new AbortController()
    const { ms, outcome } = await abortWhenStuck(
      stall,
      controller,
      pa.request(viaName(stall), {}, { signal: controller.signal }),
    )
    expect(outcome).toMatchObject({ code: 'ERR_ABORTED' })
    expect(ms).toBeLessThan(ABORT_MS)
    expect(proxy.tunnels).toEqual([`provision.test:${stall.port}`])
    await expectClosed(stall)
    await until(() => proxy.open === 0, ABORT_MS, 'the proxy to see the connection closed')
  })

  test('a proxy that never answers the CONNECT: timeoutMs bounds the attempt; the proxy sees it closed', async () => {
    proxy.silent = true
    const stall = await stallAt('tls')
    const pa = proxied(TIMEOUT_MS)
    const { ms, outcome } = await timed(() => pa.request(viaName(stall), {}))
    expect(outcome).toBe('77777')
    expect(pa.lastError).toMatchObject({ code: 'ERR_PROVISION_TIMEOUT' })
    expect(ms).toBeLessThan(TIMEOUT_MS + TIMEOUT_SLACK_MS)
    expect(stall.accepted).toBe(0)
    await until(() => proxy.open === 0, ABORT_MS, 'the proxy to see the connection closed')
  })
})
