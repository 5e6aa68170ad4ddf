/** The reference provisioning server (handler + JSON-file registry) over HTTPS on 127.0.0.1, port 0. */
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { createProvisioningHandler, DeviceRegistry } from '../../packages/mqtt-bootstrap-server/src/index.js'
import { DEVICE } from './https-server.js'
import type { TlsFixture } from './tls.js'

export const KNOWN = { imei: '860000000000001' }
export const BLOCKED = { imei: '860000000000666' }

/**
 * A registry file with one known device (pointing at `host`) and one blocked device. It declares `"attestation":
 * "none"` (unsigned claims, knowingly: `serve` refuses a registry that says nothing) unless told otherwise.
 */
export function writeRegistry(path: string, host: string, attestation: unknown = 'none'): void {
  writeFileSync(
    path,
    JSON.stringify({
      version: 1,
      attestation,
      defaults: { connect: { host, qos: 1, cleanSession: 1 } },
      devices: [
        { match: KNOWN, device: DEVICE },
        { match: BLOCKED, refuse: '10003' },
      ],
    }),
  )
}

export async function startReferenceServer(tls: TlsFixture, registryPath: string, onError?: (error: unknown) => void) {
  const registry = new DeviceRegistry(registryPath)
  const server = https.createServer(
    { key: tls.key, cert: tls.cert, noDelay: true },
    createProvisioningHandler({ resolve: registry.resolve, ...(onError ? { onError } : {}) }),
  )
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/bootstrap`,
    registry,
    close: async () => {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    },
  }
}
