/**
 * ThingsBoard, access-token credentials (its default device credentials; "MQTT Device API"): the username is the
 * token, no password, any clientId. The username is then a secret: the connect phase seals it like a password
 * (util.inspect and JSON show `[redacted]`), as it does any username that carries the device secret.
 */
import { AuthError } from '../errors.js'
import type { AuthStrategy } from './strategy.js'

/** The `thingsboard` strategy: clientId `${productKey}.${deviceName}`, username the deviceSecret (the access token). */
export function thingsboardAuth(): AuthStrategy {
  return {
    name: 'thingsboard',
    defaultPort: 8883,
    sign: (device) => {
      if (device.deviceSecret === '') {
        throw new AuthError(
          'ERR_AUTH_INVALID_IDENTITY',
          'The thingsboard strategy cannot sign for an empty deviceSecret',
        )
      }
      return { clientId: `${device.productKey}.${device.deviceName}`, username: device.deviceSecret }
    },
  }
}
