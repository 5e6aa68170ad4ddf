/**
 * `npm run bench:overhead`: the CPU a cached boot costs beyond a raw mqtt.js connect, in microseconds (process CPU
 * time over many boots, so it is steadier than wall-clock ratios on a shared machine). Aliyun signing, broker in its
 * own process; `npm run bench`'s cached section measures the same with plain auth and the broker in this process.
 */
import mqtt from 'mqtt'
import { connectProvisioned } from 'mqtt-bootstrap'
import { cpuPerBoot } from './cached.js'
import { deviceName, signedFor, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'

const broker = await startProcess('bench/broker-process.ts')
const host = `127.0.0.1:${broker.port}`
const name = deviceName(1)
const { cache, data } = await warmCache(name, host)
const signed = () => signedFor(name)
const cpu = await cpuPerBoot(
  {
    ours: async () =>
      (await connectProvisioned({ url, data, cache, broker: { protocol: 'mqtt' }, reconnect: false })).endAsync(),
    raw: async () => (await mqtt.connectAsync(`mqtt://${host}`, { ...signed(), reconnectPeriod: 0 })).endAsync(),
  },
  1000,
  5,
)
console.log(
  `CPU per cached boot: mqtt-bootstrap ${cpu.ours.toFixed(0)} µs, raw mqtt.js ${cpu.raw.toFixed(0)} µs, +${(cpu.ours - cpu.raw).toFixed(0)} µs`,
)
await broker.stop()
process.exit(0)
