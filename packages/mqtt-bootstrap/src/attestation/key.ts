/**
 * Key material for signed claims, checked at the door. A key is bytes: a Buffer or Uint8Array as it is, a string as
 * the base64 of the bytes (a derived key is base64, DESIGN.md "Authenticated claims"). The string must be canonical
 * base64 (standard alphabet, `=` padding, nothing else): Node's decoder skips what it does not understand, so a key
 * mistyped, pasted with a newline or given in base64url would otherwise decode to other bytes, in silence, and every
 * claim would be refused as a bad signature with nothing to say why. Messages never quote the key.
 */
import { InvalidOptionError } from '../errors.js'
import { typeName } from '../option-checks.js'

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * The bytes of `value` (a copy: the caller's buffer may be reused or zeroed), or an InvalidOptionError naming
 * `option`: not bytes nor a string, not canonical base64, empty, or shorter than `minBytes`.
 */
export function keyBytes(value: unknown, option: string, minBytes = 1): Buffer {
  let bytes: Buffer
  if (typeof value === 'string') {
    if (!BASE64.test(value)) {
      throw new InvalidOptionError(option, `Expected \`${option}\` to be canonical base64 (A-Z a-z 0-9 + /, = padding)`)
    }
    bytes = Buffer.from(value, 'base64')
    // The pattern lets through a last character whose unused bits are set ("QQ==" and "QR==" both decode to "A").
    if (bytes.toString('base64') !== value) {
      throw new InvalidOptionError(option, `Expected \`${option}\` to be canonical base64 (its unused bits zero)`)
    }
  } else if (value instanceof Uint8Array) {
    bytes = Buffer.from(value) // copies
  } else {
    throw new InvalidOptionError(
      option,
      `Expected \`${option}\` to be a Buffer, a Uint8Array or a base64 string, got ${typeName(value)}`,
    )
  }
  if (bytes.length === 0) throw new InvalidOptionError(option, `Expected \`${option}\` not to be empty`)
  if (bytes.length < minBytes) {
    throw new InvalidOptionError(option, `Expected \`${option}\` to be at least ${minBytes} bytes, got ${bytes.length}`)
  }
  return bytes
}

/** RFC 8941 sf-string content (printable ASCII): what a `keyid` parameter can carry. */
const PRINTABLE_ASCII = /^[\x20-\x7E]+$/

/** The longest key id: an identity (an IMEI is 15 characters), which a server keeps beside each nonce. */
export const MAX_KEY_ID_LENGTH = 256

/** A claim's key id: a non-empty string of printable ASCII (it travels as the signature's `keyid` parameter). */
export function checkKeyId(value: unknown, option: string): string {
  if (typeof value !== 'string') {
    throw new InvalidOptionError(option, `Expected \`${option}\` to be a string, got ${typeName(value)}`)
  }
  if (value === '') throw new InvalidOptionError(option, `Expected \`${option}\` not to be empty`)
  if (!PRINTABLE_ASCII.test(value)) {
    throw new InvalidOptionError(option, `Expected \`${option}\` to be printable ASCII (an RFC 8941 string)`)
  }
  if (value.length > MAX_KEY_ID_LENGTH) {
    throw new InvalidOptionError(option, `Expected \`${option}\` to be at most ${MAX_KEY_ID_LENGTH} characters`)
  }
  return value
}
