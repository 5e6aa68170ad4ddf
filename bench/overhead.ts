/**
 * `npm run bench:overhead`: the CPU a cached boot costs beyond a raw mqtt.js connect, in microseconds (process CPU
 * time over many boots, so it is steadier than wall-clock ratios on a shared machine). Broker in its own process.
 */
import mqtt from 'mqtt'
import { connectProvisioned } from 'mqtt-bootstrap'
import { deviceName, signedFor, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'

const broker = await startProcess('bench/broker-process.ts')
const host = `127.0.0.1:${broker.port}`
const name = deviceName(1)
const { cache, data } = await warmCache(name, host)
const signed = () => signedFor(name)
const variants = {
  ours: async () =>
    (await connectProvisioned({ url, data, cache, broker: { protocol: 'mqtt' }, reconnect: false })).endAsync(),
  raw: async () => (await mqtt.connectAsync(`mqtt://${host}`, { ...signed(), reconnectPeriod: 0 })).endAsync(),
}
const cpu: Record<string, number[]> = { ours: [], raw: [] }
for (let round = 0; round < 6; round++) {
  for (const [name, boot] of Object.entries(variants)) {
    for (let i = 0; i < 300; i++) await boot() // warm
    const before = process.cpuUsage()
    for (let i = 0; i < 1000; i++) await boot()
    const used = process.cpuUsage(before)
    if (round > 0) cpu[name]?.push((used.user + used.system) / 1000)
  }
}
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number
const ours = median(cpu.ours ?? [])
const raw = median(cpu.raw ?? [])
console.log(
  `CPU per cached boot: mqtt-bootstrap ${ours.toFixed(0)} µs, raw mqtt.js ${raw.toFixed(0)} µs, +${(ours - raw).toFixed(0)} µs`,
)
await broker.stop()
process.exit(0)
