/**
 * What every boot phase is given: the bootstrap's context (its resolved options, its seams, its reporter and the
 * little it remembers between calls) and the call it works for. Phases are functions of these two, nothing else.
 */
import type { DeviceConfig } from '../contract.js'
import type { ResolvedOptions } from '../options.js'
import type { Reporter } from '../report.js'
import type { Seams } from '../seams.js'
import type { Provisioned } from '../session.js'
import type { SingleFlight } from '../single-flight.js'

/** One public call (`provision()`, `connectOptions()`, `connect()`): its signal and what went wrong during it. */
export interface Call {
  readonly signal: AbortSignal | undefined
  /** The last transient failure retried while this call waited: the cause of its ERR_BOOT_TIMEOUT. */
  lastFailure?: Error
}

/** What a bootstrap remembers between calls. */
export interface BootMemory {
  /** Configurations already in the store (a registered secret is stored before the connect, not again after it). */
  readonly stored: WeakSet<DeviceConfig>
  /** The broker URL of each configuration, computed once. */
  readonly brokerUrls: WeakMap<DeviceConfig, string>
  /** The provisioning URL as events and logs show it (made when first needed: a cached boot never shows it). */
  shownUrl: string | undefined
  /** Start-up jitter runs before the first provisioning request only. */
  jittered: boolean
  /** The store's audit runs once, with the first cache read. */
  audited: boolean
  /** The last failure retried by any call: what a call that joins a failing flight starts with as its cause. */
  lastRetried: Error | undefined
}

export interface BootContext {
  readonly options: ResolvedOptions
  readonly seams: Seams
  readonly report: Reporter
  readonly memory: BootMemory
  /** Concurrent calls share one cache read or provisioning, and one fresh provisioning after a refusal. */
  readonly load: SingleFlight<Provisioned>
  readonly fresh: SingleFlight<Provisioned>
  /** The calls running now: a retried failure is recorded in each (shared flights serve several at once). */
  readonly calls: Set<Call>
}

/** A retried failure, recorded in every running call (each keeps its own: a new call does not wipe another's). */
export function recordFailure(context: BootContext, error: Error): void {
  context.memory.lastRetried = error
  for (const call of context.calls) call.lastFailure = error
}

/**
 * A new call: it may join a flight that is failing already (another call's provisioning, retried), whose last
 * failure is then its cause too, until a newer one; with no call running, nothing is in flight to join.
 */
export function startCall(context: BootContext, signal: AbortSignal | undefined): Call {
  const call: Call = { signal, lastFailure: context.calls.size > 0 ? context.memory.lastRetried : undefined }
  context.calls.add(call)
  return call
}
