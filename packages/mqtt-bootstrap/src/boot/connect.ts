/**
 * The connect phase: sign the provisioned credentials for the broker URL (afresh per attempt: the aliyun timestamp),
 * connect with retries of transient broker failures, then hand the client to the session, which keeps it connected.
 */
import type { IClientOptions, MqttClient } from 'mqtt'
import { DEFAULT_MQTTS_PORT } from '../auth/strategy.js'
import { brokerUrl, upgradeToTls } from '../broker-url.js'
import { heldKey } from '../certificates/held-keys.js'
import { lifetimeOf, renewalTime } from '../certificates/schedule.js'
import type { Clock } from '../clock.js'
import { AUTH_REJECTED_CODES } from '../connector.js'
import type { DeviceConfig } from '../contract.js'
import { applyDefaultQos } from '../default-qos.js'
import { withUrl } from '../error-urls.js'
import { InvalidOptionError } from '../errors.js'
import {
  hookFor,
  INSPECT_CUSTOM,
  redactOnInspect,
  redactOnJson,
  SECRET_OPTION_KEYS,
  type SealedCredentials,
  sealedCredentials,
  withSealedKeys,
} from '../redact.js'
import type { RenewalPlan } from '../renewal.js'
import type { Reporter } from '../report.js'
import { withRetry } from '../retry.js'
import type { Provisioned, SessionHooks } from '../session-hooks.js'
import { bindMessageStore, KEEP_QUEUED, releaseMessageStore } from '../store/message-store.js'
import { guardQueuedPublishes } from '../store/queued-publishes.js'
import { superviseSession } from '../supervise.js'
import { isClientCertificateRefusal } from '../tls-failures.js'
import { persist } from './cache.js'
import { type BootContext, type FailureSink, retryLoop } from './context.js'
import { replacedForSession } from './flights.js'
import { renewCredentials } from './renew.js'

/** Connect with `provisioned`, retrying transient broker failures; auth rejections and permanent errors end it. */
export async function open(
  context: BootContext,
  sink: FailureSink,
  { config, source }: Provisioned,
  signal: AbortSignal | undefined,
): Promise<MqttClient> {
  const { options, seams, report } = context
  const store = options.messageStore
  if (store !== undefined) bindMessageStore(store, { report: (error) => report.nonFatal(error) })
  const client = await withRetry(
    async (attempt) => {
      const url = brokerUrlOf(context, config)
      const { clientId, username, password } = sign(context, config, url)
      report.connecting(url, clientId, source, attempt)
      const mqtt = withSealedKeys(options.mqtt)
      // clientOptions() and redactOnInspect(…, true) in one object literal. mqtt.js hands these options (spread) to
      // tls.connect, which keeps a copy on the socket: the hook, an own enumerable key, travels. rejectUnauthorized
      // spelled out here, on an object of ours, spares MqttJsConnector its copy (see connector.ts).
      const forMqtt = {
        [INSPECT_CUSTOM]: INSPECT_HOOK,
        ...mqtt,
        ...clientCertificate(config, mqtt.wsOptions),
        ...store?.clientOptions(),
        clientId,
        username,
        password,
        clean: config.connect.cleanSession === 1,
        rejectUnauthorized: mqtt.rejectUnauthorized ?? true,
        reconnectPeriod: 0,
      }
      redactOnJson(forMqtt, SECRET_OPTION_KEYS) // lost by mqtt.js's copy into client.options: set again below
      return seams.connector
        .connect(url, forMqtt, signal)
        .catch((error: unknown) => Promise.reject(withUrl(error, url)))
    },
    retryLoop(context, 'connect', sink, signal),
  )
  // mqtt.connect() copies the hook into client.options; a custom connector may not.
  if (!Object.hasOwn(client.options, INSPECT_CUSTOM)) redactOnInspect(client.options, SECRET_OPTION_KEYS, true)
  redactOnJson(client.options, SECRET_OPTION_KEYS)
  if (store !== undefined) {
    // The client whose publishes fail when the store cannot write them (mqtt.js would leave them unanswered), and
    // what mqtt.js would hold in memory only (queued-publishes.ts). Before applyDefaultQos, whose wrapper calls it.
    const bind = () => bindMessageStore(store, { client, report: (error) => report.nonFatal(error) })
    bind()
    client.on('connect', bind) // again after an end() and the app's reconnect()
    client.on('end', () => releaseMessageStore(store, client))
    guardQueuedPublishes(client, store[KEEP_QUEUED])
  }
  applyDefaultQos(client, config.connect.qos)
  reporters.set(client, report)
  client.on('error', reportClientError)
  report.connected(brokerUrlOf(context, config), client.options.clientId ?? '', source)
  // From here on mqtt.js reconnects, steered by the session; without a policy it does not reconnect at all.
  const policy = options.reconnect
  if (policy === false) client.options.reconnectPeriod = 0
  else superviseSession(client, { config, source }, new ContextHooks(context), policy)
  return client
}

/** One listener for every client (mqtt.js calls it with the client as `this`): no closure kept per client. */
const reporters = new WeakMap<MqttClient, Reporter>()

/** Client errors become non-fatal error events (refused credentials are the session's to report). */
function reportClientError(this: MqttClient, error: Error & { code?: unknown }): void {
  const refused =
    typeof error.code === 'number' ? AUTH_REJECTED_CODES.has(error.code) : isClientCertificateRefusal(error)
  if (!refused) reporters.get(this)?.nonFatal(error)
}

const INSPECT_HOOK = hookFor(SECRET_OPTION_KEYS)

/** The broker URL and signed mqtt.js options for `config` (not redacted: each caller hooks the object it hands on). */
export function clientOptions(context: BootContext, config: DeviceConfig): { url: string; options: IClientOptions } {
  const url = brokerUrlOf(context, config)
  const signed = sign(context, config, url)
  const mqtt = withSealedKeys(context.options.mqtt)
  return {
    url,
    options: {
      ...mqtt,
      ...clientCertificate(config, mqtt.wsOptions),
      ...context.options.messageStore?.clientOptions(),
      ...signed,
      clean: config.connect.cleanSession === 1,
    },
  }
}

/** The TLS fields of a client certificate, at the top level and in `wsOptions`. */
export type ClientCertificate = { key: Buffer; cert: string; wsOptions: Record<string, unknown> }

/**
 * The client certificate of `config` for mutual TLS (the `certificate` option): the device's own key, sealed, and the
 * chain the server issued; `undefined` for a configuration without them. Over wss:// mqtt.js copies `key` and `cert`
 * into `wsOptions` once, when they are absent there, and into the very object it was given: each client gets a
 * `wsOptions` of its own with them set (`ws` the caller's), so that a new certificate takes effect and no two clients
 * share one.
 */
export function clientCertificate(config: DeviceConfig, ws: object | undefined): ClientCertificate | undefined {
  const key = heldKey(config)
  const cert = config.device.certificate
  return key === undefined || cert === undefined ? undefined : { key, cert, wsOptions: { ...ws, key, cert } }
}

/** Freshly signed, sealed CONNECT fields (see sealedCredentials). */
function sign(context: BootContext, config: DeviceConfig, url: string): SealedCredentials {
  const { auth, clock } = context.seams
  const now = clock.now()
  // Every time field (an expiry, Huawei's hour stamp) is computed from it: a clock that is not a number signs nothing.
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new InvalidOptionError('clock', 'Expected the injected `clock.now()` to return a finite number of ms')
  }
  const credentials = auth.sign(config.device, { brokerUrl: url, now })
  const { clientId, username, password } = credentials ?? {}
  if (
    typeof clientId !== 'string' ||
    typeof username !== 'string' ||
    (password !== undefined && typeof password !== 'string')
  ) {
    throw new InvalidOptionError(
      'auth',
      `Expected \`auth\` (${auth.name}) to return clientId and username strings, and a password string or none`,
    )
  }
  return sealedCredentials({ clientId, username, password }, config.device.deviceSecret)
}

/** What the session needs, from the bootstrap's context: one small object per client, its methods shared. */
class ContextHooks implements SessionHooks {
  readonly #context: BootContext

  constructor(context: BootContext) {
    this.#context = context
  }

  replace(rejected: DeviceConfig, signal: AbortSignal): Promise<Provisioned> {
    return replacedForSession(this.#context, rejected, signal)
  }

  renewalOf(config: DeviceConfig): RenewalPlan | undefined {
    const lifetime = lifetimeOf(config)
    if (lifetime === undefined) return undefined
    const { renewBeforeMs, certificate } = this.#context.options
    const before = lifetime.credential === 'certificate' ? (certificate?.renewBeforeMs ?? renewBeforeMs) : renewBeforeMs
    return { renewAt: renewalTime(lifetime, before), lifetime }
  }

  renew(config: DeviceConfig, signal: AbortSignal): Promise<Provisioned> {
    return renewCredentials(this.#context, config, signal)
  }

  url(config: DeviceConfig): string {
    return brokerUrlOf(this.#context, config)
  }

  sign(config: DeviceConfig): SealedCredentials {
    return sign(this.#context, config, brokerUrlOf(this.#context, config))
  }

  clientCertificate(config: DeviceConfig, ws: object | undefined): ClientCertificate | undefined {
    return clientCertificate(config, ws)
  }

  get renewsCertificate(): boolean {
    return this.#context.options.certificate !== undefined
  }

  persist(config: DeviceConfig): Promise<void> {
    return persist(this.#context, config)
  }

  get report(): SessionHooks['report'] {
    return this.#context.report
  }

  get clock(): Clock {
    return this.#context.seams.clock
  }

  get servername(): string | undefined {
    return this.#context.options.mqtt.servername
  }
}

/** The broker URL of `config`, computed once per configuration in a row. */
export function brokerUrlOf(context: BootContext, config: DeviceConfig): string {
  const { memory } = context
  if (memory.urlConfig === config) return memory.brokerUrl
  const { options, seams } = context
  let url = brokerUrl(config.connect.host, options.broker, seams.auth.defaultPort ?? DEFAULT_MQTTS_PORT)
  // mqtt.js upgrades mqtt:// and ws:// to TLS when a client certificate is given; sign for what will really happen.
  const { cert, key } = options.mqtt
  if ((cert !== undefined && key !== undefined) || options.certificate !== undefined) url = upgradeToTls(url)
  memory.urlConfig = config
  memory.brokerUrl = url
  return url
}
