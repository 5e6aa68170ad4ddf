/**
 * The shared operations of a bootstrap: concurrent calls share one cache read or provisioning (`load`), and one fresh
 * provisioning after the broker refused credentials (`fresh`). A call joins the operation's Flight, so the failures it
 * retries are the call's too, and a call that joins late starts with the last one.
 */
import type { DeviceConfig } from '../contract.js'
import type { Provisioned } from '../session-hooks.js'
import { anySignal } from '../signals.js'
import { runShared } from '../single-flight.js'
import { type BootContext, type Call, type FailureSink, Flight } from './context.js'
import { load, replace } from './provision.js'

/** The cached configuration, else the server's: one flight for every concurrent call. */
export function provisioned(context: BootContext, call: Call, signal: AbortSignal | undefined): Promise<Provisioned> {
  return shared(context, 'load', call, signal, (flight, sink) =>
    load(context, sink, anySignal(flight, context.options.signal)),
  )
}

/** After `rejected` was refused at boot: concurrent callers share one fresh provisioning. */
export function replaced(
  context: BootContext,
  call: Call,
  rejected: DeviceConfig,
  signal: AbortSignal | undefined,
): Promise<Provisioned> {
  return shared(context, 'fresh', call, signal, (flight, sink) =>
    replace(context, sink, rejected, anySignal(flight, context.options.signal)),
  )
}

/**
 * The same for the session after boot, which outlives the bootstrap's `signal` (an app may well pass
 * AbortSignal.timeout() there): only the session's own signal (the client ended) stops it.
 */
export function replacedForSession(
  context: BootContext,
  rejected: DeviceConfig,
  session: AbortSignal,
): Promise<Provisioned> {
  return shared(context, 'fresh', undefined, undefined, (flight, sink) =>
    replace(context, sink, rejected, anySignal(flight, session)),
  )
}

const newFlight = () => new Flight()

/** Wait for the shared operation `kind` (starting it unless it runs), `call` joined to its flight until it settles. */
function shared(
  context: BootContext,
  kind: 'load' | 'fresh',
  call: Call | undefined,
  signal: AbortSignal | undefined,
  task: (flight: AbortSignal | undefined, sink: FailureSink) => Promise<Provisioned>,
): Promise<Provisioned> {
  const { run, wait } = runShared<Provisioned, Flight, typeof kind>(
    context.memory,
    kind,
    newFlight,
    (flight, s) => task(s, flight),
    signal,
  )
  const leave = call === undefined ? undefined : run?.join(call)
  return leave === undefined ? wait : wait.finally(leave)
}
