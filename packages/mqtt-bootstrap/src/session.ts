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
import type { EventEmitter } from 'eventemitter3'
import type { IClientOptions, MqttClient, MqttProtocol } from 'mqtt'
import type { MqttCredentials } from './auth/strategy.js'
import { parseBrokerHost, STANDARD_PORTS } from './broker-url.js'
import type { Clock } from './clock.js'
import { AUTH_REJECTED_CODES, brokerFailure } from './connector.js'
import type { DeviceConfig } from './contract.js'
import { withUrl } from './error-urls.js'
import { AbortError, BrokerError, errorCode, isTransient } from './errors.js'
import type { BootstrapEvents, CredentialSource } from './events.js'
import type { Logger } from './logger.js'
import { type ReconnectPolicy, reconnectDelay } from './reconnect.js'
import { redactUrl, sealedPassword } from './redact.js'
import { logWait } from './waits.js'

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
  /** Credentials to use after `rejected` was refused: newer cached ones, else the server's (retried). */
  replace(rejected: DeviceConfig, signal: AbortSignal): Promise<Provisioned>
  /** Cache credentials that have just been accepted by the broker. Never rejects. */
  persist(config: DeviceConfig): Promise<void>
  emit: EventEmitter<BootstrapEvents>['emit']
  clock: Clock
  logger: Logger
  /** The caller's mqtt.js servername, kept when the host changes. */
  servername: string | undefined
}

/** What a refused CONNACK asks for, decided on 'error' and done on 'close' (when the refused socket is gone). */
type Refusal = { kind: 'retry' } | { kind: 'revoked'; returnCode: number } | { kind: 'fatal'; error: BrokerError }

/** Watch `client` from its first CONNACK until it is ended. */
export function superviseSession(
  client: MqttClient,
  first: Provisioned,
  hooks: SessionHooks,
  policy: ReconnectPolicy,
): void {
  let current = first
  // Reconnect attempts since the last stable connection. A wait comes before attempt `attempt + 1`, and its retry
  // event carries that number: the first after a lost connection is 1, as in every phase (issue 12; it was 0).
  let attempt = 0
  let fresh = false // credentials provisioned after a refusal, not yet accepted by the broker
  let refusal: Refusal | undefined
  let stopped = false
  let stableTimer: NodeJS.Timeout | undefined
  let retryTimer: NodeJS.Timeout | undefined
  // Ends re-provisioning when the app ends the client. (The bootstrap's `signal` is the boot's: an app may well pass
  // AbortSignal.timeout() there, and the session must outlive it.)
  const controller = new AbortController()
  const delay = (n: number) => reconnectDelay(policy, n, () => hooks.clock.random())
  // The caller's own stores (mqtt.js options), restored after a reconnect that had to pin the current ones.
  const callerStores: Pick<IClientOptions, 'incomingStore' | 'outgoingStore'> = {
    incomingStore: client.options.incomingStore,
    outgoingStore: client.options.outgoingStore,
  }

  const markStableLater = () => {
    clearTimeout(stableTimer)
    stableTimer = setTimeout(() => {
      attempt = 0
      client.options.reconnectPeriod = delay(1)
    }, policy.stableAfter)
    stableTimer.unref()
  }

  /** Reconnect now, keeping the message stores (mqtt.js's reconnect() makes new, empty ones otherwise). */
  const reconnectNow = () => {
    if (stopped) return
    client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore })
  }

  /** Report the wait before the next reconnect attempt (its timer is mqtt.js's or reconnectLater's). */
  const waiting = (delayMs: number, error: Error) => {
    const next = attempt + 1
    const code = errorCode(error) ?? error.name
    hooks.emit('retry', { phase: 'reconnect', attempt: next, delayMs, code, error })
    logWait(hooks.logger, delayMs, 'reconnect', `reconnect attempt ${next}`, {
      phase: 'reconnect',
      attempt: next,
      code,
    })
  }

  const reconnectLater = (delayMs: number, error: Error) => {
    waiting(delayMs, error)
    clearTimeout(retryTimer)
    retryTimer = setTimeout(reconnectNow, delayMs)
  }

  const giveUp = (error: Error) => {
    stop()
    hooks.logger.error({ code: errorCode(error) ?? error.name }, 'session ended')
    hooks.emit('error', { error, fatal: true })
    client.end(true)
  }

  const onReconnect = () => {
    attempt++
    client.options.reconnectPeriod = delay(attempt + 1)
    const url = hooks.url(current.config)
    try {
      const credentials = hooks.sign(current.config)
      client.options.clientId = credentials.clientId
      client.options.username = credentials.username
      client.options.password = sealedPassword(credentials.password)
    } catch (error) {
      // mqtt.js connects right after this event: it goes with the previous fields, and we say why.
      hooks.emit('error', { error: error as Error, fatal: false })
    }
    const clientId = client.options.clientId ?? ''
    hooks.emit('connecting', { url: redactUrl(url), clientId, source: current.source, attempt })
  }

  const onConnect = () => {
    Object.assign(client.options, callerStores)
    if (fresh) void hooks.persist(current.config) // new credentials have proven themselves: now they are kept
    fresh = false
    markStableLater()
    const url = redactUrl(hooks.url(current.config))
    hooks.emit('connected', { url, clientId: client.options.clientId ?? '', source: current.source })
    hooks.logger.info({ url, attempt }, 'reconnected')
  }

  const onError = (error: Error & { code?: unknown }) => {
    if (stopped || typeof error.code !== 'number') return
    const failure = withUrl(brokerFailure(error), hooks.url(current.config))
    if (AUTH_REJECTED_CODES.has(error.code)) refusal = { kind: 'revoked', returnCode: error.code }
    else refusal = failure.transient ? { kind: 'retry' } : { kind: 'fatal', error: failure }
  }

  const onClose = () => {
    clearTimeout(stableTimer)
    const decided = refusal
    refusal = undefined
    if (stopped || client.disconnecting) return
    const lost = withUrl(
      new BrokerError('ERR_BROKER_CONNECT', 'connection to the broker lost', { transient: true }),
      hooks.url(current.config),
    )
    if (decided === undefined) {
      waiting(client.options.reconnectPeriod ?? 0, lost) // mqtt.js has armed its own timer with reconnectPeriod
    } else if (decided.kind === 'retry') {
      reconnectLater(client.options.reconnectPeriod ?? delay(attempt + 1), lost)
    } else if (decided.kind === 'fatal') {
      giveUp(decided.error)
    } else {
      revoked(decided.returnCode)
    }
  }

  const revoked = (returnCode: number) => {
    hooks.emit('auth-rejected', { returnCode, source: current.source, reprovision: !fresh })
    hooks.logger.warn({ returnCode, source: current.source, reprovision: !fresh }, 'credentials rejected on reconnect')
    if (fresh) {
      const message = `broker rejected fresh credentials (CONNACK ${returnCode})`
      const rejected = new BrokerError('ERR_BROKER_AUTH_REJECTED', message, { transient: false, returnCode })
      giveUp(withUrl(rejected, hooks.url(current.config)))
      return
    }
    hooks.replace(current.config, controller.signal).then(
      (next) => {
        if (stopped) return
        current = next
        fresh = true
        retarget(client, hooks.url(next.config), hooks.servername)
        reconnectNow()
      },
      (failure: unknown) => {
        if (stopped) return
        const error = failure instanceof Error ? failure : new Error(String(failure))
        // A refusal, an answer we cannot use, or an abort will not change by trying again.
        if (error instanceof AbortError || !isTransient(error)) {
          giveUp(error)
          return
        }
        // The server is unreachable for now: keep what we have (the refusal may pass) and try it again later.
        hooks.emit('error', { error, fatal: false })
        reconnectLater(delay(attempt + 1), error)
      },
    )
  }

  const stop = () => {
    stopped = true
    clearTimeout(stableTimer)
    clearTimeout(retryTimer)
    controller.abort()
    Object.assign(client.options, callerStores)
    client.off('reconnect', onReconnect)
    client.off('connect', onConnect)
    client.off('close', onClose)
    client.off('error', onError)
    client.off('end', stop)
  }

  client.options.reconnectPeriod = delay(1)
  markStableLater()
  client.on('reconnect', onReconnect)
  client.on('connect', onConnect)
  client.on('close', onClose)
  client.on('error', onError)
  client.on('end', stop)
}

/** Point mqtt.js at another broker: it reads these fields when it builds the next stream. */
function retarget(client: MqttClient, url: string, servername: string | undefined): void {
  const target = parseBrokerHost(url) // a URL from brokerUrl(): it has a scheme
  if (target?.protocol === undefined) return
  const options = client.options
  options.protocol = target.protocol as MqttProtocol
  options.defaultProtocol = target.protocol as MqttProtocol
  options.host = target.hostname
  options.hostname = target.hostname
  options.port = target.port ?? STANDARD_PORTS[target.protocol]
  if (target.protocol.startsWith('ws')) options.path = target.path ?? '/'
  // mqtt.js derives the TLS server name from the first host and keeps it: derive it again for the new one.
  if (servername === undefined) delete options.servername
}
