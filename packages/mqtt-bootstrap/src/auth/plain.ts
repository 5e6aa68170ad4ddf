import type { AuthStrategy } from './strategy.js'

/** clientId `${productKey}.${deviceName}`, username `deviceName`, password `deviceSecret`. */
export function plainAuth(): AuthStrategy {
  return {
    name: 'plain',
    defaultPort: 8883,
    sign: (device) => ({
      clientId: `${device.productKey}.${device.deviceName}`,
      username: device.deviceName,
      password: device.deviceSecret,
    }),
  }
}
