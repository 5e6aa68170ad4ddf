/**
 * The demo (`npm run demo`): a whole device boot in one process, on 127.0.0.1 only.
 *
 * It starts a reference provisioning server over HTTPS and an aedes MQTT broker over TLS (both with a CA generated
 * at start) whose authenticate() verifies the Alibaba Cloud signature; boots a device with connectProvisioned();
 * publishes with the provisioned QoS and receives the message back; then stops the provisioning server and boots
 * again from the credential file, with zero provisioning requests. Exits 0 when every step worked.
 */
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import { Aedes } from 'aedes'
import { generate } from 'selfsigned'
import { createBootstrap, FileCredentialStore, type MqttBootstrap, verifyAliyunCredentials } from '../src/index.js'
import { createProvisioningHandler } from '../src/server/index.js'

const IMEI = '860000000000001'
const DEVICE = { productKey: 'a1DemoPK0001', deviceName: 'meter-0001', deviceSecret: 'demo-secret-4f9c2a7e51b3d8' }
const started = performance.now()
const step = (text: string) => console.log(`${`${Math.round(performance.now() - started)} ms`.padStart(8)}  ${text}`)

async function main(): Promise<void> {
  console.log('mqtt-bootstrap demo: provisioning server, broker and device, all on 127.0.0.1\n')

  // 1. A throwaway CA and a certificate for 127.0.0.1, signed by it.
  const ec = { keyType: 'ec', algorithm: 'sha256' } as const
  const ca = await generate([{ name: 'commonName', value: 'mqtt-bootstrap demo CA' }], {
    ...ec,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  })
  const leaf = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    ...ec,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
  })
  step('generated a demo CA and a certificate for 127.0.0.1')

  // 2. The MQTT broker: aedes over TLS, accepting only correctly signed aliyun credentials.
  const broker = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const secretOf = (pk: string, dn: string) =>
        pk === DEVICE.productKey && dn === DEVICE.deviceName ? DEVICE.deviceSecret : undefined
      const ok = verifyAliyunCredentials({ clientId: client.id, username, password }, secretOf) !== undefined
      done(ok ? null : Object.assign(new Error('bad signature'), { returnCode: 4 as const }), ok)
    },
  })
  const mqttServer = createTlsServer({ key: leaf.private, cert: leaf.cert, noDelay: true }, broker.handle)
  await listen(mqttServer)
  const brokerHost = `127.0.0.1:${(mqttServer.address() as AddressInfo).port}`
  step(`MQTT broker (aedes)   mqtts://${brokerHost}   checks the aliyun signature`)

  // 3. The provisioning server: knows one IMEI and answers its triplet and how to connect.
  let provisioningRequests = 0
  const handler = createProvisioningHandler({
    resolve: (data) => {
      provisioningRequests++
      const imei = (data as { imei?: unknown } | null)?.imei
      return imei === IMEI ? { device: DEVICE, connect: { host: brokerHost, qos: 1, cleanSession: 1 } } : undefined
    },
  })
  const httpsServer = createServer({ key: leaf.private, cert: leaf.cert, noDelay: true }, handler)
  await listen(httpsServer)
  const url = `https://127.0.0.1:${(httpsServer.address() as AddressInfo).port}/bootstrap`
  step(`provisioning server   ${url}   knows IMEI ${IMEI}`)

  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-demo-'))
  const options = {
    url,
    data: { imei: IMEI },
    tls: { ca: ca.cert },
    mqtt: { ca: ca.cert, reconnectPeriod: 0 },
  }
  try {
    // 4. First boot: nothing cached, so the device provisions, caches, signs and connects.
    console.log('\nfirst boot')
    const first = narrate(
      createBootstrap({ ...options, cache: new FileCredentialStore(join(dir, 'credentials.json')) }),
    )
    const client = await first.connect()

    // 5. Publish without a qos: the provisioned qos (1) applies. Receive it back.
    await client.subscribeAsync('demo/telemetry')
    const received = new Promise<[string, Buffer, { qos: number }]>((resolve) =>
      client.once('message', (...args) => resolve(args)),
    )
    await client.publishAsync('demo/telemetry', JSON.stringify({ t: 21.5 }))
    const [topic, payload, packet] = await received
    step(`published and received ${topic} ${payload.toString()} at qos ${packet.qos}`)
    await client.endAsync()

    // 6. Second boot with the provisioning server stopped: the cached credentials are enough.
    httpsServer.close()
    console.log('\nsecond boot (provisioning server stopped)')
    const before = provisioningRequests
    const second = narrate(
      createBootstrap({ ...options, cache: new FileCredentialStore(join(dir, 'credentials.json')) }),
    )
    const again = await second.connect()
    step(`connected again with ${provisioningRequests - before} provisioning requests`)
    await again.endAsync()
    if (packet.qos !== 1 || provisioningRequests - before !== 0) throw new Error('the demo did not go as expected')
    console.log('\ndemo finished: every step worked')
  } finally {
    await rm(dir, { recursive: true, force: true })
    httpsServer.close()
    httpsServer.closeAllConnections()
    mqttServer.close()
    await new Promise<void>((resolve) => broker.close(() => resolve()))
  }
}

/** Print the bootstrap's events as they happen (none of them carries a secret). */
function narrate(boot: MqttBootstrap): MqttBootstrap {
  boot.on('cache', (e) => step(`cache ${e.action}${e.reason ? ` (${e.reason})` : ''}`))
  boot.on('provisioning', (e) => step(`POST ${e.url} (attempt ${e.attempt})`))
  boot.on('retry', (e) => step(`retry in ${e.delayMs} ms after ${e.code}`))
  boot.on('provisioned', (e) =>
    step(
      `provisioned ${e.productKey}/${e.deviceName} from the ${e.source}: host ${e.host}, qos ${e.qos}, cleanSession ${e.cleanSession}`,
    ),
  )
  boot.on('connecting', (e) => step(`connecting to ${e.url} as ${e.clientId}`))
  boot.on('connected', (e) => step(`connected (credentials from the ${e.source})`))
  boot.on('auth-rejected', (e) => step(`broker rejected the credentials (code ${e.returnCode})`))
  boot.on('error', (e) => step(`error: ${e.error.message}`))
  return boot
}

async function listen(server: import('node:net').Server): Promise<void> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
}

// Bounded: a demo that hangs is a failed demo.
const watchdog = setTimeout(() => {
  console.error('demo timed out')
  process.exit(1)
}, 30_000)
watchdog.unref()

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error('demo failed:', error)
    process.exit(1)
  },
)
