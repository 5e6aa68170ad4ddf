/**
 * Benches 1 and 2: the connect path. Cached boot (warm memory cache, and a file cache) against raw
 * mqtt.connectAsync + end; cold boot (empty cache) against a raw fetch POST on a new TLS connection + raw
 * mqtt.connectAsync. Interleaved A/B against the same broker and provisioning server, which run in other processes.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { connectProvisioned, credentialKey, FileCredentialStore, MemoryCredentialStore } from 'mqtt-bootstrap'
import { Agent, fetch } from 'undici'
import { deviceName, signedFor } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'
import { type AB, interleave } from './lib/stats.js'

export interface BootResults {
  cachedMemory: AB
  cachedFile: AB
  cold: AB
}

/** `transport`: MQTT over plain TCP, or over TLS (mqtts, the default for a bare host, and what a real broker speaks). */
export async function benchBoot(iterations: number, transport: 'tcp' | 'tls'): Promise<BootResults> {
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-bench-'))
  const caFile = join(dir, 'ca.pem')
  const brokerCaFile = join(dir, 'broker-ca.pem')
  const tls = transport === 'tls'
  const broker = await startProcess('bench/broker-process.ts', tls ? { BROKER_TLS: '1', CA_FILE: brokerCaFile } : {})
  const brokerUrl = `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${broker.port}`
  const provisioning = await startProcess('bench/provisioning-process.ts', { BROKER_HOST: brokerUrl, CA_FILE: caFile })
  const ca = await readFile(caFile, 'utf8')
  const mqttTls = tls ? { ca: await readFile(brokerCaFile, 'utf8') } : {}
  const url = `https://127.0.0.1:${provisioning.port}/bootstrap`
  const name = deviceName(1)
  const data = { imei: name }
  const options = { url, data, tls: { ca }, mqtt: mqttTls, reconnect: false as const }

  // What a raw app holds already: signed credentials (signed outside the timing, to favour the baseline).
  const signed = () => signedFor(name, tls)
  const raw = async () => {
    const credentials = signed()
    const started = performance.now()
    const client = await mqtt.connectAsync(brokerUrl, { ...credentials, ...mqttTls, reconnectPeriod: 0 })
    await client.endAsync()
    return performance.now() - started
  }
  const ours = (cache: MemoryCredentialStore | FileCredentialStore) => async () => {
    const started = performance.now()
    const client = await connectProvisioned({ ...options, cache })
    await client.endAsync()
    return performance.now() - started
  }

  try {
    const memory = new MemoryCredentialStore()
    const file = new FileCredentialStore(join(dir, 'credentials.json'))
    await (await connectProvisioned({ ...options, cache: memory })).endAsync() // warm both caches
    await (await connectProvisioned({ ...options, cache: file })).endAsync()
    if ((await file.get(credentialKey(url, data))) === undefined) throw new Error('the file cache stayed cold')
    const cachedMemory = await interleave(ours(memory), raw, { iterations, warmup: 200, maxMs: 60_000 })
    const cachedFile = await interleave(ours(file), raw, { iterations, warmup: 200, maxMs: 60_000 })

    // Cold: a new cache each time; the baseline posts with fetch on a new TLS connection, then connects.
    const coldOurs = async () => {
      const started = performance.now()
      const client = await connectProvisioned({ ...options, cache: new MemoryCredentialStore() })
      await client.endAsync()
      return performance.now() - started
    }
    const coldRaw = async () => {
      const credentials = signed()
      const started = performance.now()
      const dispatcher = new Agent({ connect: { ca } })
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(data),
        dispatcher,
      })
      const answer = (await response.json()) as { code: string }
      if (answer.code !== '00000') throw new Error(`provisioning answered ${answer.code}`)
      const client = await mqtt.connectAsync(brokerUrl, { ...credentials, ...mqttTls, reconnectPeriod: 0 })
      await client.endAsync()
      const elapsed = performance.now() - started
      await dispatcher.close()
      return elapsed
    }
    const cold = await interleave(coldOurs, coldRaw, { iterations, warmup: 30, maxMs: 90_000 })
    return { cachedMemory, cachedFile, cold }
  } finally {
    await Promise.all([broker.stop(), provisioning.stop()])
    await rm(dir, { recursive: true, force: true })
  }
}
