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
 * A reconnect refused with 4/5/134/135 (credentials revoked) makes mqtt.js stop. We then provision afresh, point the
 * same client at the new host and credentials, and reconnect it with its stores, so the app's listeners, subscriptions
 * and queued messages survive. Fresh credentials refused too: a fatal `error` event and the client is ended, never a
 * loop. A re-provisioning that fails keeps the old credentials (in the cache too) and tries them again after a wait.
 */
import type { EventEmitter } from 'eventemitter3'
import type { MqttClient, MqttProtocol } from 'mqtt'
import type { MqttCredentials } from './auth/strategy.js'
import { type BrokerProtocol, STANDARD_PORTS } from './broker-url.js'
import type { Clock } from './clock.js'
import { AUTH_REJECTED_CODES } from './connector.js'
import type { DeviceConfig } from './contract.js'
import { BrokerError } from './errors.js'
import type { BootstrapEvents, CredentialSource } from './events.js'
import type { Logger } from './logger.js'
import { redactUrl } from './redact.js'

/** Waits between reconnect attempts: full jitter between `minDelay` and a ceiling that grows by `factor`. */
export interface ReconnectOptions {
  /** Shortest wait before a reconnect, in ms. @default 1000 (or `mqtt.reconnectPeriod`) */
  minDelay?: number
  /** Longest wait, in ms. @default 60000 */
  maxDelay?: number
  /** Growth of the ceiling per failed attempt. @default 2 */
  factor?: number
  /** A connection that lasts this long (ms) counts as stable: the backoff starts over. @default 30000 */
  stableAfter?: number
}

export type ReconnectPolicy = Readonly<Required<ReconnectOptions>>

export const RECONNECT_DEFAULTS: ReconnectPolicy = Object.freeze({
  minDelay: 1000,
  maxDelay: 60_000,
  factor: 2,
  stableAfter: 30_000,
})

/** The wait before reconnect attempt `n` (1-based): uniform between minDelay and min(maxDelay, minDelay × factor^n). */
export function reconnectDelay(policy: ReconnectPolicy, n: number, random: () => number): number {
  const ceiling = Math.min(policy.maxDelay, policy.minDelay * policy.factor ** n)
  return Math.max(1, Math.floor(policy.minDelay + random() * Math.max(0, ceiling - policy.minDelay)))
}

export interface Provisioned {
  config: DeviceConfig
  source: CredentialSource
}

/** What the session needs from its bootstrap. */
export interface SessionHooks {
  /** The broker URL and freshly signed CONNECT fields for `config`. */
  sign(config: DeviceConfig): { url: string; credentials: MqttCredentials }
  /** Credentials to use after `rejected` was refused: newer cached ones, else the server's (retried). */
  replace(rejected: DeviceConfig, signal: AbortSignal): Promise<Provisioned>
  emit: EventEmitter<BootstrapEvents>['emit']
  clock: Clock
  logger: Logger
  /** The caller's mqtt.js options (a servername given there is kept when the host changes). */
  servername: string | undefined
  /** The bootstrap's own signal: stops re-provisioning. */
  signal: AbortSignal | undefined
}

/** Watch `client` from its first CONNACK until it is ended. */
export function superviseSession(
  client: MqttClient,
  first: Provisioned,
  hooks: SessionHooks,
  policy: ReconnectPolicy,
): void {
  let current = first
  let attempt = 0 // reconnect attempts since the last stable connection
  let fresh = false // credentials provisioned after a refusal, not yet accepted by the broker
  let revoked = false // a refusal is being handled: mqtt.js has stopped, we decide what comes next
  let stopped = false
  let stableTimer: NodeJS.Timeout | undefined
  let retryTimer: NodeJS.Timeout | undefined
  const controller = new AbortController()
  const signal = hooks.signal === undefined ? controller.signal : AbortSignal.any([controller.signal, hooks.signal])
  const delay = (n: number) => reconnectDelay(policy, n, () => hooks.clock.random())
  const stores = () => ({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore })

  const markStableLater = () => {
    clearTimeout(stableTimer)
    stableTimer = setTimeout(() => {
      attempt = 0
      client.options.reconnectPeriod = delay(1)
    }, policy.stableAfter)
    stableTimer.unref()
  }

  const onReconnect = () => {
    attempt++
    client.options.reconnectPeriod = delay(attempt + 1)
    const { url, credentials } = hooks.sign(current.config)
    client.options.clientId = credentials.clientId
    client.options.username = credentials.username
    client.options.password = credentials.password
    hooks.emit('connecting', { url: redactUrl(url), clientId: credentials.clientId, source: current.source, attempt })
  }

  const onConnect = () => {
    fresh = false
    markStableLater()
    const { url } = hooks.sign(current.config)
    hooks.emit('connected', { url: redactUrl(url), clientId: client.options.clientId ?? '', source: current.source })
    hooks.logger.info({ url: redactUrl(url), attempt }, 'reconnected')
  }

  const onClose = () => {
    clearTimeout(stableTimer)
    if (stopped || revoked || client.disconnecting) return
    const delayMs = client.options.reconnectPeriod ?? 0
    const error = new BrokerError('ERR_BROKER_CONNECT', 'connection to the broker lost', { transient: true })
    hooks.emit('retry', { phase: 'reconnect', attempt, delayMs, code: error.code, error })
  }

  const onError = (error: Error & { code?: unknown }) => {
    if (stopped || typeof error.code !== 'number' || !AUTH_REJECTED_CODES.has(error.code)) return
    const returnCode = error.code
    revoked = true
    hooks.emit('auth-rejected', { returnCode, source: current.source, reprovision: !fresh })
    hooks.logger.warn({ returnCode, source: current.source, reprovision: !fresh }, 'credentials rejected on reconnect')
    if (fresh) {
      const refused = new BrokerError(
        'ERR_BROKER_AUTH_REJECTED',
        `broker rejected fresh credentials (CONNACK ${returnCode})`,
        {
          transient: false,
          returnCode,
          cause: error,
        },
      )
      stop()
      hooks.emit('error', { error: refused, fatal: true })
      client.end(true)
      return
    }
    hooks.replace(current.config, signal).then(
      (next) => {
        if (stopped) return
        current = next
        fresh = true
        revoked = false
        retarget(client, hooks.sign(next.config).url, hooks.servername)
        client.reconnect(stores())
      },
      (failure: unknown) => {
        if (stopped) return
        // Keep what we have (the refusal may pass) and try it again after a wait.
        revoked = false
        hooks.emit('error', { error: failure as Error, fatal: false })
        const wait = delay(++attempt)
        retryTimer = setTimeout(() => client.reconnect(stores()), wait)
      },
    )
  }

  const stop = () => {
    stopped = true
    clearTimeout(stableTimer)
    clearTimeout(retryTimer)
    controller.abort()
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
  const target = new URL(url)
  const options = client.options
  const protocol = target.protocol.slice(0, -1) as MqttProtocol
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1')
  options.protocol = protocol
  options.defaultProtocol = protocol
  options.host = host
  options.hostname = host
  options.port = target.port === '' ? STANDARD_PORTS[protocol as BrokerProtocol] : Number(target.port)
  if (protocol.startsWith('ws')) options.path = target.pathname
  // mqtt.js derives the TLS server name from the first host and keeps it: derive it again for the new one.
  if (servername === undefined) delete options.servername
}
