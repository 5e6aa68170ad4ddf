import type { AuthStrategy } from './strategy.js'

/**
 * Mutual TLS: the client certificate is the credential (the `certificate` option's, or the caller's own
 * `mqtt.key`/`mqtt.cert`). clientId `${productKey}.${deviceName}`, username `deviceName` (a broker that takes the
 * identity from the certificate, as mosquitto's `use_identity_as_username` does, overrides it), no password.
 */
export function x509Auth(): AuthStrategy {
  return {
    name: 'x509',
    defaultPort: 8883,
    sign: (device) => ({ clientId: `${device.productKey}.${device.deviceName}`, username: device.deviceName }),
  }
}
