/** Retry-After as servers send it: every HTTP-date format, in any local time zone, and numbers too large to wait. */
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'
import { parseRetryAfter } from '../packages/mqtt-bootstrap/src/retry.js'
import { runTs } from './helpers/child.js'

const now = Date.parse('Wed, 21 Oct 2026 07:28:00 GMT')
const zoneReader = fileURLToPath(new URL('./fixtures/retry-after-zone.ts', import.meta.url))

// RFC 9110 §5.6.7: recipients accept all three; asctime is the one that names no zone. One-digit days are
// space-padded in asctime. In a process of its own: TZ is read at start-up (a worker thread cannot change it).
test.each([
  ['UTC', 0],
  ['Asia/Shanghai', -480],
  ['America/Los_Angeles', 420],
])('HTTP-dates are GMT in TZ=%s too', async (tz, offset) => {
  const dates = [
    'Wed, 21 Oct 2026 07:28:30 GMT',
    'Wednesday, 21-Oct-26 07:28:30 GMT',
    'Wed Oct 21 07:28:30 2026',
    'Thu Oct  1 07:28:00 2026',
    'Sat Oct 31 07:28:00 2026',
  ]
  const run = await runTs(zoneReader, dates, { env: { TZ: tz } })
  expect(run).toMatchObject({ code: 0 })
  // The zone did apply (Shanghai is UTC+8, Los Angeles UTC-7 in October): a local reading would be hours off.
  expect(JSON.parse(run.output)).toEqual({ offset, read: [30_000, 30_000, 30_000, 0, 10 * 86_400_000] })
})

test('all three formats are read in this process as well', () => {
  expect(parseRetryAfter('Wed, 21 Oct 2026 07:28:30 GMT', now)).toBe(30_000)
  expect(parseRetryAfter('Wednesday, 21-Oct-26 07:28:30 GMT', now)).toBe(30_000)
  expect(parseRetryAfter(' Wed Oct 21 07:28:30 2026 ', now)).toBe(30_000)
})

describe('what is not an HTTP-date is ignored, though Date.parse would read it', () => {
  test.each(['12 Oct 2026', '2026-10-21T07:28:30Z', 'x Wed, 21 Oct 2026 07:28:30 GMT', '1.5', '-5', '+5'])(
    '%j',
    (value) => {
      expect(Number.isNaN(Date.parse(value))).toBe(false)
      expect(parseRetryAfter(value, now)).toBeUndefined()
    },
  )
})

test('delta-seconds beyond what a timer can wait stay a finite number of ms', () => {
  // 2^31 ms: one past the longest setTimeout (which would fire at once instead); retryDelay caps it further.
  expect(parseRetryAfter('2147483', now)).toBe(2_147_483_000)
  expect(parseRetryAfter('2147484', now)).toBe(2 ** 31)
  expect(parseRetryAfter('99999999999', now)).toBe(2 ** 31)
  expect(parseRetryAfter('9'.repeat(400), now)).toBe(2 ** 31)
})
