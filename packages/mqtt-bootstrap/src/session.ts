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
 */
import type { IClientOptions, MqttClient } from 'mqtt'
import type { MqttCredentials } from './auth/strategy.js'
import { retargetClient } from './broker-url.js'
import type { Clock } from './clock.js'
import { AUTH_REJECTED_CODES, brokerFailure } from './connector.js'
import type { DeviceConfig } from './contract.js'
import { withUrl } from './error-urls.js'
import { AbortError, BrokerError, isTransient } from './errors.js'
import type { CredentialSource } from './events.js'
import { type ReconnectPolicy, reconnectDelay } from './reconnect.js'
import { sealedPassword } from './redact.js'
import type { Reporter } from './report.js'
import { isClientCertificateRefusal } from './tls-failures.js'

export interface Provisioned {
  config: DeviceConfig
  source: CredentialSource
}

/** What the session needs from its bootstrap. */
export interface SessionHooks {
  /** The broker URL for `config`. */
  url(config: DeviceConfig): string
  /** Freshly signed CONNECT fields for `config` (may throw: a custom strategy's trouble). */
  sign(config: DeviceConfig): MqttCredentials
  /** The device's own key and certificate for `config` (the `certificate` option), if it has them. */
  clientCertificate(config: DeviceConfig, ws: object | undefined): { key: Buffer; cert: string } | undefined
  /** Whether a refused client certificate can be replaced by a new claim (the `certificate` option). */
  readonly renewsCertificate: boolean
  /** Credentials to use after `rejected` was refused: newer cached ones, else the server's (retried). */
  replace(rejected: DeviceConfig, signal: AbortSignal): Promise<Provisioned>
  /** Cache credentials that have just been accepted by the broker. Never rejects. */
  persist(config: DeviceConfig): Promise<void>
  /** Every event and its log line (report.ts). */
  report: Pick<
    Reporter,
    'reconnectWait' | 'reconnecting' | 'reconnected' | 'reconnectRejected' | 'sessionEnded' | 'nonFatal'
  >
  clock: Clock
  /** The caller's mqtt.js servername, kept when the host changes. */
  servername: string | undefined
}

/** What a refused CONNACK asks for, decided on 'error' and done on 'close' (when the refused socket is gone). */
type Refusal = { kind: 'retry' } | { kind: 'revoked'; returnCode: number } | { kind: 'fatal'; error: BrokerError }

const sessions = new WeakMap<MqttClient, Session>() // mqtt.js calls the listeners below with the client as `this`

/**
 * Watch `client` from its first CONNACK until it is ended. One object per client, listeners shared by all clients (no
 * closures per client), and a connection's stability is a timestamp checked when it closes (no timer per connect).
 */
export function superviseSession(
  client: MqttClient,
  first: Provisioned,
  hooks: SessionHooks,
  policy: ReconnectPolicy,
): void {
  const session = new Session(client, first, hooks, policy)
  sessions.set(client, session)
  client.options.reconnectPeriod = session.delay(1)
  for (const [event, listener] of LISTENERS) client.on(event, listener)
}

function onOffline(this: MqttClient): void {
  sessions.get(this)?.settle()
}
function onReconnect(this: MqttClient): void {
  sessions.get(this)?.reconnecting()
}
function onConnect(this: MqttClient): void {
  sessions.get(this)?.connected()
}
function onClose(this: MqttClient): void {
  sessions.get(this)?.closed()
}
function onError(this: MqttClient, error: Error & { code?: unknown }): void {
  sessions.get(this)?.failed(error)
}
function onEnd(this: MqttClient): void {
  sessions.get(this)?.stop()
}

/**
 * What the session listens to, added by superviseSession() and removed by stop() from the one list. mqtt.js emits
 * 'offline' on the close of a connected client, just before it arms the reconnect with reconnectPeriod.
 */
const LISTENERS = [
  ['offline', onOffline],
  ['reconnect', onReconnect],
  ['connect', onConnect],
  ['close', onClose],
  ['error', onError],
  ['end', onEnd],
] as const

class Session {
  readonly #client: MqttClient
  readonly #hooks: SessionHooks
  readonly #policy: ReconnectPolicy
  #current: Provisioned
  // Reconnect attempts since the last stable connection. A wait comes before attempt `attempt + 1`, and its retry
  // event carries that number: the first after a lost connection is 1, as in every phase (issue 12; it was 0).
  #attempt = 0
  #fresh = false // credentials provisioned after a refusal, not yet accepted by the broker
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

  constructor(client: MqttClient, first: Provisioned, hooks: SessionHooks, policy: ReconnectPolicy) {
    this.#client = client
    this.#current = first
    this.#hooks = hooks
    this.#policy = policy
    this.#incomingStore = client.options.incomingStore
    this.#outgoingStore = client.options.outgoingStore
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
    client.options.reconnectPeriod = this.delay(attempt + 1)
    const url = hooks.url(config)
    try {
      const credentials = hooks.sign(config)
      client.options.clientId = credentials.clientId
      client.options.username = credentials.username
      client.options.password = credentials.password === undefined ? undefined : sealedPassword(credentials.password)
      // A re-provisioned device has a new key and certificate: mqtt.js hands client.options to tls.connect.
      const own = hooks.clientCertificate(config, client.options.wsOptions)
      if (own !== undefined) Object.assign(client.options, own)
    } catch (error) {
      // mqtt.js connects right after this event: it goes with the previous fields, and we say why.
      hooks.report.nonFatal(error)
    }
    hooks.report.reconnecting(url, client.options.clientId ?? '', source, attempt)
  }

  connected(): void {
    const hooks = this.#hooks
    this.#restoreStores()
    if (this.#fresh) void hooks.persist(this.#current.config) // new credentials have proven themselves: now kept
    this.#fresh = false
    this.#connectedAt = performance.now()
    const { config, source } = this.#current
    hooks.report.reconnected(hooks.url(config), this.#client.options.clientId ?? '', source, this.#attempt)
  }

  failed(error: Error & { code?: unknown }): void {
    if (this.#stopped) return
    // A TLS alert refusing the client certificate refuses the credentials, as a CONNACK 5 does (returnCode 0).
    const refused = isClientCertificateRefusal(error)
    if (typeof error.code !== 'number' && !refused) return
    const failure = withUrl(brokerFailure(error), this.#hooks.url(this.#current.config))
    const revoked = refused ? this.#hooks.renewsCertificate : AUTH_REJECTED_CODES.has(error.code as number)
    if (revoked) this.#refusal = { kind: 'revoked', returnCode: refused ? 0 : (error.code as number) }
    else this.#refusal = failure.transient ? { kind: 'retry' } : { kind: 'fatal', error: failure }
    // mqtt.js holds its reconnect back after a refused CONNACK, not a TLS alert: its timer (armed on the 'close' after
    // this) would retry the refused certificate while the new one is issued. reconnecting() sets it again.
    if (revoked && refused) this.#client.options.reconnectPeriod = 0
  }

  closed(): void {
    this.settle()
    const client = this.#client
    const decided = this.#refusal
    this.#refusal = undefined
    if (this.#stopped || client.disconnecting) return
    const lost = withUrl(
      new BrokerError('ERR_BROKER_CONNECT', 'connection to the broker lost', { transient: true }),
      this.#hooks.url(this.#current.config),
    )
    if (decided === undefined) {
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
    this.#controller?.abort()
    this.#restoreStores()
    sessions.delete(client)
    for (const [event, listener] of LISTENERS) client.off(event, listener)
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
    hooks.report.reconnectRejected(returnCode, source, !fresh)
    if (fresh) {
      const message =
        returnCode === 0
          ? 'broker refused the fresh client certificate (a TLS alert)'
          : `broker rejected fresh credentials (CONNACK ${returnCode})`
      const rejected = new BrokerError('ERR_BROKER_AUTH_REJECTED', message, { transient: false, returnCode })
      this.#giveUp(withUrl(rejected, hooks.url(config)))
      return
    }
    this.#controller ??= new AbortController()
    hooks.replace(config, this.#controller.signal).then(
      (next) => {
        if (this.#stopped) return
        this.#current = next
        this.#fresh = true
        retargetClient(this.#client.options, hooks.url(next.config), hooks.servername)
        this.#reconnectNow()
      },
      (failure: unknown) => {
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
}
