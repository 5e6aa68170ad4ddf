/**
 * The session's renewal clock (issue 18): credentials that expire are renewed before they do, `renewBeforeMs` ahead
 * (certificates/schedule.ts says when), then handed to the session, which switches to them at a reconnect of its own
 * and keeps the old ones until the broker has accepted the new (session.ts). One renewal at a time per session.
 *
 * A renewal that fails, after the `retry` policy's own retries, is reported (a non-fatal `error`) and tried again
 * halfway to the expiry, so a bounded number of times. Once the credentials have expired the timer stops: the
 * connection may well stay up (a broker checks a certificate or a token when a connection opens), and the next
 * reconnect that the broker refuses makes a fresh claim (the session's refusal path).
 *
 * The time is the injected clock's; the waits are real timers (the global setTimeout, so test runners' fake timers
 * drive them too), in steps of at most six hours, after each of which the clock is read again: a Node timer holds
 * 24.8 days at most, and a clock that jumps (a device that slept, NTP) is followed. Not the clock's sleep: a fake
 * clock whose sleeps pass at once (retry tests) would renew at once, over and over; with real waits, a clock that
 * does not move never renews. The timers are unref'd: a renewal due keeps no process alive.
 */
import type { MqttClient } from 'mqtt'
import { type Lifetime, retryTime } from './certificates/schedule.js'
import type { Clock } from './clock.js'
import { type Refusal, refusedCredentials } from './connector.js'
import type { DeviceConfig } from './contract.js'
import { withUrl } from './error-urls.js'
import { AbortError, BrokerError } from './errors.js'
import type { RenewedEvent } from './events.js'
import type { Reporter } from './report.js'

/** When to renew a configuration's credentials, and the lifetime that says so. */
export interface RenewalPlan {
  readonly renewAt: number
  readonly lifetime: Lifetime
}

/** What the renewal needs from the session's hooks. */
export interface RenewalHooks {
  /** When `config` is renewed; `undefined` when its credentials do not expire. */
  renewalOf(config: DeviceConfig): RenewalPlan | undefined
  /** New credentials for `config`: a renewal, or once expired a fresh claim (retried; rejects when spent). */
  renew(config: DeviceConfig, signal: AbortSignal): Promise<{ config: DeviceConfig }>
  report: Pick<Reporter, 'renewing' | 'renewed' | 'nonFatal'>
  clock: Clock
}

/** The longest single wait: well below a Node timer's limit. */
const STEP_MS = 6 * 3600_000

export class Renewal {
  readonly #hooks: RenewalHooks
  /** The session's: use `next` in place of `renewed`, the credentials this renewal was for; false when it did not. */
  readonly #adopt: (renewed: DeviceConfig, next: { config: DeviceConfig }) => boolean
  /** The credentials the timer is for, and the renewals of them so far. */
  #config: DeviceConfig | undefined
  #attempt = 0
  #controller: AbortController | undefined

  constructor(hooks: RenewalHooks, adopt: (renewed: DeviceConfig, next: { config: DeviceConfig }) => boolean) {
    this.#hooks = hooks
    this.#adopt = adopt
  }

  /** Renew `config` when it is due (it has just been accepted by the broker); the timer of any other is dropped. */
  arm(config: DeviceConfig): void {
    if (this.#config === config) return
    this.#config = config
    this.#attempt = 0
    this.#start(config, this.#hooks.renewalOf(config)?.renewAt)
  }

  /**
   * Renewing `config` failed (the server, or the broker refusing what it gave): try again halfway to the expiry, at
   * least a second from now; once expired, no more (see the module's comment).
   */
  retryLater(config: DeviceConfig): void {
    this.#config = config
    const lifetime = this.#hooks.renewalOf(config)?.lifetime
    const now = this.#hooks.clock.now()
    this.#start(config, lifetime === undefined || lifetime.expiresAt <= now ? undefined : retryTime(lifetime, now))
  }

  stop(): void {
    this.#controller?.abort()
    this.#controller = undefined
    this.#config = undefined
  }

  #start(config: DeviceConfig, at: number | undefined): void {
    this.#controller?.abort()
    this.#controller = undefined
    if (at === undefined) return
    const controller = new AbortController()
    this.#controller = controller
    void this.#run(config, at, controller.signal)
  }

  async #run(config: DeviceConfig, at: number, signal: AbortSignal): Promise<void> {
    const { clock, report } = this.#hooks
    try {
      await waitUntil(clock, at, signal)
      const lifetime = this.#hooks.renewalOf(config)?.lifetime
      if (lifetime === undefined) return
      const { productKey, deviceName } = config.device
      report.renewing({
        credential: lifetime.credential,
        productKey,
        deviceName,
        expiresAt: new Date(lifetime.expiresAt).toISOString(),
        expired: clock.now() >= lifetime.expiresAt,
        attempt: ++this.#attempt,
      })
      const next = await this.#hooks.renew(config, signal)
      // Not taken (the session re-provisioned meanwhile, or is ending): the next arm() starts over, even for `config`.
      if (!signal.aborted && !this.#adopt(config, next)) this.#config = undefined
    } catch (error) {
      if (signal.aborted) return // stopped, or another schedule took its place
      report.nonFatal(error)
      this.retryLater(config)
    }
  }
}

/**
 * MQTT's DISCONNECT with no reason code and no properties: the same two bytes in 3.1.1 and in 5 ("normal
 * disconnection", MQTT 5.0 3.14.2.1). Written by the session itself to switch credentials: mqtt.js's end() would end
 * the client and close its stores. After a DISCONNECT the broker drops the will: a renewal is not an outage.
 */
const DISCONNECT = Buffer.from([0xe0, 0x00])

/** How long a broker has to close the connection after that DISCONNECT, before the session closes it. */
const SWITCH_CLOSE_MS = 5000

/**
 * Close `client`'s connection cleanly, for the session to reconnect at once with renewed credentials (on 'close').
 * Returns the timer that closes it anyway if the broker does not within {@link SWITCH_CLOSE_MS}.
 */
export function closeToSwitch(client: MqttClient): NodeJS.Timeout {
  const stream = client.stream
  client.options.reconnectPeriod = 0 // the session reconnects, not mqtt.js's timer
  // From here mqtt.js keeps what is published (QoS 1 and 2 in the outgoing store, resent once reconnected; QoS 0
  // queued) instead of writing it to a stream that is ending.
  client.connected = false
  const timer = setTimeout(() => stream.destroy(), SWITCH_CLOSE_MS)
  stream.end(DISCONNECT)
  return timer
}

/** Failed attempts with renewed credentials after which the session goes back to the previous ones. */
const UNACCEPTED_ATTEMPTS = 3

/**
 * Whether the session gives renewed credentials up for the previous ones, after an attempt with them failed
 * (`decided`: how, if it was a refusal; `failures`: attempts so far): the broker refused them (a CONNACK, a TLS
 * alert) or the connection (a fatal code), or {@link UNACCEPTED_ATTEMPTS} attempts in a row failed otherwise (a broker
 * may reset a handshake it refuses); never once the previous ones (expiring at `previousExpiresAt`) have expired.
 */
export function givesUpRenewed(
  decided: Refusal | undefined,
  failures: number,
  previousExpiresAt: number | undefined,
  now: number,
): boolean {
  // Previous credentials that have expired since are no way back: the refusal path makes a fresh claim instead.
  if (now >= (previousExpiresAt ?? Number.POSITIVE_INFINITY)) return false
  return decided?.kind === 'revoked' || decided?.kind === 'fatal' || failures >= UNACCEPTED_ATTEMPTS
}

/** The session goes back to the previous credentials (givesUpRenewed()): reported as non-fatal, with why. */
export function reportReverted(
  report: Pick<Reporter, 'reconnectRejected' | 'nonFatal'>,
  decided: Refusal | undefined,
  url: string,
): void {
  if (decided?.kind === 'revoked') {
    report.reconnectRejected(decided.returnCode, 'server', false)
    report.nonFatal(withUrl(refusedCredentials(decided.returnCode, 'renewed'), url))
    return
  }
  const why = decided?.kind === 'fatal' ? decided.error.message : `${UNACCEPTED_ATTEMPTS} attempts failed`
  const message = `no connection with the renewed credentials (${why}): the device stays on the previous ones`
  report.nonFatal(withUrl(new BrokerError('ERR_BROKER_CONNECT', message, { transient: true }), url))
}

/** The `renewed` event for `config`, accepted by the broker. */
export function renewedEvent(config: DeviceConfig, hooks: Pick<RenewalHooks, 'renewalOf'>): RenewedEvent {
  const { productKey, deviceName, certificate } = config.device
  const expiresAt = hooks.renewalOf(config)?.lifetime.expiresAt
  return {
    credential: certificate === undefined ? 'secret' : 'certificate',
    productKey,
    deviceName,
    ...(expiresAt === undefined ? {} : { expiresAt: new Date(expiresAt).toISOString() }),
  }
}

/**
 * The shortest step after the first (which waits what the clock says is left): a clock that says the time has not come
 * yet is asked again no sooner, so one that does not move costs four wakes a second, and none once the timer stops.
 */
const MIN_STEP_MS = 250

/** Wait until `clock` says it is `at`, in real steps (see the module's comment); rejects with an AbortError on `signal`. */
function waitUntil(clock: Clock, at: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    const onAbort = () => {
      clearTimeout(timer)
      reject(new AbortError(signal.reason))
    }
    const step = (shortest: number) => {
      const left = at - clock.now()
      // A clock that is not a number (a broken custom one) says nothing: no renewal, and no timer spinning on NaN.
      if (Number.isNaN(left)) return
      if (left <= 0) {
        signal.removeEventListener('abort', onAbort)
        resolve()
        return
      }
      timer = setTimeout(step, Math.max(shortest, Math.min(left, STEP_MS)), MIN_STEP_MS)
      timer.unref?.()
    }
    if (signal.aborted) {
      reject(new AbortError(signal.reason))
      return
    }
    signal.addEventListener('abort', onAbort, { once: true })
    step(0)
  })
}
