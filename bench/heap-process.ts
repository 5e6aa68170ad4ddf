/**
 * `heap-process.ts <raw|ours|ours-no-session|stores> <brokerPort> <clients> [aliyun|plain]`: prints the heap bytes per
 * connected client (--expose-gc). `ours-no-session` is `reconnect: false` (no session supervision), to tell the
 * session's share from the rest of the bootstrap's; `stores` holds only the warm caches `ours` gives its clients (one
 * MemoryCredentialStore each, the bench's, not the library's share). The broker must check the same auth
 * (BROKER_AUTH=plain for plain).
 */
import mqtt, { type MqttClient } from 'mqtt'
import { connectProvisioned } from 'mqtt-bootstrap'
import { deviceName, deviceSecret, PRODUCT_KEY, signedFor, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'

const [kind, port, count, auth = 'aliyun'] = process.argv.slice(2)
const clients = Number(count)
const host = `127.0.0.1:${port}`
const gc = globalThis.gc as () => void

async function connect(i: number): Promise<MqttClient> {
  const name = deviceName(i)
  if (kind === 'stores') return (await warmCache(name, host)) as unknown as MqttClient
  if (kind === 'raw') {
    const credentials =
      auth === 'plain'
        ? { clientId: `${PRODUCT_KEY}.${name}`, username: name, password: deviceSecret(name) }
        : signedFor(name)
    return mqtt.connectAsync(`mqtt://${host}`, { ...credentials, reconnectPeriod: 1000 })
  }
  // A warm cache (as after the first boot), and the session supervision that comes with every client.
  const { cache, data } = await warmCache(name, host)
  return connectProvisioned({
    url,
    data,
    cache,
    auth: auth as 'plain' | 'aliyun',
    broker: { protocol: 'mqtt' },
    ...(kind === 'ours-no-session' ? { reconnect: false as const } : {}),
  })
}

// Warm up the code paths, then measure a batch.
for (const client of await Promise.all(Array.from({ length: 20 }, (_, i) => connect(100_000 + i))))
  await client.endAsync?.(true)
gc()
gc()
const before = process.memoryUsage().heapUsed
const connected = await Promise.all(Array.from({ length: clients }, (_, i) => connect(i)))
gc()
gc()
const after = process.memoryUsage().heapUsed
console.log((after - before) / clients)
await Promise.all(connected.map((client) => client.endAsync?.(true)))
process.exit(0)
