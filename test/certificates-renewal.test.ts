/**
 * Certificate renewal (issue 18), the cases that need no timer to fire: the options refused at the door, and a fake
 * clock whose sleeps pass at once (as the retry tests use) never renewing, since the renewal waits real time and only
 * reads the clock. test/certificates-renewal-aedes.slow.test.ts renews in real time against aedes,
 * test/certificates-renewal.slow.test.ts against mosquitto.
 */
import { once } from 'node:events'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type BootstrapOptions, InvalidOptionError } from '../packages/mqtt-bootstrap/src/index.js'
import { createProvisioningHandler, issueCertificates } from '../packages/mqtt-bootstrap-server/src/index.js'
import { boot } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { type MtlsBroker, startMtlsBroker } from './helpers/mtls-broker.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { type Authority, authority } from './helpers/x509.js'

let tls: TlsFixture
let ca: Authority
let broker: MtlsBroker
let server: https.Server
let url: string
const requests: unknown[] = []
const clients: MqttClient[] = []

beforeAll(async () => {
  tls = await tlsFixture()
  ca = await authority('device CA')
  broker = await startMtlsBroker(tls, ca.cert)
  const handler = createProvisioningHandler({
    resolve: (data) => {
      requests.push(data)
      return {
        device: { productKey: 'a1RenewPK', deviceName: 'renew-device-002' },
        connect: { host: broker.host, qos: 1, cleanSession: 1 },
      }
    },
    issue: issueCertificates({ ca, validitySeconds: 86_400 }),
  })
  server = https.createServer({ key: tls.key, cert: tls.cert }, handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/provision`
})

afterAll(async () => {
  for (const client of clients.splice(0)) await client.endAsync(true)
  server?.closeAllConnections()
  server?.close()
  await broker?.close()
})

function options(extra: Record<string, unknown> = {}): BootstrapOptions {
  return {
    url,
    data: { imei: '860000000000020' },
    tls: { ca: tls.ca },
    mqtt: { ca: tls.ca },
    certificate: true,
    ...extra,
  } as BootstrapOptions
}

test('a fake clock whose sleeps pass at once does not renew: the renewal waits real time', async () => {
  const clock = new FakeClock()
  clock.time = Date.now() // the certificate is issued by the real time; this clock never moves by itself
  const { boot: bootstrap, events } = boot(options(), { clock })
  clients.push(await bootstrap.connect())
  await new Promise((resolve) => setTimeout(resolve, 1500))
  expect(events.filter(([name]) => name === 'renewing' || name === 'error')).toEqual([])
  expect(requests).toHaveLength(1)
  expect(broker.clients).toHaveLength(1)
})

test.each([
  [{ renewBeforeMs: -1 }, 'renewBeforeMs'],
  [{ renewBeforeMs: 1.5 }, 'renewBeforeMs'],
  [{ renewBeforeMs: '60000' }, 'renewBeforeMs'],
  [{ renewBeforeMs: 11 * 365 * 86_400_000 }, 'renewBeforeMs'],
  [{ certificate: { renewBeforeMs: Number.POSITIVE_INFINITY } }, 'certificate.renewBeforeMs'],
])('%o is refused at the door', (extra, option) => {
  expect(() => boot(options(extra))).toThrow(InvalidOptionError)
  expect(() => boot(options(extra))).toThrow(new RegExp(`\`${option.replace('.', '\\.')}\``))
})
