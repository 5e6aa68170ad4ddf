/**
 * The other clouds' signing functions (issue 19) against every vector in ../shared/vectors/clouds.json (the strings
 * to sign from each vendor's own SDK source; values computed with Python's hmac and Node's crypto), or the committed
 * copy test/vectors/clouds.json where ../shared is absent; and their refusals of bad input.
 */
import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import {
  InvalidOptionError,
  signAzureSas,
  signBaidu,
  signHuawei,
  signOnenet,
  signTencent,
} from '../packages/mqtt-bootstrap/src/index.js'

const SHARED = new URL('../../shared/vectors/clouds.json', import.meta.url)
const COPY = new URL('./vectors/clouds.json', import.meta.url)
type Row = Record<string, unknown>
const vectors = JSON.parse(readFileSync(existsSync(SHARED) ? SHARED : COPY, 'utf8')) as Record<string, Row[]>

/** What a row expects: its clientId, username and password, those it gives. */
const expected = (row: Row) =>
  Object.fromEntries(['clientId', 'username', 'password'].filter((k) => k in row).map((k) => [k, row[k]]))

test.runIf(existsSync(SHARED))('the committed copy equals the shared vectors', () => {
  expect(JSON.parse(readFileSync(COPY, 'utf8'))).toEqual(JSON.parse(readFileSync(SHARED, 'utf8')))
})

const signers = {
  tencent: signTencent,
  huawei: signHuawei,
  onenet: signOnenet,
  azure: signAzureSas,
  baidu: signBaidu,
} as const

describe.each(Object.entries(signers))('%s', (cloud, sign) => {
  const rows = vectors[cloud] ?? []

  test('has vectors', () => {
    expect(rows.length).toBeGreaterThan(0)
  })

  test.each(rows.map((row, i) => [i, row] as const))('vector %i', (_i, row) => {
    const signed: object = (sign as (input: never) => object)(row as never)
    expect(signed).toMatchObject(expected(row))
  })
})

describe('bad input is an InvalidOptionError naming the field, never quoting a key', () => {
  const tencent = vectors.tencent?.[0] as Row
  test.each([
    ['devicePsk', 'not base64!'],
    ['signMethod', 'hmacmd5'],
    ['expiry', -1],
    ['expiry', 1.5],
    ['productId', ''],
  ])('tencent %s = %o', (field, value) => {
    expect(() => signTencent({ ...tencent, [field]: value } as never)).toThrow(new RegExp(`\`${field}\``))
  })

  test('onenet method, huawei hour stamp and signType, baidu algorithm, azure key', () => {
    expect(() => signOnenet({ ...(vectors.onenet?.[0] as Row), method: 'sha512' } as never)).toThrow(/`method`/)
    expect(() => signHuawei({ ...(vectors.huawei?.[0] as Row), timestamp: '2018-07-24' } as never)).toThrow(
      /`timestamp`/,
    )
    expect(() => signHuawei({ ...(vectors.huawei?.[0] as Row), signType: 2 } as never)).toThrow(/`signType`/)
    expect(() => signBaidu({ ...(vectors.baidu?.[0] as Row), algorithm: 'SHA1' } as never)).toThrow(/`algorithm`/)
    const key = 'c2VjcmV0IGtleSBtYXRlcmlhbA'
    const error = (() => {
      try {
        signAzureSas({ ...(vectors.azure?.[0] as Row), key: `${key}%%` } as never)
      } catch (thrown) {
        return thrown as Error
      }
    })()
    expect(error).toBeInstanceOf(InvalidOptionError)
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION', option: 'key' })
    expect(error?.message).toMatch(/`key`/)
    expect(error?.message).not.toContain(key)
  })

  test('the signature depends on the time field: a new expiry, a new password', () => {
    const row = vectors.azure?.[0] as Row
    const a = signAzureSas(row as never)
    const b = signAzureSas({ ...row, expiry: (row.expiry as number) + 1 } as never)
    expect(a.password).not.toBe(b.password)
  })
})
