/** Device identities for the benches: every device's secret derives from its name, so no registry is needed. */
import { createHmac } from 'node:crypto'
import {
  type CredentialStore,
  credentialKey,
  MemoryCredentialStore,
  type MqttCredentials,
  signAliyun,
} from 'mqtt-bootstrap'

export const PRODUCT_KEY = 'a1BenchPK01'
const MASTER = 'bench-master-key (loopback only)'

export const deviceName = (index: number) => `dev-${index}`
export const deviceSecret = (name: string) => createHmac('sha256', MASTER).update(name).digest('hex').slice(0, 32)

/** The CONNECT fields a raw mqtt.js app would hold for device `name` (securemode 2 over TLS, 3 over TCP). */
export function signedFor(name: string, tls = false): MqttCredentials {
  return signAliyun({
    cid: `${PRODUCT_KEY}.${name}`,
    productKey: PRODUCT_KEY,
    deviceName: name,
    deviceSecret: deviceSecret(name),
    timestamp: Date.now(),
    signMethod: 'hmacsha256',
    secureMode: tls ? 2 : 3,
  })
}

/** A provisioning URL no bench ever reaches: cached boots never make a request. */
export const UNUSED_URL = 'https://127.0.0.1:1/unused'

/** A memory cache already holding device `name`'s configuration for (UNUSED_URL, { imei: name }), as after a boot. */
export async function warmCache(
  name: string,
  host: string,
): Promise<{ cache: CredentialStore; data: { imei: string } }> {
  const cache = new MemoryCredentialStore()
  const data = { imei: name }
  await cache.set(credentialKey(UNUSED_URL, data), {
    savedAt: 1,
    config: {
      device: { productKey: PRODUCT_KEY, deviceName: name, deviceSecret: deviceSecret(name), productSecret: null },
      connect: { qos: 1, host, cleanSession: 1 },
    },
  })
  return { cache, data }
}
