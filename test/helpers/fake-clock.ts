/** The one fake the suite uses: time and sleep (so retry tests need not wait), injected through TOKENS.Clock. */
import { AbortError, type Clock } from '../../packages/mqtt-bootstrap/src/index.js'

export class FakeClock implements Clock {
  time = 1_700_000_000_000
  /** Every sleep requested, in ms. */
  readonly sleeps: number[] = []
  /** What random() returns (full jitter multiplies the backoff ceiling by it). */
  randomValue = 0.5
  /** When true, a sleep lasts until its signal aborts (to abort "during a backoff sleep"). */
  hold = false
  /** Runs at the start of every sleep (e.g. to bring a broker up during a backoff). */
  onSleep: ((ms: number) => void | Promise<void>) | undefined
  #sleeping: Array<() => void> = []

  now(): number {
    return this.time
  }

  random(): number {
    return this.randomValue
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms)
    await this.onSleep?.(ms)
    if (signal?.aborted) throw new AbortError(signal.reason)
    if (this.hold) {
      await new Promise<void>((_resolve, reject) => {
        signal?.addEventListener('abort', () => reject(new AbortError(signal.reason)), { once: true })
        for (const notify of this.#sleeping.splice(0)) notify()
      })
    }
    this.time += ms
  }

  /** Resolves when a held sleep has started. */
  sleeping(): Promise<void> {
    return new Promise((resolve) => this.#sleeping.push(resolve))
  }
}
