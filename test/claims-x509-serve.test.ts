import { createHmac, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { PointAccess } from '../packages/mqtt-bootstrap/src/index.js'
import { runTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { DEVICE } from './helpers/https-server.js'
import { useServeProcesses } from './helpers/serve.js'
import { type Authority, authority, deviceCertificate } from './helpers/x509.js'

const CLI = 'packages/mqtt-bootstrap-server/src/cli/index.ts'
const IMEI = '860000000000001'
const OTHER = '860000000000002'
const GROUP_KEY = randomBytes(32).toString('base64')
const derive = (id: string) => createHmac('sha256', Buffer.from(GROUP_KEY, 'base64')).update(id).digest('base64')
for (const secret of [GROUP_KEY, derive(IMEI)]) suite.secret(secret)
suite.secret(DEVICE.deviceSecret)

let dir: string
let factory: Authority
let factoryFile: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-x509-serve-'))
  factory = await authority('factory CA')
  factoryFile = join(dir, 'factory-ca.pem')
  writeFileSync(factoryFile, factory.cert)
  writeFileSync(join(dir, 'group.key'), `${GROUP_KEY}\n`, { mode: 0o600 })
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

let files = 0
function registryFile(attestation: unknown): string {
  const path = join(dir, `devices-${++files}.json`)
  writeFileSync(
    path,
    JSON.stringify({
      version: 1,
      attestation,
      defaults: { connect: { host: 'mqtts://broker.example:8883', qos: 1, cleanSession: 1 } },
      devices: [
        { match: { imei: IMEI }, device: DEVICE },
        { match: { imei: OTHER }, device: DEVICE },
      ],
    }),
  )
  return path
}

describe('serve --client-ca', () => {
  const processes = useServeProcesses()

  async function serve(registry: string, ...more: string[]) {
    const caOut = join(dir, `ca-${++files}.pem`)
    const started = await processes.serve(['--registry', registry, '--port', '0', '--ca-out', caOut, ...more])
    return { ...started, ca: readFileSync(caOut, 'utf8') }
  }

  test('a factory certificate naming the IMEI proves the claim; none, or another device’s, does not; HMAC still works', async () => {
    const server = await serve(registryFile({ groupKeyFile: 'group.key' }), '--client-ca', factoryFile)
    expect(server.output()).toMatch(/claims: or a client certificate from the CA in .*factory-ca\.pem/)
    const device = await deviceCertificate(factory, IMEI)
    expect(await new PointAccess({ tls: { ca: server.ca, ...device } }).request(server.url, { imei: IMEI })).toBe(
      '00000',
    )
    const post = async (imei: string, client?: { cert: string; key: string }) => {
      const agent = new Agent({ connect: { ca: server.ca, ...client } })
      try {
        const response = await request(server.url, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ imei }),
        })
        return { status: response.statusCode, body: await response.body.json() }
      } finally {
        await agent.close()
      }
    }
    expect(await post(IMEI)).toEqual({ status: 401, body: { code: '10004' } })
    expect(await post(OTHER, device)).toEqual({ status: 401, body: { code: '10004' } })
    const rogue = await deviceCertificate(await authority('factory CA'), IMEI)
    expect(await post(IMEI, rogue)).toEqual({ status: 401, body: { code: '10004' } })
    const signed = new PointAccess({ tls: { ca: server.ca }, attestation: { keyId: IMEI, key: derive(IMEI) } })
    expect(await signed.request(server.url, { imei: IMEI })).toBe('00000')
    server.child.kill('SIGTERM')
    const [code] = (await once(server.child, 'close')) as [number | null]
    expect(code).toBe(0)
    expect(server.output()).toMatch(/POST \/bootstrap 200 00000/)
    expect(server.output()).toMatch(/POST \/bootstrap 401 10004/)
  })

  test('without --client-ca a certificate proves nothing', async () => {
    const server = await serve(registryFile({ groupKeyFile: 'group.key' }))
    const device = await deviceCertificate(factory, IMEI)
    expect(await new PointAccess({ tls: { ca: server.ca, ...device } }).request(server.url, { imei: IMEI })).toBe(
      '10004',
    )
  })

  test('a --client-ca that is not PEM certificates, or one for a registry of unsigned claims, is exit 2', async () => {
    const keyFile = join(dir, 'not-a-ca.pem')
    writeFileSync(keyFile, factory.key, { mode: 0o600 })
    const registry = registryFile({ groupKeyFile: 'group.key' })
    const bad = await runTs(CLI, ['serve', '--registry', registry, '--port', '0', '--client-ca', keyFile], {
      timeoutMs: 30_000,
    })
    expect(bad.code).toBe(2)
    expect(bad.output).toMatch(/--client-ca: .*not-a-ca\.pem is a private key, not a certificate/)
    expect(bad.output).not.toMatch(/listening/)
    expect(bad.output).not.toContain(factory.key.split('\n')[1])
    const unsigned = await runTs(
      CLI,
      ['serve', '--registry', registryFile('none'), '--port', '0', '--client-ca', factoryFile],
      { timeoutMs: 30_000 },
    )
    expect(unsigned.code).toBe(2)
    expect(unsigned.output).toMatch(/--client-ca: .*"attestation": "none"/)
  })
})
