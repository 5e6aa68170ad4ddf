/** `heap-process.ts <raw|ours> <brokerPort> <clients>`: prints the heap bytes per connected client (--expose-gc). */
import mqtt, { type MqttClient } from 'mqtt'
import { connectProvisioned, credentialKey, MemoryCredentialStore, signAliyun } from 'mqtt-bootstrap'
import { deviceName, deviceSecret, PRODUCT_KEY } from './lib/fleet-secrets.js'

const [kind, port, count] = process.argv.slice(2)
const clients = Number(count)
const host = `127.0.0.1:${port}`
const gc = globalThis.gc as () => void
const url = 'https://127.0.0.1:1/unused'

async function connect(i: number): Promise<MqttClient> {
  const name = deviceName(i)
  if (kind === 'raw') {
    const signed = signAliyun({
      cid: `${PRODUCT_KEY}.${name}`,
      productKey: PRODUCT_KEY,
      deviceName: name,
      deviceSecret: deviceSecret(name),
      timestamp: Date.now(),
      signMethod: 'hmacsha256',
      secureMode: 3,
    })
    return mqtt.connectAsync(`mqtt://${host}`, { ...signed, reconnectPeriod: 1000 })
  }
  // A warm cache (as after the first boot), and the session supervision that comes with every client.
  const cache = new MemoryCredentialStore()
  const data = { imei: name }
  await cache.set(credentialKey(url, data), {
    savedAt: 1,
    config: {
      device: { productKey: PRODUCT_KEY, deviceName: name, deviceSecret: deviceSecret(name), productSecret: null },
      connect: { qos: 1, host, cleanSession: 1 },
    },
  })
  return connectProvisioned({ url, data, cache, broker: { protocol: 'mqtt' } })
}

// Warm up the code paths, then measure a batch.
for (const client of await Promise.all(Array.from({ length: 20 }, (_, i) => connect(100_000 + i))))
  await client.endAsync(true)
gc()
gc()
const before = process.memoryUsage().heapUsed
const connected = await Promise.all(Array.from({ length: clients }, (_, i) => connect(i)))
gc()
gc()
const after = process.memoryUsage().heapUsed
console.log((after - before) / clients)
await Promise.all(connected.map((client) => client.endAsync(true)))
process.exit(0)
