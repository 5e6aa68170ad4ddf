/**
 * Bench 4: fleet power-on. N devices boot at once (each with its own empty cache, its own TLS connection) against the
 * reference provisioning server and an aedes broker, both in processes of their own; 20 % of the devices get
 * 503 + Retry-After: 1 on their first request. Measured: time until all are connected, each device's boot time
 * (p50/p99), devices lost (must be 0), the provisioning server's peak requests per second; with start-up jitter
 * off and on. The baseline: the same N raw mqtt.js clients connecting at once, credentials in hand.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PerformanceObserver } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { createSecureContext } from 'node:tls'
import mqtt, { type MqttClient } from 'mqtt'
import { connectProvisioned, MemoryCredentialStore, signAliyun } from 'mqtt-bootstrap'
import { Agent, fetch } from 'undici'
import { deviceName, signedFor } from './lib/fleet-secrets.js'
import { type ServerProcess, startProcess } from './lib/processes.js'
import { percentile, round } from './lib/stats.js'

export interface FleetRun {
  devices: number
  kind: 'raw' | 'hand-rolled' | 'jitter-off' | 'jitter-on'
  /** ms from the start until the last device connected. */
  totalMs: number
  p50Ms: number
  p99Ms: number
  lost: number
  /** Provisioning requests in the busiest second. */
  peakRps: number
  requests: number
  /** CPU time each process spent on the run, ms: where the time goes. */
  cpuMs: { devices: number; provisioning: number; broker: number }
  /** The devices' process's garbage-collection pauses (ms): main-thread time, part of its CPU time. */
  devicesGcMs: number
  /** Devices connected at each 100 ms tick, and provisioning requests per 100 ms (for the chart). */
  connectedOverTime: number[]
  requestsOverTime: number[]
}

/** What a fleet run measures itself; the CPU figures are added around it. */
type Measured = Omit<FleetRun, 'cpuMs' | 'devicesGcMs'>

const TICK_MS = 100

/** The start-up jitter window: wide enough to spread the fleet, short against the boot it protects. */
export const jitterFor = (devices: number) => Math.min(5000, Math.max(1000, devices / 2))

export async function benchFleet(sizes: number[]): Promise<FleetRun[]> {
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-fleet-'))
  const broker = await startProcess('bench/broker-process.ts')
  const brokerHost = `127.0.0.1:${broker.port}`
  const caFile = join(dir, 'ca.pem')
  const provisioning = await startProcess('bench/provisioning-process.ts', {
    BROKER_HOST: brokerHost,
    CA_FILE: caFile,
    REFUSE_FIRST: '0.2',
    RETRY_AFTER: '1',
  })
  const ca = await readFile(caFile, 'utf8')
  const url = `https://127.0.0.1:${provisioning.port}/bootstrap`
  const runs: FleetRun[] = []
  const cpuNow = async () => {
    const ms = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1000
    return {
      devices: ms(process.cpuUsage()),
      provisioning: ms(await provisioning.ask<NodeJS.CpuUsage>('cpu')),
      broker: ms(await broker.ask<NodeJS.CpuUsage>('cpu')),
    }
  }
  const withCpu = async (run: () => Promise<Measured>): Promise<FleetRun> => {
    let gcMs = 0
    const gc = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) gcMs += entry.duration
    })
    gc.observe({ entryTypes: ['gc'] })
    const before = await cpuNow()
    const result = await run()
    const after = await cpuNow()
    for (const entry of gc.takeRecords()) gcMs += entry.duration // still queued for the observer
    gc.disconnect()
    return {
      ...result,
      devicesGcMs: Math.round(gcMs),
      cpuMs: {
        devices: Math.round(after.devices - before.devices),
        provisioning: Math.round(after.provisioning - before.provisioning),
        broker: Math.round(after.broker - before.broker),
      },
    }
  }
  try {
    for (const devices of sizes) {
      runs.push(await withCpu(() => rawFleet(devices, brokerHost)))
      runs.push(await withCpu(() => handRolledFleet(devices, url, ca, provisioning)))
      for (const jitter of [false, true]) {
        runs.push(await withCpu(() => provisionedFleet(devices, url, ca, jitter, provisioning)))
      }
    }
    return runs
  } finally {
    await Promise.all([broker.stop(), provisioning.stop()])
    await rm(dir, { recursive: true, force: true })
  }
}

/** N raw mqtt.js clients at once, credentials in hand: what the fleet would cost without provisioning. */
async function rawFleet(devices: number, brokerHost: string): Promise<Measured> {
  const credentials = Array.from({ length: devices }, (_, i) => signedFor(deviceName(i)))
  return measure(devices, 'raw', undefined, async (i) =>
    mqtt.connectAsync(`mqtt://${brokerHost}`, { ...credentials[i], reconnectPeriod: 1000, connectTimeout: 60_000 }),
  )
}

/**
 * N devices provisioning by hand, as an app without mqtt-bootstrap would: a fetch POST on a TLS connection of its own,
 * waiting out a 503's Retry-After, then raw mqtt.connectAsync with credentials it signs. No cache, no validation,
 * no jitter, no retry of other failures (a device that fails is lost, and left out of the times): the least any
 * HTTPS provisioning costs, to tell what provisioning costs from what the library adds.
 */
async function handRolledFleet(
  devices: number,
  url: string,
  ca: string,
  provisioning: ServerProcess,
): Promise<Measured> {
  provisioning.tell('reset')
  // One secure context for the fleet, as mqtt-bootstrap keeps: each connection would parse the CA again otherwise.
  const secureContext = createSecureContext({ ca })
  return measure(devices, 'hand-rolled', provisioning, async (i) => {
    const dispatcher = new Agent({ connect: { secureContext } })
    try {
      for (let attempt = 0; attempt <= 10; attempt++) {
        const response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ imei: deviceName(i) }),
          dispatcher,
        })
        const answer = (await response.json()) as { code: string; result?: HandRolledConfig }
        if (response.status === 503) {
          await sleep(Number(response.headers.get('retry-after') ?? 1) * 1000)
          continue
        }
        const config = answer.result
        if (answer.code !== '00000' || config === undefined) throw new Error(`provisioning answered ${answer.code}`)
        const { productKey, deviceName: name, deviceSecret } = config.device
        if (name !== deviceName(i)) throw new Error('another device was provisioned')
        const credentials = signAliyun({
          cid: `${productKey}.${name}`,
          productKey,
          deviceName: name,
          deviceSecret,
          timestamp: Date.now(),
          signMethod: 'hmacsha256',
          secureMode: 3,
        })
        return await mqtt.connectAsync(`mqtt://${config.connect.host}`, {
          ...credentials,
          reconnectPeriod: 0,
          connectTimeout: 60_000,
        })
      }
      throw new Error('still refused after 10 retries')
    } finally {
      await dispatcher.close()
    }
  })
}

interface HandRolledConfig {
  device: { productKey: string; deviceName: string; deviceSecret: string }
  connect: { host: string }
}

async function provisionedFleet(
  devices: number,
  url: string,
  ca: string,
  jitter: boolean,
  provisioning: ServerProcess,
): Promise<Measured> {
  provisioning.tell('reset')
  const run = await measure(devices, jitter ? 'jitter-on' : 'jitter-off', provisioning, (i) =>
    connectProvisioned({
      url,
      data: { imei: deviceName(i) },
      tls: { ca },
      cache: new MemoryCredentialStore(),
      broker: { protocol: 'mqtt' },
      reconnect: false,
      timeoutMs: 30_000,
      deadlineMs: 180_000,
      retry: { retries: 10, minTimeout: 250, maxTimeout: 5000 },
      startupJitterMs: jitter ? jitterFor(devices) : 0,
      mqtt: { connectTimeout: 60_000 },
    }),
  )
  return run
}

async function measure(
  devices: number,
  kind: FleetRun['kind'],
  provisioning: ServerProcess | undefined,
  boot: (index: number) => Promise<MqttClient>,
): Promise<Measured> {
  const started = performance.now()
  const connectedAt: number[] = []
  let lost = 0
  const clients = await Promise.all(
    Array.from({ length: devices }, (_, i) =>
      boot(i).then(
        (client) => {
          connectedAt.push(performance.now() - started)
          return client
        },
        () => {
          lost++
          return undefined
        },
      ),
    ),
  )
  const totalMs = Math.max(...connectedAt)
  const report = provisioning ? await provisioning.ask<{ requests: number[] }>('report') : { requests: [] }
  await Promise.all(clients.map((client) => client?.endAsync(true)))

  const ticks = Math.ceil(totalMs / TICK_MS) + 1
  const connectedOverTime = Array.from(
    { length: ticks },
    (_, t) => connectedAt.filter((at) => at <= t * TICK_MS).length,
  )
  // The server's clock started with its process: align on its first request of this run (the fleet's start).
  const first = Math.min(...report.requests)
  const relative = report.requests.map((at) => at - first)
  const requestsOverTime = Array.from(
    { length: ticks },
    (_, t) => relative.filter((at) => at >= t * TICK_MS && at < (t + 1) * TICK_MS).length,
  )
  // Peak over any 1-second window (ten consecutive ticks).
  let peakRps = 0
  for (let t = 0; t < requestsOverTime.length; t++) {
    peakRps = Math.max(
      peakRps,
      requestsOverTime.slice(t, t + 1000 / TICK_MS).reduce((a, b) => a + b, 0),
    )
  }
  return {
    devices,
    kind,
    totalMs: round(totalMs, 0),
    p50Ms: round(percentile(connectedAt, 50), 0),
    p99Ms: round(percentile(connectedAt, 99), 0),
    lost,
    peakRps,
    requests: report.requests.length,
    connectedOverTime,
    requestsOverTime,
  }
}
