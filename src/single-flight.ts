/**
 * Concurrent callers of one operation share one run of it. Each caller may abort its own wait; the run itself is
 * aborted only when every caller has given up (and a later caller then starts a new run).
 */
import { AbortError } from './errors.js'

interface Flight<T> {
  promise: Promise<T>
  controller: AbortController
  waiters: number
}

export class SingleFlight<T> {
  #flight: Flight<T> | undefined

  run(task: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason))
    const flight = this.#flight ?? this.#start(task)
    flight.waiters++
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        if (--flight.waiters === 0) {
          if (this.#flight === flight) this.#flight = undefined
          flight.controller.abort(signal?.reason)
        }
        reject(new AbortError(signal?.reason))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      flight.promise.then(resolve, reject).finally(() => signal?.removeEventListener('abort', onAbort))
    })
  }

  #start(task: (signal: AbortSignal) => Promise<T>): Flight<T> {
    const controller = new AbortController()
    const flight: Flight<T> = { controller, waiters: 0, promise: Promise.resolve(undefined as T) }
    flight.promise = task(controller.signal).finally(() => {
      if (this.#flight === flight) this.#flight = undefined
    })
    this.#flight = flight
    return flight
  }
}
