/**
 * After the first CONNACK: keep the same MqttClient connected for years.
 *
 * mqtt.js owns the reconnects, and we steer it through `client.options`, which it reads on every attempt
 * (TOOLCHAIN.md): each `'reconnect'` event (emitted synchronously just before mqtt.js rebuilds CONNECT) re-signs the
 * credentials, so the aliyun timestamp is fresh, and sets `reconnectPeriod` to the wait that follows should this
 * attempt fail. mqtt.js clears its reconnect interval when an attempt starts and arms it again on 'close', so every
 * wait gets its own jittered delay; a plain mqtt.js client waits a fixed period, in lockstep with the whole fleet
 * (mqtt.js issue 561).
 *
 * A refused CONNACK makes mqtt.js stop reconnecting, so the session decides, once the refused connection has closed:
 * - 4/5/134/135 (credentials revoked): provision afresh, point the same client at the new host and credentials, and
 *   reconnect it with its stores, so the app's listeners, subscriptions and queued messages survive. Fresh
 *   credentials refused too, or a provisioning refusal: a fatal `error` event and the client is ended. A
 *   re-provisioning that fails for a transient reason keeps the old credentials and tries them again after a wait.
 * - 3/136/137/151/159 (unavailable, busy, quota, rate): reconnect after the next jittered wait.
 * - any other code: a fatal `error` event, the client is ended. Never a loop.
 *
 * Credentials that expire are renewed before they do (renewal.ts, issue 18): a clean DISCONNECT, a reconnect with the
 * renewed ones (the same client and stores). The old stay in the cache, and as `#previous`, until the broker accepts
 * the new; a refusal sends the device back to the old (a non-fatal `error`), and the renewal is tried again later.
 */
import type { IClientOptions, MqttClient } from 'mqtt'
import { retargetClient } from './broker-url.js'
import { type Refusal, refusalOf, refusedCredentials } from './connector.js'
import type { DeviceConfig } from './contract.js'
import { withUrl } from './error-urls.js'
import { AbortError, BrokerError, isTransient } from './errors.js'
import { type ReconnectPolicy, reconnectDelay } from './reconnect.js'
import { closeToSwitch, givesUpRenewed, Renewal, renewedEvent, reportReverted } from './renewal.js'
import { type Provisioned, type SessionHooks, signInto } from './session-hooks.js'

/** The state of one supervised client (supervise.ts makes it, and routes mqtt.js's events to it). */
export class Session {
  readonly #client: MqttClient
  readonly #hooks: SessionHooks
  readonly #policy: ReconnectPolicy
  #current: Provisioned
  // Reconnect attempts since the last stable connection; the wait before attempt n is retry event n (issue 12).
  #attempt = 0
  #fresh = false // credentials provisioned after a refusal, not yet accepted by the broker
  #replacing = false // that provisioning is under way
  /** Renewed: the credentials #current replaces, accepted by the broker, kept until it accepts #current. */
  #previous: Provisioned | undefined
  /** Renewed credentials not yet accepted by the broker: cached, and reported `renewed`, once it accepts them. */
  #renewed: DeviceConfig | undefined
  #unaccepted = 0 // attempts with renewed credentials that failed, in a row
  #tried: DeviceConfig // the configuration the last connect attempt went with
  /** A switch to renewed credentials is under way: the timer that closes the connection if the broker does not. */
  #switching: NodeJS.Timeout | undefined
  readonly renewal: Renewal
  #refusal: Refusal | undefined
  #stopped = false
  /** When the current connection was accepted (monotonic ms); stable once it has lasted `policy.stableAfter`. */
  #connectedAt: number | undefined = performance.now()
  #retryTimer: NodeJS.Timeout | undefined
  // Ends re-provisioning when the app ends the client (the bootstrap's `signal` is the boot's: an app may pass
  // AbortSignal.timeout() there). Made when one starts: an abort builds a DOMException, stack and all.
  #controller: AbortController | undefined
  // The caller's own stores (mqtt.js options), restored after a reconnect that had to pin the current ones.
  readonly #incomingStore: IClientOptions['incomingStore']
  readonly #outgoingStore: IClientOptions['outgoingStore']
  /** Removes the session's listeners from the client. */
  readonly #detach: (client: MqttClient) => void

  constructor(
    client: MqttClient,
    first: Provisioned,
    hooks: SessionHooks,
    policy: ReconnectPolicy,
    detach: (client: MqttClient) => void,
  ) {
    this.#client = client
    this.#detach = detach
    this.#current = first
    this.#hooks = hooks
    this.#policy = policy
    this.#incomingStore = client.options.incomingStore
    this.#outgoingStore = client.options.outgoingStore
    this.#tried = first.config
    this.renewal = new Renewal(hooks, (renewed, next) =>
      this.#adopt(renewed, { config: next.config, source: 'server' }),
    )
  }

  delay(n: number): number {
    return reconnectDelay(this.#policy, n, () => this.#hooks.clock.random())
  }

  /** A connection has closed: if it was stable, the backoff starts over (on 'offline', else on 'close'). */
  settle(): void {
    const connectedAt = this.#connectedAt
    this.#connectedAt = undefined
    if (connectedAt === undefined || performance.now() - connectedAt < this.#policy.stableAfter) return
    this.#attempt = 0
    this.#client.options.reconnectPeriod = this.delay(1)
  }

  reconnecting(): void {
    const { config, source } = this.#current
    const [client, hooks, attempt] = [this.#client, this.#hooks, ++this.#attempt]
    this.#tried = config
    client.options.reconnectPeriod = this.delay(attempt + 1)
    const url = hooks.url(config)
    signInto(client.options, hooks, config)
    hooks.report.reconnecting(url, client.options.clientId ?? '', source, attempt)
  }

  connected(): void {
    const hooks = this.#hooks
    const { config, source } = this.#current
    this.#restoreStores()
    // New credentials have proven themselves: now kept (renewed ones replace the old in the cache only now).
    if (this.#renewed === config && this.#tried === config) {
      this.#previous = undefined
      this.#renewed = undefined
      void hooks
        .persist(config)
        .then(() => hooks.report.renewed(renewedEvent(config, hooks)))
        .catch(() => {}) // persist() reports its own failures; a listener that throws is the app's
    } else if (this.#fresh) void hooks.persist(config)
    this.#fresh = false
    this.#connectedAt = performance.now()
    hooks.report.reconnected(hooks.url(config), this.#client.options.clientId ?? '', source, this.#attempt)
    // Renewed while this attempt was on its way with the credentials before: switch now.
    if (this.#tried !== config) this.#switchNow()
    else this.renewal.arm(config)
  }

  failed(error: Error & { code?: unknown }): void {
    if (this.#stopped) return
    const refusal = refusalOf(error, this.#hooks.renewsCertificate)
    if (refusal === undefined) return
    this.#refusal = refusal.kind === 'fatal' ? { ...refusal, error: withUrl(refusal.error, this.#url()) } : refusal
    // mqtt.js holds its reconnect back after a refused CONNACK, not a TLS alert: its timer (armed on the 'close' after
    // this) would retry the refused certificate while the new one is issued. reconnecting() sets it again.
    if (refusal.kind === 'revoked' && refusal.returnCode === 0) this.#client.options.reconnectPeriod = 0
  }

  closed(): void {
    this.settle()
    const client = this.#client
    const decided = this.#refusal
    this.#refusal = undefined
    if (this.#stopped || client.disconnecting) return
    if (this.#switching !== undefined) {
      clearTimeout(this.#switching)
      this.#switching = undefined
      this.#reconnectNow() // with the renewed credentials (reconnecting() signs with #current)
      return
    }
    const lost = withUrl(
      new BrokerError('ERR_BROKER_CONNECT', 'connection to the broker lost', { transient: true }),
      this.#url(),
    )
    if (this.#renewedFailed(decided)) {
      this.#revert(decided)
    } else if (decided?.kind === 'revoked' && this.#tried === this.#previous?.config) {
      // The attempt went with the old credentials, renewed meanwhile, and the broker refused them (a server may revoke
      // them once it issued the new): nothing to go back to; the renewed ones are tried now.
      this.#hooks.report.reconnectRejected(decided.returnCode, this.#previous.source, false)
      this.#previous = undefined
      this.#reconnectNow()
    } else if (decided === undefined) {
      this.#waiting(client.options.reconnectPeriod ?? 0, lost) // mqtt.js has armed its own timer with reconnectPeriod
    } else if (decided.kind === 'retry') {
      this.#reconnectLater(client.options.reconnectPeriod ?? this.delay(this.#attempt + 1), lost)
    } else if (decided.kind === 'fatal') {
      this.#giveUp(decided.error)
    } else {
      this.#revoked(decided.returnCode)
    }
  }

  stop(): void {
    const client = this.#client
    this.#stopped = true
    clearTimeout(this.#retryTimer)
    clearTimeout(this.#switching)
    this.renewal.stop()
    this.#controller?.abort()
    this.#restoreStores()
    this.#detach(client)
  }

  #url(): string {
    return this.#hooks.url(this.#current.config)
  }

  /** Point the client at the current configuration's broker (the host may change with new credentials). */
  #retarget(): void {
    retargetClient(this.#client.options, this.#url(), this.#hooks.servername)
  }

  #restoreStores(): void {
    Object.assign(this.#client.options, { incomingStore: this.#incomingStore, outgoingStore: this.#outgoingStore })
  }

  /** Reconnect now, keeping the message stores (mqtt.js's reconnect() makes new, empty ones otherwise). */
  #reconnectNow(): void {
    if (this.#stopped) return
    const client = this.#client
    client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore })
  }

  /** Report the wait before the next reconnect attempt (its timer is mqtt.js's or #reconnectLater's). */
  #waiting(delayMs: number, error: Error): void {
    this.#hooks.report.reconnectWait(delayMs, this.#attempt + 1, error)
  }

  #reconnectLater(delayMs: number, error: Error): void {
    this.#waiting(delayMs, error)
    clearTimeout(this.#retryTimer)
    this.#retryTimer = setTimeout(() => this.#reconnectNow(), delayMs)
  }

  #giveUp(error: Error): void {
    this.stop()
    this.#hooks.report.sessionEnded(error)
    this.#client.end(true)
  }

  #revoked(returnCode: number): void {
    const hooks = this.#hooks
    const { config, source } = this.#current
    const fresh = this.#fresh
    this.#previous = this.#renewed = undefined // re-provisioned: no renewal to go back from
    hooks.report.reconnectRejected(returnCode, source, !fresh)
    if (fresh) {
      this.#giveUp(withUrl(refusedCredentials(returnCode, 'fresh'), hooks.url(config)))
      return
    }
    this.#controller ??= new AbortController()
    this.#replacing = true
    hooks.replace(config, this.#controller.signal).then(
      (next) => {
        this.#replacing = false
        if (this.#stopped) return
        this.#current = next
        this.#fresh = true
        this.#retarget()
        this.#reconnectNow()
      },
      (failure: unknown) => {
        this.#replacing = false
        if (this.#stopped) return
        const error = failure instanceof Error ? failure : new Error(String(failure))
        // A refusal, an answer we cannot use, or an abort will not change by trying again.
        if (error instanceof AbortError || !isTransient(error)) {
          this.#giveUp(error)
          return
        }
        // The server is unreachable for now: keep what we have (the refusal may pass) and try it again later.
        hooks.report.nonFatal(error)
        this.#reconnectLater(this.delay(this.#attempt + 1), error)
      },
    )
  }

  /**
   * Renewed credentials for `renewed`: switched to now when connected, else at the next attempt; false when dropped
   * (the session re-provisioned meanwhile after a refusal: those win; the app is ending the client).
   */
  #adopt(renewed: DeviceConfig, next: Provisioned): boolean {
    if (this.#stopped || this.#replacing || this.#client.disconnecting || renewed !== this.#current.config) return false
    this.#previous ??= this.#current
    this.#current = next
    this.#renewed = next.config
    this.#unaccepted = 0
    this.#retarget()
    // Only once mqtt.js has said 'connect': from the CONNACK until then it resends its outgoing store, and what the
    // app publishes meanwhile waits in a queue that a closing connection fails. connected() switches otherwise.
    if (this.#connectedAt !== undefined) this.#switchNow()
    return true
  }

  #switchNow(): void {
    // Not while a graceful end() waits for its PUBACKs on this connection; closed() reconnects after the switch.
    if (!this.#client.disconnecting) this.#switching ??= closeToSwitch(this.#client)
  }

  /** Whether an attempt with renewed credentials failed so that the previous ones are used again (renewal.ts). */
  #renewedFailed(decided: Refusal | undefined): boolean {
    const previous = this.#previous
    if (previous === undefined || this.#tried !== this.#renewed) return false // #renewed is #current's config
    const expiresAt = this.#hooks.renewalOf(previous.config)?.lifetime.expiresAt
    return givesUpRenewed(decided, ++this.#unaccepted, expiresAt, this.#hooks.clock.now())
  }

  /** Back to the previous credentials, which the broker accepted, and renew again later. */
  #revert(decided: Refusal | undefined): void {
    reportReverted(this.#hooks.report, decided, this.#url())
    this.#current = this.#previous as Provisioned
    this.#previous = undefined
    this.#renewed = undefined
    this.#retarget()
    this.#reconnectNow()
    this.renewal.retryLater(this.#current.config)
  }
}
