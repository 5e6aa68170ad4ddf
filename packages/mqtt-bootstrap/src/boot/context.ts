/**
 * What every boot phase is given: the bootstrap's context (its resolved options, its seams, its reporter and the
 * little it remembers between calls) and the call it works for. Phases are functions of these two, nothing else.
 */
import type { DeviceConfig } from '../contract.js'
import type { ResolvedOptions } from '../options.js'
import type { Reporter } from '../report.js'
import type { RetryLoop } from '../retry.js'
import type { Seams } from '../seams.js'
import type { Provisioned } from '../session-hooks.js'
import { SharedRun } from '../single-flight.js'

/** What a phase tells about the failures it retries: the call it works for, or the shared flight it runs in. */
export interface FailureSink {
  failed(error: Error): void
}

/** One public call (`provision()`, `connectOptions()`, `connect()`) and what went wrong while it waited. */
export class Call implements FailureSink {
  /** The last transient failure retried for this call: the cause of its ERR_BOOT_TIMEOUT. */
  lastFailure: Error | undefined

  failed(error: Error): void {
    this.lastFailure = error
  }
}

/**
 * One run of a shared operation (the cache read or provisioning; the fresh provisioning after a refusal), which
 * several calls may wait on (single-flight.ts): its failures are theirs, and a call that joins late starts with the
 * last one.
 */
export class Flight extends SharedRun<Provisioned> implements FailureSink {
  #lastFailure: Error | undefined
  /** Made when a second call joins: most flights have one. */
  #calls: Call | Set<Call> | undefined

  failed(error: Error): void {
    this.#lastFailure = error
    if (this.#calls instanceof Set) for (const call of this.#calls) call.failed(error)
    else this.#calls?.failed(error)
  }

  /** `call` waits on this flight until the returned function is called. */
  join(call: Call): () => void {
    if (this.#calls === undefined) this.#calls = call
    else if (this.#calls instanceof Set) this.#calls.add(call)
    else this.#calls = new Set([this.#calls, call])
    if (this.#lastFailure !== undefined) call.failed(this.#lastFailure)
    return () => this.#leave(call)
  }

  #leave(call: Call): void {
    if (this.#calls === call) this.#calls = undefined
    else if (this.#calls instanceof Set) this.#calls.delete(call)
  }
}

/** What a bootstrap remembers between calls. */
export interface BootMemory {
  /** The configuration already in the store (a registered secret is stored before the connect, not again after it). */
  stored: DeviceConfig | undefined
  /** The broker URL of `urlConfig`, the configuration last asked for (one configuration at a time, mostly). */
  urlConfig: DeviceConfig | undefined
  brokerUrl: string
  /** The provisioning URL as events and logs show it (made when first needed: a cached boot never shows it). */
  shownUrl: string | undefined
  /** Start-up jitter runs before the first provisioning request only. */
  jittered: boolean
  /** The store's audit runs once, with the first cache read. */
  audited: boolean
  /**
   * The flights running now, if any (single-flight.ts, boot/flights.ts): concurrent calls share one cache read or
   * provisioning (`load`), and one fresh provisioning after a refusal (`fresh`).
   */
  load: Flight | undefined
  fresh: Flight | undefined
}

export interface BootContext {
  readonly options: ResolvedOptions
  readonly seams: Seams
  readonly report: Reporter
  readonly memory: BootMemory
}

/** The retry loop options of a phase: its policy and clock, and whom its retried failures are told to. */
export function retryLoop(
  context: BootContext,
  phase: 'provision' | 'register' | 'connect',
  sink: FailureSink,
  signal: AbortSignal | undefined,
): RetryLoop {
  return {
    policy: context.options.retry,
    clock: context.seams.clock,
    signal,
    onRetry: (info) => {
      sink.failed(info.error)
      context.report.retry(phase, info)
    },
  }
}
