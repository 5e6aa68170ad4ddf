/**
 * `mqtt-bootstrap demo` (and `npm run demo`): a whole device boot in one process, on 127.0.0.1 only.
 *
 * It starts the reference provisioning server over HTTPS and an aedes MQTT broker over TLS (both with a CA generated
 * at start) whose authenticate() verifies the Alibaba Cloud signature. The registry declares signed claims with a group
 * key generated for the run, and the device signs its claim with its key derived from it (issue 14: an IMEI alone gets
 * nothing). It boots the device with createBootstrap();
 * publishes with the provisioned QoS and receives the message back; then stops the provisioning server and boots
 * again from the credential file, with zero provisioning requests.
 */
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import type { AddressInfo, Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import {
  createBootstrap,
  deriveDeviceKey,
  FileCredentialStore,
  type MqttBootstrap,
  PointAccess,
  verifyAliyunCredentials,
} from 'mqtt-bootstrap'
import { createProvisioningHandler } from '../handler.js'
import { DeviceRegistry } from '../registry.js'
import { generateCertificates } from './certificates.js'
import { EXIT } from './io.js'

const IMEI = '860000000000001'
const DEVICE = { productKey: 'a1DemoPK0001', deviceName: 'meter-0001', deviceSecret: 'demo-secret-4f9c2a7e51b3d8' }

export async function runDemo(): Promise<number> {
  const started = performance.now()
  const step = (text: string) => console.log(`${`${Math.round(performance.now() - started)} ms`.padStart(8)}  ${text}`)
  // aedes is a dependency of this package, imported only here; an install without it gets a clear message.
  const aedes = await import('aedes').catch(() => undefined)
  if (aedes === undefined) {
    console.error('The demo needs the aedes MQTT broker: npm install aedes')
    return EXIT.FAILED
  }
  console.log('mqtt-bootstrap demo: provisioning server, broker and device, all on 127.0.0.1\n')

  // 1. A throwaway CA and a certificate for 127.0.0.1, signed by it.
  const tls = await generateCertificates(['127.0.0.1'])
  step('generated a demo CA and a certificate for 127.0.0.1')

  // 2. The MQTT broker: aedes over TLS, accepting only correctly signed aliyun credentials.
  const broker = await aedes.Aedes.createBroker({
    authenticate(client, username, password, done) {
      const secretOf = (pk: string, dn: string) =>
        pk === DEVICE.productKey && dn === DEVICE.deviceName ? DEVICE.deviceSecret : undefined
      const ok = verifyAliyunCredentials({ clientId: client.id, username, password }, secretOf) !== undefined
      done(ok ? null : Object.assign(new Error('bad signature'), { returnCode: 4 as const }), ok)
    },
  })
  const mqttServer = createTlsServer({ key: tls.key, cert: tls.cert, noDelay: true }, broker.handle)
  await listen(mqttServer)
  const brokerHost = `127.0.0.1:${(mqttServer.address() as AddressInfo).port}`
  step(`MQTT broker (aedes)   mqtts://${brokerHost}   checks the aliyun signature`)

  // 3. The reference provisioning server over a one-device registry.
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-demo-'))
  const registryPath = join(dir, 'devices.json')
  // What the factory does once (`mqtt-bootstrap keys group`), and per device (`keys derive`): here, for this run only.
  const groupKey = randomBytes(64).toString('base64')
  const registry = {
    version: 1,
    attestation: { groupKey, identity: 'imei' },
    devices: [{ match: { imei: IMEI }, device: DEVICE, connect: { host: brokerHost, qos: 1, cleanSession: 1 } }],
  }
  await writeFile(registryPath, JSON.stringify(registry), { mode: 0o600 })
  let provisioningRequests = 0
  const devices = new DeviceRegistry(registryPath)
  const handler = createProvisioningHandler({
    resolve: (data, request) => {
      provisioningRequests++
      // The request too: the registry hands a configuration only to a claim the verifier has accepted.
      return devices.resolve(data, request)
    },
    verify: devices.verifier(),
  })
  const httpsServer = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, handler)
  await listen(httpsServer)
  const url = `https://127.0.0.1:${(httpsServer.address() as AddressInfo).port}/bootstrap`
  step(`provisioning server   ${url}   knows IMEI ${IMEI}, wants its claim signed`)

  const attestation = { keyId: IMEI, key: deriveDeviceKey(groupKey, IMEI) }
  const options = {
    url,
    data: { imei: IMEI },
    attestation,
    tls: { ca: tls.ca },
    mqtt: { ca: tls.ca },
    reconnect: false,
  } as const
  try {
    // 4. First boot: nothing cached, so the device provisions, signs, connects and caches.
    console.log('\nfirst boot')
    const first = narrate(
      createBootstrap({ ...options, cache: new FileCredentialStore(join(dir, 'credentials.json')) }),
      step,
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

    // 6. What knowing the IMEI alone gets: the same request, unsigned, is refused without a configuration.
    const unsigned = new PointAccess({ tls: { ca: tls.ca } })
    const refusal = await unsigned.request(url, { imei: IMEI })
    step(`the same claim unsigned (the IMEI alone): refused with "${refusal}"`)

    // 7. Second boot with the provisioning server stopped: the cached credentials are enough.
    httpsServer.close()
    console.log('\nsecond boot (provisioning server stopped)')
    const before = provisioningRequests
    const second = narrate(
      createBootstrap({ ...options, cache: new FileCredentialStore(join(dir, 'credentials.json')) }),
      step,
    )
    const again = await second.connect()
    step(`connected again with ${provisioningRequests - before} provisioning requests`)
    await again.endAsync()
    if (packet.qos !== 1 || provisioningRequests - before !== 0 || refusal !== '10004') {
      console.error('\nthe demo did not go as expected')
      return EXIT.FAILED
    }
    console.log('\ndemo finished: every step worked')
    return EXIT.OK
  } finally {
    await rm(dir, { recursive: true, force: true })
    httpsServer.close()
    httpsServer.closeAllConnections()
    mqttServer.close()
    await new Promise<void>((resolve) => broker.close(() => resolve()))
  }
}

/** Print the bootstrap's events as they happen (none of them carries a secret). */
function narrate(boot: MqttBootstrap, step: (text: string) => void): MqttBootstrap {
  boot.on('cache', (e) => step(`cache ${e.action}${e.reason ? ` (${e.reason})` : ''}`))
  boot.on('provisioning', (e) => step(`POST ${e.url} (attempt ${e.attempt}), signed with the device's key`))
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

async function listen(server: Server): Promise<void> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
}
