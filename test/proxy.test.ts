import { once } from 'node:events'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { afterAll, afterEach, beforeAll, expect, test } from 'vitest'
import { boot, startEnv, type TestEnv } from './helpers/env.js'

let env: TestEnv
let proxy: http.Server
let proxyUrl: string
const tunnels: string[] = []

beforeAll(async () => {
  env = await startEnv()
  // A real CONNECT proxy on loopback. It is the only one who knows where provision.test is.
  proxy = http.createServer((_req, res) => res.writeHead(405).end())
  proxy.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    tunnels.push(req.url ?? '')
    const [host, port] = (req.url ?? '').split(':')
    const target = host === 'provision.test' ? '127.0.0.1' : host
    if (target !== '127.0.0.1') {
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n')
      return
    }
    const upstream = net.connect(Number(port), target, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
})
afterEach(async () => {
  await env.cleanup()
  tunnels.length = 0
  for (const name of ['HTTPS_PROXY', 'https_proxy']) delete process.env[name]
})
afterAll(async () => {
  proxy.closeAllConnections()
  proxy.close()
  await env.close()
})

// NO_PROXY is undici's own matching; it is not tested here because a direct request to a name would need DNS, and
// the tests never leave loopback.
const viaName = () => env.server.url.replace('127.0.0.1', 'provision.test')

test('HTTPS_PROXY: the provisioning request is tunnelled through the proxy, with TLS to the server behind it', async () => {
  process.env.HTTPS_PROXY = proxyUrl
  const client = env.track(await boot(env.options({ url: viaName() })).boot.connect())
  expect(client.connected).toBe(true)
  expect(tunnels).toEqual([`provision.test:${env.server.port}`])
  expect(env.server.requests).toHaveLength(1)
})

test('loopback destinations never use the proxy', async () => {
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
