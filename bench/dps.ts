/**
 * Bench 3: a peer on its own protocol. Azure's DPS device client (azure-iot-provisioning-device + -http, symmetric
 * key) registering against a loopback DPS that answers as documented (202 "assigning", then "assigned" on the status
 * poll), against mqtt-bootstrap's single request: the time from start to credentials in hand, interleaved.
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { Agent as HttpsAgent } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import httpBase from 'azure-iot-http-base'
import provisioning from 'azure-iot-provisioning-device'
import provisioningHttp from 'azure-iot-provisioning-device-http'
import symmetricKey from 'azure-iot-security-symmetric-key'
import { createBootstrap, MemoryCredentialStore } from 'mqtt-bootstrap'
import { deviceName } from './lib/fleet-secrets.js'
import { startProcess } from './lib/processes.js'
import { type AB, interleave } from './lib/stats.js'

export interface DpsResults {
  /** DPS with Retry-After: 0 on the 202: its best case, two round trips back to back. */
  bestCase: AB
  /** DPS as the SDK behaves by default (no Retry-After: it polls after 2 s). */
  defaultPolling: AB
}

export async function benchDps(iterations: number): Promise<DpsResults> {
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-dps-'))
  const servers = {
    best: await startProcess('bench/dps-process.ts', { RETRY_AFTER: '0', CA_FILE: join(dir, 'best.pem') }),
    plain: await startProcess('bench/dps-process.ts', { CA_FILE: join(dir, 'plain.pem') }),
    ours: await startProcess('bench/provisioning-process.ts', { CA_FILE: join(dir, 'ours.pem') }),
  }
  const ca = {
    best: await readFile(join(dir, 'best.pem'), 'utf8'),
    plain: await readFile(join(dir, 'plain.pem'), 'utf8'),
    ours: await readFile(join(dir, 'ours.pem'), 'utf8'),
  }

  // CommonJS packages: their named exports are not visible to ESM.
  const { Http: HttpBase } = httpBase
  const { ProvisioningDeviceClient } = provisioning
  const { Http: DpsHttp } = provisioningHttp
  const { SymmetricKeySecurityClient } = symmetricKey

  /** One Azure registration with a fresh agent (a booting device's first TLS connection), to a loopback port. */
  const azure = (port: number, trusted: string) => async () => {
    const base = new HttpBase()
    // The SDK always dials port 443 of its provisioning host: the agent takes it to the loopback stand-in instead.
    const agent = new HttpsAgent({ keepAlive: true, ca: trusted })
    agent.createConnection = (options, callback) =>
      tlsConnect(
        { ...(options as object), host: '127.0.0.1', port, ca: trusted, servername: undefined },
        callback as never,
      )
    base.setOptions({ ca: trusted, http: { agent } })
    const security = new SymmetricKeySecurityClient('device-1', Buffer.from('bench-key').toString('base64'))
    // (The security package pins its own azure-iot-common: same shape, another type identity.)
    const client = ProvisioningDeviceClient.create('127.0.0.1', '0ne00000000', new DpsHttp(base), security as never)
    const started = performance.now()
    const result = await client.register()
    const elapsed = performance.now() - started
    agent.destroy()
    if ((result as { assignedHub?: string } | undefined)?.assignedHub === undefined) throw new Error('no hub assigned')
    return elapsed
  }
  const ours = async () => {
    const boot = createBootstrap({
      url: `https://127.0.0.1:${servers.ours.port}/bootstrap`,
      data: { imei: deviceName(1) },
      tls: { ca: ca.ours },
      cache: new MemoryCredentialStore(),
    })
    const started = performance.now()
    const config = await boot.provision()
    const elapsed = performance.now() - started
    if (config.device.deviceSecret === '') throw new Error('no credentials')
    return elapsed
  }
  try {
    const bestCase = await interleave(ours, azure(servers.best.port, ca.best), {
      iterations,
      warmup: 20,
      maxMs: 60_000,
    })
    const defaultPolling = await interleave(ours, azure(servers.plain.port, ca.plain), {
      iterations: 5,
      warmup: 1,
      maxMs: 60_000,
    })
    return { bestCase, defaultPolling }
  } finally {
    await Promise.all(Object.values(servers).map((server) => server.stop()))
    await rm(dir, { recursive: true, force: true })
  }
}
