/**
 * The private key of each configuration that carries a certificate, in memory: from the moment the key is made (or
 * read from the cache) for as long as the configuration lives. Kept beside the configuration, not in it, because a
 * DeviceConfig is public (PointAccess.deviceConfig, events, `provision()`), and the key must never leave the device.
 * The bytes are sealed like a password (redact.ts): a Buffer that tls.connect reads, and util.inspect,
 * JSON.stringify and loggers see as `[redacted]`.
 */
import type { DeviceConfig } from '../contract.js'
import { sealedPassword } from '../redact.js'

const keys = new WeakMap<DeviceConfig, Buffer>()

/** `config` goes with the private key `pem` (PKCS#8). */
export function holdKey(config: DeviceConfig, pem: string | Buffer): void {
  keys.set(config, sealedPassword(pem))
}

/** The sealed private key of `config`, or `undefined` for a configuration without one. */
export function heldKey(config: DeviceConfig): Buffer | undefined {
  return keys.get(config)
}
