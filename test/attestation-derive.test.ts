/**
 * deriveDeviceKey: Azure DPS group enrollment's derivation, checked against the published vector (the committed copy
 * of ../shared/vectors/clouds.json) and node:crypto computed here; bad group keys and ids are typed errors that never
 * quote the key.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { deriveDeviceKey as fromContract } from '../packages/mqtt-bootstrap/src/contract-entry.js'
import { deriveDeviceKey, InvalidOptionError } from '../packages/mqtt-bootstrap/src/index.js'
import { suite } from './helpers/exposure.js'

interface DeriveVector {
  groupKey: string
  deviceId: string
  deviceKey: string
}

const vectors = (
  JSON.parse(readFileSync(new URL('./vectors/clouds.json', import.meta.url), 'utf8')) as {
    deriveDeviceKey: DeriveVector[]
  }
).deriveDeviceKey

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'

/** 32 bytes' base64 (`…X=`) with one of the two unused low bits of X set: Node decodes it the same, in silence. */
function withUnusedBitSet(base64: string): string {
  const last = ALPHABET.indexOf(base64.at(-2) as string)
  return `${base64.slice(0, -2)}${ALPHABET[last | 1]}=`
}

describe('deriveDeviceKey', () => {
  test('the published vectors', () => {
    expect(vectors.length).toBeGreaterThan(0)
    for (const { groupKey, deviceId, deviceKey } of vectors) {
      suite.secret(groupKey)
      suite.secret(deviceKey)
      expect(deriveDeviceKey(groupKey, deviceId)).toBe(deviceKey)
      expect(deriveDeviceKey(Buffer.from(groupKey, 'base64'), deviceId)).toBe(deviceKey)
      expect(deriveDeviceKey(new Uint8Array(Buffer.from(groupKey, 'base64')), deviceId)).toBe(deviceKey)
    }
  })

  test('the DESIGN.md vector, from both entries', () => {
    const groupKey = '8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=='
    const expected = 'Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc='
    expect(deriveDeviceKey(groupKey, 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6')).toBe(expected)
    expect(fromContract(groupKey, 'sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6')).toBe(expected)
  })

  test('is HMAC-SHA256 over the id as UTF-8, for random keys and ids beyond ASCII', () => {
    for (let i = 0; i < 20; i++) {
      const key = randomBytes(16 + i * 3)
      const id = `dev-${i}-ü-設備-${randomBytes(4).toString('hex')}`
      const expected = createHmac('sha256', key).update(Buffer.from(id, 'utf8')).digest('base64')
      expect(deriveDeviceKey(key.toString('base64'), id)).toBe(expected)
      expect(deriveDeviceKey(key, id)).toBe(expected)
    }
  })

  test('the caller keeps its buffer: the key is copied, not changed', () => {
    const key = randomBytes(32)
    const copy = Buffer.from(key)
    deriveDeviceKey(key, 'a')
    expect(key.equals(copy)).toBe(true)
  })

  const good = randomBytes(32).toString('base64')
  test('a key with an unused bit set decodes to the same bytes in Node: the case below is a real risk', () => {
    expect(Buffer.from(withUnusedBitSet(good), 'base64').equals(Buffer.from(good, 'base64'))).toBe(true)
  })
  test.each([
    ['not base64 at all', 'not a key!'],
    ['base64 with a newline', `${good}\n`],
    ['base64 with spaces', `${good.slice(0, 8)} ${good.slice(8)}`],
    ['base64url', randomBytes(33).toString('base64url').replace(/[^-_]/, '-')],
    ['unpadded base64', good.replace(/=+$/, '')],
    ['base64 whose unused bits are set', withUnusedBitSet(good)],
    ['an empty string', ''],
    ['an empty buffer', Buffer.alloc(0)],
    ['15 bytes', randomBytes(15).toString('base64')],
    ['15 bytes as a buffer', randomBytes(15)],
    ['a number', 42],
    ['null', null],
    ['an array of bytes', [1, 2, 3]],
  ])('a group key that is %s: InvalidOptionError on groupKey, the key not quoted', (_what, groupKey) => {
    if (typeof groupKey === 'string') suite.secret(groupKey.trim())
    let error: unknown
    try {
      deriveDeviceKey(groupKey as string, 'device-1')
    } catch (thrown) {
      error = thrown
    }
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option: 'groupKey' })
    suite.objects.push(error)
  })

  test.each([
    ['empty', ''],
    ['not a string', 7],
    ['undefined', undefined],
  ])('a device id that is %s: InvalidOptionError on deviceId', (_what, id) => {
    expect(() => deriveDeviceKey(good, id as string)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', option: 'deviceId' }),
    )
  })
})
