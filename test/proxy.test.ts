import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest'
import { type ConnectProxy, startConnectProxy } from './helpers/connect-proxy.js'
import { boot, useTestEnv } from './helpers/env.js'
import { configAnswer, json, startHttpsServer } from './helpers/https-server.js'

const env = useTestEnv()
let proxy: ConnectProxy
let proxyUrl: string
let tunnels: string[]

// A real CONNECT proxy on loopback. It is the only one who knows where provision.test is.
beforeAll(async () => {
  proxy = await startConnectProxy()
  proxyUrl = proxy.url
  tunnels = proxy.tunnels
})
afterEach(() => {
  tunnels.length = 0
  for (const name of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']) {
    delete process.env[name]
  }
})
afterAll(() => proxy.close())

const viaName = () => env.server.url.replace('127.0.0.1', 'provision.test')

test('HTTPS_PROXY: the provisioning request is tunnelled through the proxy, with TLS to the server behind it', async () => {
  process.env.HTTPS_PROXY = proxyUrl
  const client = env.track(await boot(env.options({ url: viaName() })).boot.connect())
  expect(client.connected).toBe(true)
  expect(tunnels).toEqual([`provision.test:${env.server.port}`])
  expect(env.server.requests).toHaveLength(1)
})

test('NO_PROXY: a listed address goes direct; the same address unlisted goes through the proxy', async () => {
  // 127.0.0.2 is loopback but not one of the addresses that always go direct, so NO_PROXY decides.
  const other = await startHttpsServer(
    env.tls,
    (_req, res) => json(res, 200, configAnswer({ host: env.broker.host })),
    {},
    0,
    '127.0.0.2',
  )
  try {
    process.env.HTTPS_PROXY = proxyUrl
    env.track(await boot(env.options({ url: other.url })).boot.connect())
    expect(tunnels).toEqual([`127.0.0.2:${other.port}`])
    process.env.NO_PROXY = '127.0.0.2'
    env.track(await boot(env.options({ url: other.url })).boot.connect())
    expect(tunnels).toHaveLength(1)
    expect(other.requests).toHaveLength(2)
  } finally {
    await other.close()
  }
})

test('HTTP_PROXY for an http:// provisioning URL (allowInsecureHttp)', async () => {
  const plain = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => json(res, 200, configAnswer({ host: env.broker.host })))
  })
  plain.listen(0, '127.0.0.1')
  await once(plain, 'listening')
  try {
    process.env.HTTP_PROXY = proxyUrl
    const url = `http://provision.test:${(plain.address() as AddressInfo).port}/provision`
    env.track(await boot(env.options({ url, allowInsecureHttp: true })).boot.connect())
    expect(tunnels).toEqual([`provision.test:${(plain.address() as AddressInfo).port}`])
  } finally {
    plain.closeAllConnections()
    plain.close()
  }
})

test('localhost, 127.0.0.1 and ::1 never use the proxy', async () => {
  process.env.HTTPS_PROXY = proxyUrl
  env.track(await boot(env.options()).boot.connect())
  expect(tunnels).toEqual([])
  expect(env.server.requests).toHaveLength(1)
})

test('a proxy that refuses the tunnel is a transient network failure', async () => {
  process.env.HTTPS_PROXY = proxyUrl
  const { boot: bootstrap } = boot(env.options({ url: 'https://elsewhere.test/provision', retry: false }))
  await expect(bootstrap.connect()).rejects.toMatchObject({ code: 'ERR_PROVISION_NETWORK', transient: true })
  expect(tunnels).toEqual(['elsewhere.test:443'])
})
