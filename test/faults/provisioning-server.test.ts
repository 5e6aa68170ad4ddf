/** Faults of the provisioning server: each case ends connected, or fails fast with the documented code. */
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { describe, expect, test } from 'vitest'
import { credentialKey, MemoryCredentialStore } from '../../packages/mqtt-bootstrap/src/index.js'
import { payloads } from '../helpers/env.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { configAnswer, DEVICE, json, startHttpsServer, type TestServer } from '../helpers/https-server.js'
import { useFaultEnv } from './fault-env.js'

const fault = useFaultEnv()

/** The first answer is `failure`, the next ones valid. */
function firstThen(failure: (res: ServerResponse) => void): void {
  let first = true
  fault.env.server.handle((_req, res) => {
    if (first) {
      first = false
      failure(res)
    } else json(res, 200, configAnswer({ host: fault.env.broker.host }, fault.env.device))
  })
}

/** Boot with a fresh cache and fake sleeps; assert connected and the credentials cached (nothing lost). */
async function bootsConnected(overrides: Parameters<typeof fault.boot>[0] = {}) {
  const clock = new FakeClock()
  const cache = new MemoryCredentialStore()
  const { boot, events } = fault.boot({ cache, ...overrides }, { clock })
  const client = fault.env.track(await boot.connect())
  expect(client.connected).toBe(true)
  const { url, data } = fault.env.options(overrides)
  expect((await cache.get(credentialKey(url, data)))?.config.device.deviceSecret).toBe(DEVICE.deviceSecret)
  return { events, clock, retries: payloads(events, 'retry') }
}

describe('the provisioning server', () => {
  test('refuses connections (down at boot): retried until it is up', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const { port } = probe.address() as AddressInfo
    probe.close()
    await once(probe, 'close')
    let late: TestServer | undefined
    const clock = new FakeClock()
    clock.onSleep = async () => {
      if (clock.sleeps.length === 2) {
        late = await startHttpsServer(
          fault.env.tls,
          (_req, res) => json(res, 200, configAnswer({ host: fault.env.broker.host }, fault.env.device)),
          {},
          port,
        )
      }
    }
    try {
      const { boot, events } = fault.boot({ url: `https://127.0.0.1:${port}/provision` }, { clock })
      const client = fault.env.track(await boot.connect())
      expect(client.connected).toBe(true)
      expect(payloads(events, 'retry').map((e) => (e.error as { code?: string }).code)).toEqual([
        'ERR_PROVISION_NETWORK',
        'ERR_PROVISION_NETWORK',
      ])
      expect(late?.requests).toHaveLength(1)
    } finally {
      await late?.close()
    }
  })

  test('accepts and never answers: the attempt times out and is retried', async () => {
    firstThen(() => {})
    const { retries } = await bootsConnected({ timeoutMs: 300 })
    expect(retries.map((e) => (e.error as { code?: string }).code)).toEqual(['ERR_PROVISION_TIMEOUT'])
  })

  test('answers one byte per second: the attempt times out and is retried', async () => {
    firstThen((res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      const body = JSON.stringify(configAnswer({ host: fault.env.broker.host }, fault.env.device))
      let i = 0
      const timer = setInterval(() => {
        if (i < body.length && !res.destroyed) res.write(body[i++])
        else clearInterval(timer)
      }, 1000)
      res.on('close', () => clearInterval(timer))
    })
    const { retries } = await bootsConnected({ timeoutMs: 1500 })
    expect(retries.map((e) => (e.error as { code?: string }).code)).toEqual(['ERR_PROVISION_TIMEOUT'])
  })

  test('resets the connection mid-body: retried', async () => {
    firstThen((res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '400' })
      res.write('{"code":"00000","result":{"device":')
      setTimeout(() => res.socket?.destroy(), 20)
    })
    const { retries } = await bootsConnected()
    expect(retries.map((e) => (e.error as { code?: string }).code)).toEqual(['ERR_PROVISION_NETWORK'])
  })

  test('500 with an HTML page: retried', async () => {
    firstThen((res) =>
      res.writeHead(500, { 'content-type': 'text/html' }).end('<html><h1>Internal Server Error</h1></html>'),
    )
    const { retries } = await bootsConnected()
    expect(retries).toMatchObject([{ code: '77777', error: { code: 'ERR_PROVISION_HTTP_STATUS', status: 500 } }])
  })

  test('503 with Retry-After in seconds: waits exactly that long', async () => {
    firstThen((res) => res.writeHead(503, { 'retry-after': '12' }).end())
    const { clock } = await bootsConnected()
    expect(clock.sleeps).toEqual([12_000])
  })

  test('429 with Retry-After as an HTTP-date: waits until then', async () => {
    const clock = new FakeClock()
    firstThen((res) => res.writeHead(429, { 'retry-after': new Date(clock.time + 45_000).toUTCString() }).end())
    const { boot } = fault.boot({}, { clock })
    fault.env.track(await boot.connect())
    expect(clock.sleeps).toEqual([45_000])
  })

  test('200 with a body that is not JSON: fails fast with ERR_PROVISION_INVALID_RESPONSE', async () => {
    fault.env.server.handle((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('OK'))
    const clock = new FakeClock()
    const { boot } = fault.boot({}, { clock })
    await expect(boot.connect()).rejects.toMatchObject({
      code: 'ERR_PROVISION_INVALID_RESPONSE',
      resultCode: '99999',
      attempts: 1,
    })
    expect(clock.sleeps).toEqual([])
  })

  test('200 with code "77777": retried', async () => {
    firstThen((res) => json(res, 200, { code: '77777' }))
    const { retries } = await bootsConnected()
    expect(retries).toMatchObject([{ code: '77777', error: { code: 'ERR_PROVISION_SERVER_BUSY' } }])
  })

  test('a 10 MB body: fails fast with ERR_PROVISION_RESPONSE_TOO_LARGE, without reading it all', async () => {
    let written = 0
    fault.env.server.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      const chunk = Buffer.alloc(64 * 1024, 0x20)
      const pump = () => {
        while (written < 10 * 1024 * 1024 && !res.destroyed) {
          written += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        res.end()
      }
      pump()
    })
    const started = performance.now()
    const { boot } = fault.boot({}, { clock: new FakeClock() })
    await expect(boot.connect()).rejects.toMatchObject({ code: 'ERR_PROVISION_RESPONSE_TOO_LARGE', attempts: 1 })
    expect(performance.now() - started).toBeLessThan(3000)
    expect(written).toBeLessThan(10 * 1024 * 1024)
  })

  test('a certificate for another host name: fails closed, never retried, never retried insecurely', async () => {
    const wrong = await startHttpsServer({ ...fault.env.tls, ...fault.env.tls.wrongHost }, (_req, res) =>
      json(res, 200, configAnswer({ host: fault.env.broker.host }, fault.env.device)),
    )
    try {
      const clock = new FakeClock()
      const { boot } = fault.boot({ url: wrong.url }, { clock })
      await expect(boot.connect()).rejects.toMatchObject({
        code: 'ERR_PROVISION_TLS',
        resultCode: '77777',
        attempts: 1,
      })
      expect(wrong.requests).toHaveLength(0)
      expect(clock.sleeps).toEqual([])
    } finally {
      await wrong.close()
    }
  })
})
