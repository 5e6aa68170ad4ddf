/**
 * One call per fact: each method emits the typed event and writes its log line together, from the same values, so
 * the two cannot disagree (the same URL, attempt and code). Nothing below the bootstrap emits or logs a fact any other
 * way: the boot phases call these, and so does the session after the first CONNACK (its facts, at the end).
 */
import type { DeviceConfig } from './contract.js'
import { errorCode } from './errors.js'
import type {
  BootstrapEvents,
  CacheEvent,
  CredentialSource,
  RenewedEvent,
  RenewingEvent,
  RetryEvent,
} from './events.js'
import type { EventEmitter } from './lazy.js'
import { type LogArea, type Logger, logFor } from './logger.js'
import type { RetryInfo } from './retry.js'
import { logRetry, logWait } from './waits.js'

type Emitter = Pick<InstanceType<typeof EventEmitter<BootstrapEvents>>, 'emit'>

export class Reporter {
  readonly #emitter: Emitter
  readonly #logger: Logger

  constructor(emitter: Emitter, logger: Logger) {
    this.#emitter = emitter
    this.#logger = logger
  }

  /** The area logger (each also feeds the `debug` namespace `mqtt-bootstrap:<area>`), e.g. for the session. */
  log(area: LogArea): Logger {
    return logFor(this.#logger, area) // memoised per logger there: nothing kept per bootstrap
  }

  startupJitter(delayMs: number): void {
    logWait(this.log('boot'), delayMs, 'startup-jitter', 'attempt 1', { attempt: 1 })
  }

  provisioning(url: string, attempt: number): void {
    this.#emitter.emit('provisioning', { url, attempt })
    this.log('provision').debug({ url, attempt }, 'provisioning')
  }

  /** A retried failure of a boot phase; the provision phase's event code is "77777" by contract, its error's code beside. */
  retry(phase: Exclude<RetryEvent['phase'], 'reconnect'>, info: RetryInfo): void {
    const { attempt, delayMs, error } = info
    const code = phase === 'provision' ? '77777' : (errorCode(error) ?? error.name)
    this.#emitter.emit('retry', { phase, attempt, delayMs, code, error } as RetryEvent)
    // The line carries the event's code too: for provisioning "77777" as `resultCode`, beside the error's own code.
    logRetry(this.log(phase), phase, info, phase === 'provision' ? { resultCode: code } : {})
  }

  provisioned({ device, connect }: DeviceConfig, source: CredentialSource): void {
    const { productKey, deviceName } = device
    this.#emitter.emit('provisioned', { source, productKey, deviceName, ...connect })
    this.log('provision').info({ source, productKey, deviceName, host: connect.host }, 'provisioned')
  }

  cache(event: CacheEvent): void {
    const { action, key } = event
    const reason = 'reason' in event ? event.reason : undefined
    if (event.action === 'miss' && event.error !== undefined) {
      this.log('store').warn({ code: event.error.code, reason }, 'credential cache unusable, treated as a miss')
    }
    this.log('store').debug({ action, cacheKey: key, reason }, `cache ${action}`)
    this.#emitter.emit('cache', event)
  }

  registering(strategy: string, productKey: string, deviceName: string, attempt: number): void {
    this.#emitter.emit('registering', { strategy, productKey, deviceName, attempt })
    this.log('register').debug({ strategy, productKey, deviceName, attempt }, 'registering')
  }

  registered(strategy: string, productKey: string, deviceName: string): void {
    this.#emitter.emit('registered', { strategy, productKey, deviceName })
    this.log('register').info({ strategy, productKey, deviceName }, 'registered')
  }

  /** Log-only facts of registration (no event): a secret found from an earlier registration, a store that forgets. */
  registrationNote(productKey: string, deviceName: string, note: 'earlier' | 'in-memory'): void {
    const fields = { productKey, deviceName }
    if (note === 'earlier') this.log('register').info(fields, 'using the device secret registered earlier')
    else {
      const message =
        'registering into an in-memory credential store: the secret is issued once and lost when the process ends'
      this.log('register').warn(fields, message)
    }
  }

  /** `url` is the broker URL as shown: it passed the contract, so it has no credentials or query. */
  connecting(url: string, clientId: string, source: CredentialSource, attempt: number): void {
    this.#emitter.emit('connecting', { url, clientId, source, attempt })
    this.log('connect').debug({ url, clientId, attempt }, 'connecting')
  }

  connected(url: string, clientId: string, source: CredentialSource): void {
    this.#emitter.emit('connected', { url, clientId, source })
    this.log('connect').info({ url, clientId, source }, 'connected')
  }

  authRejected(returnCode: number, source: CredentialSource, reprovision: boolean): void {
    this.#emitter.emit('auth-rejected', { returnCode, source, reprovision })
    this.log('connect').warn({ returnCode, source, reprovision }, 'credentials rejected')
  }

  /** A problem worked around: a non-fatal `error` event. */
  nonFatal(error: unknown): void {
    const wrapped = error instanceof Error ? error : new Error(String(error))
    this.log('boot').warn({ code: errorCode(wrapped) ?? wrapped.name, message: wrapped.message }, 'non-fatal error')
    this.#emitter.emit('error', { error: wrapped, fatal: false })
  }

  /** A public call failed: the fatal `error` event (its promise rejects with the same error). */
  fatal(error: Error): void {
    this.#emitter.emit('error', { error, fatal: true })
  }

  // The session's facts (session.ts), after the first CONNACK.

  /** The wait before reconnect attempt `attempt` (the connection was lost, or a reconnect failed). */
  reconnectWait(delayMs: number, attempt: number, error: Error): void {
    const code = errorCode(error) ?? error.name
    this.#emitter.emit('retry', { phase: 'reconnect', attempt, delayMs, code, error })
    logWait(this.log('session'), delayMs, 'reconnect', `reconnect attempt ${attempt}`, {
      phase: 'reconnect',
      attempt,
      code,
    })
  }

  reconnecting(url: string, clientId: string, source: CredentialSource, attempt: number): void {
    this.#emitter.emit('connecting', { url, clientId, source, attempt })
    this.log('session').debug({ url, clientId, attempt }, 'reconnecting')
  }

  reconnected(url: string, clientId: string, source: CredentialSource, attempt: number): void {
    this.#emitter.emit('connected', { url, clientId, source })
    this.log('session').info({ url, attempt }, 'reconnected')
  }

  reconnectRejected(returnCode: number, source: CredentialSource, reprovision: boolean): void {
    this.#emitter.emit('auth-rejected', { returnCode, source, reprovision })
    this.log('session').warn({ returnCode, source, reprovision }, 'credentials rejected on reconnect')
  }

  renewing(event: RenewingEvent): void {
    this.#emitter.emit('renewing', event)
    const { credential, expiresAt, expired, attempt } = event
    this.log('session').info({ credential, expiresAt, expired, attempt }, 'renewing credentials')
  }

  renewed(event: RenewedEvent): void {
    this.#emitter.emit('renewed', event)
    this.log('session').info({ credential: event.credential, expiresAt: event.expiresAt }, 'renewed credentials')
  }

  /** The session gives up: the client is ended, with a fatal `error` event. */
  sessionEnded(error: Error): void {
    this.log('session').error({ code: errorCode(error) ?? error.name }, 'session ended')
    this.#emitter.emit('error', { error, fatal: true })
  }
}
