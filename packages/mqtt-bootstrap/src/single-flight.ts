/**
 * Concurrent callers of one operation share one run of it. Each caller may abort its own wait; the run itself is
 * aborted only when every caller has given up (and a later caller then starts a new run). A run started by a caller
 * without a signal can never be given up by all, so it gets no AbortController (the cached boot's path stays lean).
 */
import { AbortError } from './errors.js'

interface Flight<T> {
  promise: Promise<T>
  controller: AbortController | undefined
  waiters: number
}

export class SingleFlight<T> {
  #flight: Flight<T> | undefined

  run(task: (signal: AbortSignal | undefined) => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) return Promise.reject(new AbortError(signal.reason))
    const flight = this.#flight ?? this.#start(task, signal !== undefined)
    flight.waiters++
    if (signal === undefined) return flight.promise
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        if (--flight.waiters === 0) {
          if (this.#flight === flight) this.#flight = undefined
          flight.controller?.abort(signal.reason)
        }
        reject(new AbortError(signal.reason))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      flight.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
    })
  }

  #start(task: (signal: AbortSignal | undefined) => Promise<T>, abortable: boolean): Flight<T> {
    const controller = abortable ? new AbortController() : undefined
    const flight: Flight<T> = { controller, waiters: 0, promise: Promise.resolve(undefined as T) }
    flight.promise = task(controller?.signal).finally(() => {
      if (this.#flight === flight) this.#flight = undefined
    })
    this.#flight = flight
    return flight
  }
}
