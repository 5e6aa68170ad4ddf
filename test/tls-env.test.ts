// NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment does not switch off the verification of any connection the
// library makes: provisioning (direct and through a proxy), registration, the broker (mqtts and wss). Each server
// here presents a certificate of the test CA, which none of these clients is told to trust. Node reads the variable
// at each tls.connect, so setting it for this file (in its own worker process) is the real thing; the first test
// shows it does switch verification off where the option is left absent.
import { once } from 'node:events'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { Aedes } from 'aedes'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import { startBroker } from './helpers/broker.js'
import { type ConnectProxy, startConnectProxy } from './helpers/connect-proxy.js'
import { boot, useTestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'
import { PRODUCT, type RegistrationServer, startRegistrationServer } from './helpers/registration-server.js'

const env = useTestEnv()
const VARIABLE = 'NODE_TLS_REJECT_UNAUTHORIZED'
let saved: string | undefined
beforeAll(() => {
  saved = process.env[VARIABLE]
  process.env[VARIABLE] = '0'
})
afterAll(() => {
  if (saved === undefined) delete process.env[VARIABLE]
  else process.env[VARIABLE] = saved
})

const untrusted = { tls: {}, retry: { retries: 0 } } // the system roots, which do not hold the test CA

test('the variable is in effect: a tls.connect that leaves rejectUnauthorized absent accepts the untrusted server', async () => {
  const socket = tls.connect({ host: '127.0.0.1', port: env.server.port, servername: 'localhost' })
  try {
    await once(socket, 'secureConnect')
    expect(socket.authorized).toBe(false)
  } finally {
    socket.destroy()
  }
})

describe('provisioning', () => {
  test('PointAccess: ERR_PROVISION_TLS, and no request reached the server', async () => {
    const pa = new PointAccess({})
    expect(await pa.request(env.server.url, {})).toBe('77777')
    expect(pa.lastError).toMatchObject({ code: 'ERR_PROVISION_TLS', transient: false })
    expect(env.server.requests).toHaveLength(0)
  })

  test('the bootstrap: provision() fails ERR_PROVISION_TLS', async () => {
    const { boot: bootstrap } = boot(env.options(untrusted))
    await expect(bootstrap.provision()).rejects.toMatchObject({ code: 'ERR_PROVISION_TLS' })
    expect(env.server.requests).toHaveLength(0)
  })

  describe('through a CONNECT proxy', () => {
    let proxy: ConnectProxy
    beforeAll(async () => {
      proxy = await startConnectProxy()
    })
    afterAll(async () => {
      delete process.env.HTTPS_PROXY
      await proxy.close()
    })

    test('an https:// proxy is verified too: ERR_PROVISION_TLS, and it saw no CONNECT', async () => {
      const secure = await startConnectProxy(env.tls)
      try {
        process.env.HTTPS_PROXY = secure.url
        const url = env.server.url.replace('127.0.0.1', 'provision.test')
        const { boot: bootstrap } = boot(env.options({ url, tls: { ca: env.tls.ca }, retry: { retries: 0 } }))
        await expect(bootstrap.provision()).rejects.toMatchObject({ code: 'ERR_PROVISION_TLS' })
        expect(secure.tunnels).toEqual([])
      } finally {
        await secure.close()
      }
    })

    test('the TLS inside the tunnel is verified: ERR_PROVISION_TLS', async () => {
      process.env.HTTPS_PROXY = proxy.url
      const { boot: bootstrap } = boot(
        env.options({ ...untrusted, url: env.server.url.replace('127.0.0.1', 'provision.test') }),
      )
      await expect(bootstrap.provision()).rejects.toMatchObject({ code: 'ERR_PROVISION_TLS' })
      expect(proxy.tunnels).toEqual([`provision.test:${env.server.port}`])
      expect(env.server.requests).toHaveLength(0)
    })
  })
})

describe('registration', () => {
  let registry: RegistrationServer
  beforeAll(async () => {
    registry = await startRegistrationServer(env.tls, env.broker, ['meter-0001'])
  })
  afterAll(() => registry.close())

  test('provisioned over trusted TLS, the registration service untrusted: ERR_REGISTER_TLS', async () => {
    env.answerValid(
      {},
      { productKey: PRODUCT.productKey, deviceName: 'meter-0001', productSecret: PRODUCT.productSecret },
    )
    const { boot: bootstrap } = boot(
      env.options({ registration: { url: registry.url, tls: {} }, retry: { retries: 0 } }),
    )
    await expect(bootstrap.provision()).rejects.toMatchObject({ code: 'ERR_REGISTER_TLS' })
    expect(env.server.requests).toHaveLength(1)
    expect(registry.registrations).toHaveLength(0)
  })
})

describe('the broker', () => {
  const secrets = { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret }

  test('mqtts: the connect fails with a certificate error; the broker accepted no one', async () => {
    const broker = await startBroker({ tls: env.tls, secrets })
    try {
      env.answerValid({ host: `mqtts://${broker.host}` })
      const { boot: bootstrap } = boot(env.options({ retry: { retries: 0 } })) // provisioning trusted, mqtt: no ca
      const error = await bootstrap.connect().catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_BROKER_CONNECT', transient: false })
      expect((error as Error).message).toMatch(/certificate verification failed/)
      expect(broker.accepted).toBe(0)
    } finally {
      await broker.close()
    }
  })

  test('wss: the connect fails with a certificate error; the broker accepted no one', async () => {
    // MQTT over WebSocket over TLS: aedes behind a ws server on an https server with the test CA's certificate.
    const aedes = await Aedes.createBroker()
    let clients = 0
    aedes.on('client', () => clients++)
    const server = https.createServer({ key: env.tls.key, cert: env.tls.cert, noDelay: true })
    const wss = new WebSocketServer({ server })
    wss.on('connection', (socket) => aedes.handle(createWebSocketStream(socket)))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      env.answerValid({ host: `127.0.0.1:${(server.address() as AddressInfo).port}` })
      const { boot: bootstrap } = boot(env.options({ broker: { protocol: 'wss' }, retry: { retries: 0 } }))
      const error = await bootstrap.connect().catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'ERR_BROKER_CONNECT', transient: false })
      expect((error as Error).message).toMatch(/certificate verification failed/)
      expect(clients).toBe(0)
      expect(wss.clients.size).toBe(0)
    } finally {
      for (const socket of wss.clients) socket.terminate()
      wss.close()
      server.closeAllConnections()
      server.close()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    }
  })
})
