/**
 * Certificates (issue 17), against the build (dist/), on loopback only. The broker (aedes, its own process) has a
 * mutual-TLS listener that requires a client certificate of the issuing CA; the provisioning server (the reference
 * handler with `issueCertificates()`, its own process) issues one for each CSR. Side by side in one run, interleaved:
 * - first boot with `certificate: true` (a new key, its CSR, the claim, the issue, the mutual-TLS connect) against a
 *   raw mutual-TLS `mqtt.connectAsync()` with a key and certificate already in hand;
 * - a cached boot (file store: the key and certificate read back) against the same raw connect;
 * - and the parts, each alone: the key pair, the CSR (device CPU), and check + issue (server CPU).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { connectProvisioned, credentialKey, FileCredentialStore, MemoryCredentialStore } from 'mqtt-bootstrap'
import { createCertificateRequest, createDeviceKey } from 'mqtt-bootstrap/contract'
import { issueCertificates } from 'mqtt-bootstrap-server'
import { generateCa } from '../packages/mqtt-bootstrap-server/src/cli/certificates.js'
import { startProcess } from './lib/processes.js'
import { type AB, interleave, median, round } from './lib/stats.js'

export interface CertificatesBench {
  firstBoot: AB
  cachedBoot: AB
  /** Medians in ms, one call after another. */
  keyPairMs: number
  csrMs: number
  issueMs: number
}

export async function benchCertificates(iterations: number): Promise<CertificatesBench> {
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-bench-certs-'))
  const ca = await generateCa()
  const files = {
    issuingCa: join(dir, 'issuing-ca.pem'),
    issuingKey: join(dir, 'issuing-ca.key'),
    brokerCa: join(dir, 'broker-ca.pem'),
    provisioningCa: join(dir, 'provisioning-ca.pem'),
  }
  await writeFile(files.issuingCa, ca.cert)
  await writeFile(files.issuingKey, ca.key, { mode: 0o600 })
  const broker = await startProcess('bench/broker-process.ts', {
    BROKER_TLS: '1',
    CA_FILE: files.brokerCa,
    CLIENT_CA_FILE: files.issuingCa,
  })
  const brokerUrl = `mqtts://127.0.0.1:${broker.port}`
  const provisioning = await startProcess('bench/provisioning-process.ts', {
    BROKER_HOST: brokerUrl,
    CA_FILE: files.provisioningCa,
    ISSUING_CA_FILE: files.issuingCa,
    ISSUING_KEY_FILE: files.issuingKey,
  })
  try {
    const mqttTls = { ca: await readFile(files.brokerCa, 'utf8') }
    const url = `https://127.0.0.1:${provisioning.port}/bootstrap`
    const data = { imei: 'dev-1' }
    const options = {
      url,
      data,
      tls: { ca: await readFile(files.provisioningCa, 'utf8') },
      mqtt: mqttTls,
      certificate: true,
      reconnect: false as const,
    }
    // What a raw app holds already: a key and its certificate (the ones a first boot stored, read outside the timing).
    const file = new FileCredentialStore(join(dir, 'credentials.json'))
    await (await connectProvisioned({ ...options, cache: file })).endAsync()
    const stored = await file.get(credentialKey(url, data))
    if (stored?.privateKey === undefined || stored.config.device.certificate === undefined) {
      throw new Error('the first boot stored no key and certificate')
    }
    const inHand = { key: stored.privateKey, cert: stored.config.device.certificate }
    const raw = async () => {
      const started = performance.now()
      const client = await mqtt.connectAsync(brokerUrl, {
        ...mqttTls,
        ...inHand,
        clientId: 'raw',
        reconnectPeriod: 0,
      })
      await client.endAsync()
      return performance.now() - started
    }
    const timed = (cache: () => MemoryCredentialStore | FileCredentialStore) => async () => {
      const started = performance.now()
      const client = await connectProvisioned({ ...options, cache: cache() })
      await client.endAsync()
      return performance.now() - started
    }
    const firstBoot = await interleave(
      timed(() => new MemoryCredentialStore()),
      raw,
      { iterations, warmup: 20, maxMs: 90_000 },
    )
    const cachedBoot = await interleave(
      timed(() => file),
      raw,
      { iterations, warmup: 50, maxMs: 60_000 },
    )
    return { firstBoot, cachedBoot, ...(await parts(ca, iterations)) }
  } finally {
    await Promise.all([broker.stop(), provisioning.stop()])
    await rm(dir, { recursive: true, force: true })
  }
}

/** Each part alone, in this process, one call after another. */
async function parts(ca: { cert: string; key: string }, iterations: number) {
  const issuer = issueCertificates({ ca, validitySeconds: 86_400 })
  const keyPair: number[] = []
  const csr: number[] = []
  const issue: number[] = []
  for (let i = 0; i < iterations + 20; i++) {
    let started = performance.now()
    const key = await createDeviceKey('p256')
    const keyMs = performance.now() - started
    started = performance.now()
    const request = createCertificateRequest(key)
    const csrMs = performance.now() - started
    started = performance.now()
    const checked = await issuer.check(request)
    if (!checked.ok) throw new Error(`the issuer refused the CSR: ${checked.problem}`)
    await issuer.issue(checked.request, { productKey: 'pk', deviceName: `dev-${i}` })
    const issueMs = performance.now() - started
    if (i < 20) continue // warm-up
    keyPair.push(keyMs)
    csr.push(csrMs)
    issue.push(issueMs)
  }
  return { keyPairMs: round(median(keyPair)), csrMs: round(median(csr)), issueMs: round(median(issue)) }
}

/** The table rows of docs/performance.md's certificates section. */
export function certificatesRows(r: {
  firstBoot: { oursMedianMs: number; baselineMedianMs: number; ratio: number }
  cachedBoot: { oursMedianMs: number; baselineMedianMs: number; ratio: number }
  keyPairMs: number
  csrMs: number
  issueMs: number
}): string[][] {
  const row = (label: string, ab: typeof r.firstBoot) => [
    label,
    `${ab.oursMedianMs} ms`,
    `${ab.baselineMedianMs} ms`,
    `${ab.ratio}`,
    '',
  ]
  return [
    row('first boot, certificate: key + CSR + claim + issue + mTLS (vs raw mTLS connect)', r.firstBoot),
    row('cached boot, certificate, file store (vs raw mTLS connect)', r.cachedBoot),
    [
      '  parts: P-256 key pair / CSR (device) / check + issue (server)',
      `${r.keyPairMs} / ${r.csrMs} / ${r.issueMs} ms`,
      '',
      '',
      '',
    ],
  ]
}
