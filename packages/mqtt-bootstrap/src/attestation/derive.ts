/**
 * Per-device keys from one group key, the scheme of Azure DPS group enrollment: the factory holds the group key and
 * burns `deriveDeviceKey(groupKey, id)` into each device; the server derives the same key from the claimed identity,
 * and so needs no table of device keys (DESIGN.md "Authenticated claims").
 */
import { InvalidOptionError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { typeName } from '../option-checks.js'
import { keyBytes } from './key.js'

/**
 * The shortest group key accepted, in bytes: 128 bits, what a key that every device key depends on must have at
 * least (`mqtt-bootstrap keys group` makes 64 bytes, as Azure does).
 */
export const MIN_GROUP_KEY_BYTES = 16

/**
 * base64(HMAC-SHA256(groupKey bytes, utf8(deviceId))). A string `groupKey` is the base64 of the key (canonical, as
 * Azure shows it); bytes are taken as they are. Either must be at least {@link MIN_GROUP_KEY_BYTES} bytes.
 * Throws an InvalidOptionError (`groupKey` or `deviceId`) for a bad argument; its message never quotes the key.
 */
export function deriveDeviceKey(groupKey: string | Uint8Array, deviceId: string): string {
  const key = keyBytes(groupKey, 'groupKey', MIN_GROUP_KEY_BYTES)
  if (typeof deviceId !== 'string' || deviceId === '') {
    throw new InvalidOptionError(
      'deviceId',
      `Expected \`deviceId\` to be a non-empty string, got ${deviceId === '' ? 'an empty string' : typeName(deviceId)}`,
    )
  }
  return nodeCrypto().createHmac('sha256', key).update(deviceId, 'utf8').digest('base64')
}
