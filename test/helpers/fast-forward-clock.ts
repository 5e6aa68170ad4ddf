/**
 * A clock at the real time plus an offset, for renewal tests (issue 18): certificates are issued now, by real time,
 * and the broker and the provisioning server judge them by real time, while the device's renewal timer (hours away)
 * passes in an instant when the test says so. Short sleeps (retry backoffs) are real sleeps; a long one (a renewal's
 * wait) holds while the clock is paused, and passes at once, adding its length to the offset, while it runs.
 */
import { AbortError, type Clock } from '../../packages/mqtt-bootstrap/src/index.js'

/** Sleeps at least this long are the renewal timer's. */
const LONG_MS = 60_000

export class FastForwardClock implements Clock {
  /** How far the device's time is ahead of the real time, in ms. */
  offset = 0
  /** The long sleeps requested, in ms. */
  readonly waits: number[] = []
  #running = false
  readonly #held = new Set<() => void>()

  now(): number {
    return Date.now() + this.offset
  }

  random(): number {
    return 0.5
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw new AbortError(signal.reason)
    if (ms < LONG_MS) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, ms)
        signal?.addEventListener('abort', () => reject(new AbortError(signal.reason)), { once: true })
        timer.unref?.()
      })
      return
    }
    this.waits.push(ms)
    if (!this.#running) {
      await new Promise<void>((resolve, reject) => {
        this.#held.add(resolve)
        signal?.addEventListener(
          'abort',
          () => {
            this.#held.delete(resolve)
            reject(new AbortError(signal.reason))
          },
          { once: true },
        )
      })
    }
    this.offset += ms
  }

  /** Let long sleeps pass at once, those held now and those to come, until pause(). */
  run(): void {
    this.#running = true
    for (const release of [...this.#held]) release()
    this.#held.clear()
  }

  pause(): void {
    this.#running = false
  }

  /** Long sleeps waiting now. */
  get holding(): number {
    return this.#held.size
  }
}
