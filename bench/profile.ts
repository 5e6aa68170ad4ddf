/**
 * `npm run bench:profile`: where a cached boot spends its CPU. Runs 3000 cached boots against the bench broker (in
 * its own process) under the V8 sampling profiler and prints the functions with the most samples; the profile is
 * written to bench/results/ (open it in Chrome DevTools). This is how the figures in docs/performance.md were
 * investigated.
 */

import { mkdir, writeFile } from 'node:fs/promises'
import { Session } from 'node:inspector/promises'
import { connectProvisioned } from 'mqtt-bootstrap'
import { deviceName, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
}

const broker = await startProcess('bench/broker-process.ts')
const host = `127.0.0.1:${broker.port}`
const name = deviceName(1)
const { cache, data } = await warmCache(name, host)
const boot = async () =>
  (await connectProvisioned({ url, data, cache, broker: { protocol: 'mqtt' }, reconnect: false })).endAsync()
for (let i = 0; i < 500; i++) await boot()

const session = new Session()
session.connect()
await session.post('Profiler.enable')
await session.post('Profiler.start')
for (let i = 0; i < 3000; i++) await boot()
const { profile } = (await session.post('Profiler.stop')) as { profile: { nodes: ProfileNode[]; samples: number[] } }
await mkdir('bench/results', { recursive: true })
await writeFile('bench/results/cached-boot.cpuprofile', JSON.stringify(profile))

const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const self = new Map<string, number>()
for (const id of profile.samples) {
  const frame = byId.get(id)?.callFrame
  if (frame === undefined || frame.functionName === '(idle)') continue
  const key = `${frame.functionName || '(anonymous)'} ${frame.url.replace(/.*node_modules\//, '').replace(/^file:\/\/.*?\/(dist|src)\//, '$1/')}:${frame.lineNumber}`
  self.set(key, (self.get(key) ?? 0) + 1)
}
const total = [...self.values()].reduce((a, b) => a + b, 0)
for (const [key, count] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
  console.log(`${((count / total) * 100).toFixed(1).padStart(5)}%  ${key}`)
}
await broker.stop()
process.exit(0)
