/** `heap-process.ts <raw|ours> <brokerPort> <clients>`: prints the heap bytes per connected client (--expose-gc). */
import mqtt, { type MqttClient } from 'mqtt'
import { connectProvisioned } from 'mqtt-bootstrap'
import { deviceName, signedFor, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'

const [kind, port, count] = process.argv.slice(2)
const clients = Number(count)
const host = `127.0.0.1:${port}`
const gc = globalThis.gc as () => void

async function connect(i: number): Promise<MqttClient> {
  const name = deviceName(i)
  if (kind === 'raw') {
    return mqtt.connectAsync(`mqtt://${host}`, { ...signedFor(name), reconnectPeriod: 1000 })
  }
  // A warm cache (as after the first boot), and the session supervision that comes with every client.
  const { cache, data } = await warmCache(name, host)
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
