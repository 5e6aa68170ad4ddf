/**
 * Concurrent callers of one operation share one run of it. Each caller may abort its own wait; the run itself is
 * aborted only when every caller has given up (and a later caller then starts a new run). A run started by a caller
 * without a signal can never be given up by all, so it gets no AbortController (the cached boot's path stays lean).
 *
 * The run in progress lives in a slot of its owner's (`slots[key]`), not in an object of its own: a bootstrap, kept
 * as long as its client, keeps no per-operation object once the runs are over.
 */
import { AbortError } from './errors.js'

/** One run of a shared operation; extended by what its callers share besides its result (boot/context.ts Flight). */
export class SharedRun<T> {
  promise: Promise<T> = Promise.resolve(undefined as T)
  controller: AbortController | undefined
  waiters = 0
}

/**
 * Wait for the run in `slots[key]`, or start one: `make()` makes the record, `task` runs under its signal (aborted
 * when every waiter has given up). Returns the run joined and this caller's wait for it.
 */
export function runShared<T, R extends SharedRun<T>, K extends string>(
  slots: Record<K, R | undefined>,
  key: K,
  make: () => R,
  task: (run: R, signal: AbortSignal | undefined) => Promise<T>,
  signal?: AbortSignal,
): { run: R | undefined; wait: Promise<T> } {
  if (signal?.aborted) return { run: undefined, wait: Promise.reject(new AbortError(signal.reason)) }
  const run = slots[key] ?? start(slots, key, make(), task, signal !== undefined)
  run.waiters++
  if (signal === undefined) return { run, wait: run.promise }
  const wait = new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      if (--run.waiters === 0) {
        if (slots[key] === run) slots[key] = undefined
        run.controller?.abort(signal.reason)
      }
      reject(new AbortError(signal.reason))
    }
    signal.addEventListener('abort', onAbort, { once: true })
    run.promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
  return { run, wait }
}

function start<T, R extends SharedRun<T>, K extends string>(
  slots: Record<K, R | undefined>,
  key: K,
  run: R,
  task: (run: R, signal: AbortSignal | undefined) => Promise<T>,
  abortable: boolean,
): R {
  run.controller = abortable ? new AbortController() : undefined
  run.promise = task(run, run.controller?.signal).finally(() => {
    if (slots[key] === run) slots[key] = undefined
  })
  slots[key] = run // after task() has begun: a task that asked for its own key would wait on itself
  return run
}
