/**
 * The renewal schedule (issue 18, packages/mqtt-bootstrap/src/certificates/schedule.ts): when credentials of a given
 * lifetime are renewed, and when a failed renewal is tried again. Pure functions of times: no timer here (the
 * real-time cases are the `*renewal*.slow.test.ts` files).
 */
import { describe, expect, test } from 'vitest'
import { type Lifetime, renewalTime, retryTime } from '../packages/mqtt-bootstrap/src/certificates/schedule.js'

const T0 = 1_800_000_000_000
const HOUR = 3_600_000
const life = (spanMs: number): Lifetime => ({ credential: 'certificate', receivedAt: T0, expiresAt: T0 + spanMs })

describe('renewalTime', () => {
  test('by default a third of the lifetime before the expiry', () => {
    expect(renewalTime(life(30 * HOUR), undefined)).toBe(T0 + 20 * HOUR)
    expect(renewalTime(life(60_000), undefined)).toBe(T0 + 40_000)
  })

  test('renewBeforeMs counts back from the expiry; 0 renews at the expiry', () => {
    expect(renewalTime(life(30 * HOUR), HOUR)).toBe(T0 + 29 * HOUR)
    expect(renewalTime(life(30 * HOUR), 0)).toBe(T0 + 30 * HOUR)
  })

  test('never sooner than a tenth of the lifetime, nor a second, after receipt, whatever renewBeforeMs says', () => {
    expect(renewalTime(life(30 * HOUR), 100 * HOUR)).toBe(T0 + 3 * HOUR)
    expect(renewalTime(life(5000), 100 * HOUR)).toBe(T0 + 1000)
  })

  test('a lifetime under a second is renewed a second after receipt, past its expiry: no loop', () => {
    expect(renewalTime(life(60), undefined)).toBe(T0 + 1000)
    expect(renewalTime(life(0), 0)).toBe(T0 + 1000)
  })
})

describe('retryTime', () => {
  test('halfway to the expiry, at least a second from now', () => {
    expect(retryTime(life(10 * HOUR), T0 + 8 * HOUR)).toBe(T0 + 9 * HOUR)
    expect(retryTime(life(10_000), T0 + 9_500)).toBe(T0 + 10_500)
  })

  test('each retry halves the time left: a bounded number before the expiry', () => {
    const lifetime = life(24 * HOUR)
    let now = T0 + 16 * HOUR
    let tries = 0
    while (now < lifetime.expiresAt && tries < 100) {
      now = retryTime(lifetime, now)
      tries++
    }
    expect(tries).toBeLessThan(20)
  })
})
