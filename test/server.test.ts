import { once } from 'node:events'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import {
  createProvisioningHandler,
  type Resolution,
  SERVER_CODES,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { DEVICE } from './helpers/https-server.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'

let tls: TlsFixture
let server: Server
let url: string
let resolve: (data: unknown) => Resolution | undefined | Promise<Resolution | undefined>
const errors: unknown[] = []

beforeAll(async () => {
  tls = await tlsFixture()
  const handler = createProvisioningHandler({
    resolve: (data) => resolve(data),
    maxBodyBytes: 1024,
    onError: (error) => errors.push(error),
  })
  server = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`
})
afterAll(() => {
  server.closeAllConnections()
  server.close()
})

const pointAccess = () => new PointAccess({ tls: { ca: tls.ca } })
const raw = (init: { method?: string; headers?: Record<string, string>; body?: string }) =>
  request(url, {
    ...init,
    method: (init.method ?? 'POST') as 'POST',
    dispatcher: new Agent({ connect: { ca: tls.ca } }),
  })

test('answers a known device with "00000" and its configuration, and the device accepts it', async () => {
  resolve = (data) =>
    (data as { imei?: string }).imei === '1'
      ? { device: DEVICE, connect: { host: 'b.example:1883', qos: 0 } }
      : undefined
  const pa = pointAccess()
  expect(await pa.request(url, { imei: '1' })).toBe('00000')
  expect(pa.deviceConfig).toEqual({
    device: { ...DEVICE, productSecret: null },
    connect: { host: 'b.example:1883', qos: 0, cleanSession: 1 },
  })
})

test('an unknown device is refused with UNKNOWN_DEVICE', async () => {
  resolve = () => undefined
  expect(await pointAccess().request(url, { imei: 'nope' })).toBe(SERVER_CODES.UNKNOWN_DEVICE)
})

test('a resolver refusal code passes through', async () => {
  resolve = () => ({ code: '20001' })
  expect(await pointAccess().request(url, {})).toBe('20001')
})

test('a failing resolver is "77777" (HTTP 500) and reported to onError', async () => {
  resolve = () => Promise.reject(new Error('registry down'))
  const pa = pointAccess()
  expect(await pa.request(url, {})).toBe('77777')
  expect(pa.lastError?.status).toBe(500)
  expect(errors.at(-1)).toMatchObject({ message: 'registry down' })
})

test('an invalid configuration from the resolver is never sent', async () => {
  resolve = () => ({ device: { ...DEVICE, deviceName: '' }, connect: { host: 'b' } })
  expect(await pointAccess().request(url, {})).toBe('77777')
  expect(String(errors.at(-1))).toMatch(/deviceName is empty/)
})

test('bad requests get 4xx answers with BAD_REQUEST, and answers are not cacheable', async () => {
  const get = await raw({ method: 'GET' })
  expect([get.statusCode, (await get.body.json()) as object]).toEqual([405, { code: '10002', message: 'use POST' }])
  const text = await raw({ headers: { 'content-type': 'text/plain' }, body: 'x' })
  expect(text.statusCode).toBe(415)
  await text.body.dump()
  const big = await raw({
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pad: 'x'.repeat(5000) }),
  })
  expect(big.statusCode).toBe(413)
  await big.body.dump()
  const broken = await raw({ headers: { 'content-type': 'application/json' }, body: '{"imei":' })
  expect(broken.statusCode).toBe(400)
  expect(broken.headers['cache-control']).toBe('no-store')
  await broken.body.dump()
})

test('a refusal code from resolve is checked: a reserved or malformed one is never sent', async () => {
  for (const code of ['00000', '77777', '99999', '', 'x'.repeat(65), 'a\nb']) {
    resolve = () => ({ code })
    const pa = pointAccess()
    expect(await pa.request(url, {}), JSON.stringify(code)).toBe('77777')
    expect(String(errors.at(-1))).toMatch(/refusal code/)
  }
})

test('a streamed body over the limit (no Content-Length) is 413', async () => {
  resolve = () => undefined
  const chunks = Readable.from(Array.from({ length: 10 }, () => 'x'.repeat(500)))
  const response = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: chunks,
    dispatcher: new Agent({ connect: { ca: tls.ca } }),
  }).catch((error: unknown) => error as Error)
  // The server answers 413 and closes; depending on timing the client sees the answer or the reset.
  if (response instanceof Error) expect(response.message).toMatch(/closed|reset|socket/i)
  else expect(response.statusCode).toBe(413)
})

test('a body that does not arrive in time is 408, and the connection is closed', async () => {
  const slowHandler = createProvisioningHandler({ resolve: () => undefined, bodyTimeoutMs: 100 })
  const slow = createServer({ key: tls.key, cert: tls.cert }, slowHandler)
  slow.listen(0, '127.0.0.1')
  await once(slow, 'listening')
  try {
    const { port } = slow.address() as AddressInfo
    const socket = (await import('node:tls')).connect({ port, host: '127.0.0.1', ca: tls.ca })
    await once(socket, 'secureConnect')
    socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"imei":')
    let reply = ''
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString()
    })
    await once(socket, 'close')
    expect(reply).toMatch(/^HTTP\/1\.1 408/)
    expect(reply).toContain('"10002"')
  } finally {
    slow.closeAllConnections()
    slow.close()
  }
})

test('a body already read in front of the handler (Express body parser, Fastify) is used', async () => {
  const handler = createProvisioningHandler({
    resolve: (data) => ((data as { imei?: string }).imei === '1' ? { code: '20002' } : undefined),
  })
  const front = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    let text = ''
    req.on('data', (chunk: Buffer) => {
      text += chunk.toString()
    })
    req.on('end', () => {
      if (req.url === '/express') handler(Object.assign(req, { body: JSON.parse(text) }), res)
      else if (req.url === '/fastify') handler(req, res, JSON.parse(text))
      else handler(req, res) // the body is gone: a clear 400, not a hang
    })
  })
  front.listen(0, '127.0.0.1')
  await once(front, 'listening')
  try {
    const base = `https://127.0.0.1:${(front.address() as AddressInfo).port}`
    const pa = pointAccess()
    expect(await pa.request(`${base}/express`, { imei: '1' })).toBe('20002')
    expect(await pa.request(`${base}/fastify`, { imei: '1' })).toBe('20002')
    const lost = await request(`${base}/lost`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      dispatcher: new Agent({ connect: { ca: tls.ca } }),
    })
    expect(lost.statusCode).toBe(400)
    expect(await lost.body.text()).toContain('third argument')
  } finally {
    front.closeAllConnections()
    front.close()
  }
})
