/**
 * MqttBootstrap: cache -> provision (retry) -> connect -> re-provision once on rejected credentials.
 *
 * One retry loop owns each phase: async-retry (see retry.ts) retries provisioning and the first connect, with mqtt.js's
 * own reconnects off; once the broker has accepted the device, mqtt.js reconnects at the caller's period.
 */
import type { IClientOptions, MqttClient } from 'mqtt'
import { type AuthStrategy, DEFAULT_MQTTS_PORT, type MqttCredentials } from './auth/strategy.js'
import { brokerUrl, upgradeToTls } from './broker-url.js'
import { type Clock, completeClock } from './clock.js'
import { AUTH_REJECTED_CODES, type MqttConnector } from './connector.js'
import type { Container } from './container.js'
import {
  type DeviceConfig,
  frozenValidated,
  isValidatedConfig,
  parseDeviceConfig,
  ResultCode,
  withRedaction,
} from './contract.js'
import { applyDefaultQos } from './default-qos.js'
import { secretsOf, withoutEchoes } from './echoes.js'
import { withUrl } from './error-urls.js'
import {
  AbortError,
  BootTimeoutError,
  BrokerError,
  CredentialStoreError,
  InvalidOptionError,
  MqttBootstrapError,
  RegistrationError,
} from './errors.js'
import type { BootstrapEvents, CacheEvent, CredentialSource } from './events.js'
import { EventEmitter, tsyringe, tsyringeLoaded } from './lazy.js'
import { type LogArea, type Logger, logFor } from './logger.js'
import { type BootstrapOptions, DEFAULTS, type ResolvedOptions, resolveOptions } from './options.js'
import { PointAccess } from './point-access.js'
import {
  INSPECT_CUSTOM,
  redactOnInspect,
  redactOnJson,
  redactUrl,
  SECRET_OPTION_KEYS,
  sealedPassword,
  withSealedKeys,
} from './redact.js'
import { noDeviceSecretError, noRegistration, type RegistrationStrategy } from './registration/strategy.js'
import { withRetry } from './retry.js'
import { type Provisioned, type SessionHooks, superviseSession } from './session.js'
import { SingleFlight } from './single-flight.js'
import { type CredentialStore, keyOf } from './store/credential-store.js'
import { MemoryCredentialStore } from './store/memory-store.js'
import { defaultSeams, registerSeams, TOKENS } from './tokens.js'
import type { HttpTransport } from './transport/http-transport.js'
import { logRetry, logWait } from './waits.js'

/** `mqtt.connect(url, options)`-ready options, signed with the provisioned credentials. */
export type ConnectOptions = IClientOptions & { url: string }

export interface CallOptions {
  /** Cancels this call (together with the bootstrap's own `signal` option). */
  signal?: AbortSignal
}

export class MqttBootstrap extends EventEmitter<BootstrapEvents> {
  readonly #options: ResolvedOptions
  readonly #store: CredentialStore
  readonly #auth: AuthStrategy
  readonly #connector: MqttConnector
  readonly #clock: Clock
  /** One logger per area (each also feeds the `debug` namespace `mqtt-bootstrap:<area>`). */
  readonly #log: Readonly<Record<Exclude<LogArea, 'transport'>, Logger>>
  readonly #transport: HttpTransport
  readonly #registration: RegistrationStrategy
  /** Configurations already in the store (a registered secret is stored before the connect, not again after it). */
  readonly #stored = new WeakSet<DeviceConfig>()
  /** Made on the first provisioning request: a cached boot needs none. */
  #pointAccess: PointAccess | undefined
  readonly #key: string
  readonly #load = new SingleFlight<Provisioned>()
  readonly #fresh = new SingleFlight<Provisioned>()
  readonly #brokerUrls = new WeakMap<DeviceConfig, string>()
  /** The provisioning URL as events and logs show it (made when first needed: a cached boot never shows it). */
  #shown: string | undefined
  /** The last transient failure retried, the cause of a boot timeout. */
  #lastFailure: Error | undefined
  #jittered = false
  /** The store's audit (e.g. a directory open to others) runs once per bootstrap, with the first cache read. */
  #audited = false

  constructor(
    options: ResolvedOptions,
    store: CredentialStore,
    transport: HttpTransport,
    auth: AuthStrategy,
    connector: MqttConnector,
    clock: Clock,
    logger: Logger,
    registration: RegistrationStrategy,
  ) {
    super()
    this.#options = options
    this.#store = store
    store.useLogger?.(logger) // e.g. a FileCredentialStore's waits for its lock, in the app's log
    this.#auth = auth
    this.#connector = connector
    this.#clock = completeClock(clock)
    this.#log = {
      boot: logFor(logger, 'boot'),
      provision: logFor(logger, 'provision'),
      connect: logFor(logger, 'connect'),
      session: logFor(logger, 'session'),
      store: logFor(logger, 'store'),
      register: logFor(logger, 'register'),
    }
    this.#transport = transport
    this.#registration = registration
    this.#key = options.cacheKey
  }

  /** The device's configuration: the cached one, else one from the server (retried). Concurrent calls share one. */
  provision(call: CallOptions = {}): Promise<DeviceConfig> {
    return this.#run(call, async (signal) => withRedaction((await this.#provisionedAndCached(signal)).config))
  }

  /** Signed options for apps that call `mqtt.connect()` themselves: `mqtt.connect(opts.url, opts)`. */
  connectOptions(call: CallOptions = {}): Promise<ConnectOptions> {
    return this.#run(call, async (signal) => {
      const { config } = await this.#provisionedAndCached(signal)
      const { url, options } = this.#clientOptions(config)
      const reconnectPeriod = this.#options.mqtt.reconnectPeriod ?? DEFAULTS.reconnectPeriod
      // Verification spelled out, as MqttJsConnector does: absent, tls.connect would read NODE_TLS_REJECT_UNAUTHORIZED.
      const rejectUnauthorized = options.rejectUnauthorized ?? true // false is refused by resolveOptions()
      const result = redactOnInspect({ url, ...options, rejectUnauthorized, reconnectPeriod }, SECRET_OPTION_KEYS)
      return redactOnJson(result, SECRET_OPTION_KEYS)
    })
  }

  /**
   * Provision (cache first), connect, and resolve with the connected mqtt.js client. Cached credentials the broker
   * refuses are invalidated and provisioned afresh once; a refusal of fresh credentials rejects with
   * `ERR_BROKER_AUTH_REJECTED`. Once connected, the session keeps the client connected (see session.ts).
   */
  connect(call: CallOptions = {}): Promise<MqttClient> {
    return this.#run(call, async (callSignal) => {
      const signal = anySignal(this.#options.signal, callSignal)
      let provisioned = await this.#provisioned(callSignal)
      for (let round = 1; ; round++) {
        let client: MqttClient
        try {
          client = await this.#open(provisioned, signal)
        } catch (error) {
          if (!(error instanceof BrokerError && error.code === 'ERR_BROKER_AUTH_REJECTED')) throw error
          const reprovision = provisioned.source === 'cache' && round === 1
          const { returnCode = 0 } = error
          this.emit('auth-rejected', { returnCode, source: provisioned.source, reprovision })
          this.#log.connect.warn({ returnCode, source: provisioned.source, reprovision }, 'credentials rejected')
          // The refused credentials stay cached until newer ones replace them (a failed re-provisioning must not
          // leave the device with nothing: the refusal may pass).
          if (!reprovision) throw error
          const rejected = provisioned.config
          provisioned = await this.#fresh.run(
            (flight) => this.#replace(rejected, anySignal(flight, this.#options.signal)),
            callSignal,
          )
          continue
        }
        // Accepted by the broker: now they are the last good credentials. The device is connected whatever happens
        // to this write, so an abort or the deadline stops the wait for it, not the write.
        if (provisioned.source === 'server') await untilSettledOrAborted(this.#persist(provisioned.config), signal)
        return client
      }
    })
  }

  /** Forget the cached credentials, so the next call provisions afresh. */
  async invalidate(): Promise<void> {
    await this.#invalidate('requested')
  }

  #provisioned(signal: AbortSignal | undefined): Promise<Provisioned> {
    return this.#load.run((flight) => this.#loadOnce(anySignal(flight, this.#options.signal)), signal)
  }

  async #loadOnce(signal: AbortSignal | undefined): Promise<Provisioned> {
    const cached = await this.#readCache()
    if (cached === undefined) {
      await this.#startupJitter(signal)
      return this.#fetch(signal)
    }
    this.#announce(cached, 'cache')
    return { config: cached, source: 'cache' }
  }

  async #readCache(): Promise<DeviceConfig | undefined> {
    const key = this.#key
    // Beside the read, not before it: a cached boot pays for one stat, not one round trip more.
    const audit = this.#audited ? undefined : this.#audit()
    let event: CacheEvent
    let config: DeviceConfig | undefined
    try {
      config = await this.#readEntry()
      event = config === undefined ? { action: 'miss', key, reason: 'absent' } : { action: 'hit', key }
    } catch (cause) {
      const error = storeError(cause, 'cannot read the credential cache')
      const reason = MISS_REASONS[error.code]
      event = { action: 'miss', key, reason, error }
      this.#log.store.warn({ code: error.code, reason }, 'credential cache unusable, treated as a miss')
    }
    await audit
    this.#cacheEvent(event)
    return config
  }

  /** Report what the store's audit finds (non-fatal `error` events, each with its log line); a failing audit is silent. */
  async #audit(): Promise<void> {
    this.#audited = true
    const findings = await Promise.resolve()
      .then(() => this.#store.audit?.())
      .catch(() => undefined)
    for (const error of findings ?? []) this.#warn(error)
  }

  /**
   * The cached configuration, checked like an answer from the server (any store may be registered, and a file can
   * be edited by hand). An invalid entry is deleted, best effort, and reported as ERR_STORE_CORRUPT.
   */
  async #readEntry(): Promise<DeviceConfig | undefined> {
    const entry = await this.#store.get(this.#key)
    if (entry === undefined) return undefined
    if (isValidatedConfig(entry.config)) return entry.config // made by parseDeviceConfig, and frozen since
    const parsed = parseDeviceConfig(entry?.config)
    if (parsed.ok) return parsed.value
    await this.#store.delete(this.#key).catch(() => undefined)
    throw new CredentialStoreError('ERR_STORE_CORRUPT', `cached credentials are invalid: ${parsed.problem}`)
  }

  #shownUrl(): string {
    this.#shown ??= redactUrl(this.#options.url)
    return this.#shown
  }

  #pointAccessFor(): PointAccess {
    const { tls, timeoutMs, maxResponseBytes, allowInsecureHttp } = this.#options
    this.#pointAccess ??= new PointAccess(
      { tls, timeoutMs, maxResponseBytes, allowInsecureHttp },
      { transport: this.#transport, clock: this.#clock },
    )
    return this.#pointAccess
  }

  /** Before this bootstrap's first provisioning request only: a fleet powered on at once spreads out. */
  async #startupJitter(signal: AbortSignal | undefined): Promise<void> {
    if (this.#jittered || this.#options.startupJitterMs === 0) return
    this.#jittered = true
    const delayMs = Math.floor(this.#clock.random() * this.#options.startupJitterMs)
    logWait(this.#log.boot, delayMs, 'startup-jitter', 'attempt 1', { attempt: 1 })
    await this.#clock.sleep(delayMs, signal)
  }

  /** Provision from the server (retried); `refused` is the configuration the broker has just refused, if any. */
  async #fetch(signal: AbortSignal | undefined, refused?: DeviceConfig): Promise<Provisioned> {
    const { url, data, headers } = this.#options
    const config = await withRetry(
      async (attempt) => {
        this.emit('provisioning', { url: this.#shownUrl(), attempt })
        this.#log.provision.debug({ url: this.#shownUrl(), attempt }, 'provisioning')
        const pointAccess = this.#pointAccessFor()
        const code = await pointAccess.request(url, data, { headers, signal })
        if (code === ResultCode.SUCCESS) return pointAccess.deviceConfig
        const failure = pointAccess.lastError ?? new Error('provisioning failed')
        // Re-provisioning after a rejection: the server may echo the refused secrets, which this PointAccess never saw.
        throw refused === undefined ? failure : withoutEchoes(failure, secretsOf(refused))
      },
      {
        policy: this.#options.retry,
        clock: this.#clock,
        signal,
        onRetry: ({ attempt, delayMs, reason, error }) => {
          this.#lastFailure = error
          this.emit('retry', { phase: 'provision', attempt, delayMs, code: ResultCode.TRANSIENT, error })
          logRetry(this.#log.provision, 'provision', { attempt, delayMs, reason, error })
        },
      },
    )
    if (config.device.deviceSecret === '') {
      return { config: await this.#register(config, signal, refused), source: 'server' }
    }
    this.#announce(config, 'server')
    return { config, source: 'server' }
  }

  /**
   * Dynamic registration: the server answered a productSecret and no deviceSecret. The registration strategy exchanges
   * it for the device's secret (retried like provisioning), which is stored before anything else happens: the service
   * issues it once, and a device that connected with it cannot register again. It is stored twice: under this
   * bootstrap's cache key, and under the device's identity (productKey, deviceName), which outlives a change of
   * provisioning URL or data and `invalidate()`; a secret found there is used instead of registering again (unless it
   * is the one the broker has just refused). Should it not be storable, the boot fails rather than connect with a
   * secret it would lose (an unactivated device can still register again later). The product secret is not kept.
   */
  async #register(
    provisioned: DeviceConfig,
    signal: AbortSignal | undefined,
    refused: DeviceConfig | undefined,
  ): Promise<DeviceConfig> {
    const { productKey, deviceName, productSecret } = provisioned.device
    const strategy = this.#registration
    if (strategy === noRegistration) throw noDeviceSecretError(this.#options.url)
    const identity = registrationKey(productKey, deviceName)
    const complete = (deviceSecret: unknown) =>
      parseDeviceConfig({
        device: { productKey, deviceName, deviceSecret, productSecret: null },
        connect: provisioned.connect,
      })
    /** A secret this device was issued before (by this process or another sharing the store), unless refused. */
    const earlier = async (): Promise<DeviceConfig | undefined> => {
      const entry = await this.#store.get(identity).catch(() => undefined)
      const secret = entry?.config?.device?.deviceSecret
      if (typeof secret !== 'string' || secret === '' || secret === refused?.device.deviceSecret) return undefined
      const parsed = complete(secret)
      return parsed.ok ? frozenValidated(parsed.value) : undefined
    }
    let config = await earlier()
    let issued = false
    if (config === undefined) {
      if (this.#store instanceof MemoryCredentialStore) {
        this.#log.register.warn(
          { productKey, deviceName },
          'registering into an in-memory credential store: the secret is issued once and lost when the process ends',
        )
      }
      config = await withRetry(
        async (attempt) => {
          // Another process sharing the store may have registered the device meanwhile.
          const found = attempt > 1 ? await earlier() : undefined
          if (found !== undefined) return found
          this.emit('registering', { strategy: strategy.name, productKey, deviceName, attempt })
          this.#log.register.debug({ strategy: strategy.name, productKey, deviceName, attempt }, 'registering')
          const answer = await strategy
            .register(
              { productKey, deviceName, productSecret: productSecret ?? '', host: provisioned.connect.host },
              { signal, now: () => this.#clock.now() },
            )
            .catch((error: unknown) => {
              // The strategy knows the productSecret; the secret the broker refused is known here only.
              throw withoutEchoes(error, [productSecret, ...(refused === undefined ? [] : secretsOf(refused))])
            })
          const parsed = complete(answer?.deviceSecret)
          if (!parsed.ok || parsed.value.device.deviceSecret === '') {
            throw new RegistrationError('ERR_REGISTER_INVALID_RESPONSE', 'registration gave no usable deviceSecret', {
              transient: false,
            })
          }
          issued = true
          return frozenValidated(parsed.value)
        },
        {
          policy: this.#options.retry,
          clock: this.#clock,
          signal,
          onRetry: ({ attempt, delayMs, reason, error }) => {
            this.#lastFailure = error
            this.emit('retry', { phase: 'register', attempt, delayMs, code: errorCodeOf(error), error })
            logRetry(this.#log.register, 'register', { attempt, delayMs, reason, error })
          },
        },
      )
    }
    if (issued) {
      try {
        await this.#store.set(identity, { config, savedAt: this.#clock.now() })
      } catch (cause) {
        throw storeError(
          cause,
          'cannot store the registered device secret; not connecting with a secret that would be lost',
        )
      }
    } else {
      this.#log.register.info({ productKey, deviceName }, 'using the device secret registered earlier')
    }
    try {
      await this.#store.set(this.#key, { config, savedAt: this.#clock.now() })
      this.#cacheEvent({ action: 'write', key: this.#key })
      this.#stored.add(config)
    } catch (cause) {
      // The identity entry holds it: the next boot finds it there.
      this.#warn(storeError(cause, 'cannot write the credential cache'))
    }
    if (issued) {
      this.emit('registered', { strategy: strategy.name, productKey, deviceName })
      this.#log.register.info({ strategy: strategy.name, productKey, deviceName }, 'registered')
    }
    this.#announce(config, 'server')
    return config
  }

  /**
   * Cache credentials from the server. connect() calls it once the broker has accepted them (the last good
   * credentials stay cached until then); provision() and connectOptions(), which cannot know, call it at once.
   * Never rejects: a cache that cannot be written is a non-fatal error event, the device works on without it.
   */
  async #persist(config: DeviceConfig): Promise<void> {
    if (this.#stored.has(config)) return // a registered secret, stored before the connect
    try {
      await this.#store.set(this.#key, { config: withoutProductSecret(config), savedAt: this.#clock.now() })
      this.#cacheEvent({ action: 'write', key: this.#key })
    } catch (cause) {
      this.#warn(storeError(cause, 'cannot write the credential cache'))
    }
  }

  /** #provisioned(), and credentials from the server cached at once (for callers that do not connect). */
  async #provisionedAndCached(signal: AbortSignal | undefined): Promise<Provisioned> {
    const provisioned = await this.#provisioned(signal)
    if (provisioned.source === 'server') await this.#persist(provisioned.config)
    return provisioned
  }

  /** Connect with `config`, retrying transient broker failures; auth rejections and permanent errors end it. */
  async #open({ config, source }: Provisioned, signal: AbortSignal | undefined): Promise<MqttClient> {
    const client = await withRetry(
      async (attempt) => {
        // Signed per attempt: the aliyun timestamp is fresh each time.
        // A broker URL passed the contract: it has no credentials or query to hide.
        const { url, options } = this.#clientOptions(config)
        this.emit('connecting', { url, clientId: options.clientId as string, source, attempt })
        this.#log.connect.debug({ url, clientId: options.clientId, attempt }, 'connecting')
        // mqtt.js hands these options (spread) to tls.connect, which keeps a copy on the socket: the hook travels.
        // rejectUnauthorized spelled out here, on an object of ours, spares MqttJsConnector its copy (see connector.ts).
        const rejectUnauthorized = options.rejectUnauthorized ?? true
        const forMqtt = redactOnInspect(
          { ...options, rejectUnauthorized, reconnectPeriod: 0 },
          SECRET_OPTION_KEYS,
          true,
        )
        redactOnJson(forMqtt, SECRET_OPTION_KEYS) // lost by mqtt.js's copy into client.options: set again below
        return this.#connector
          .connect(url, forMqtt, signal)
          .catch((error: unknown) => Promise.reject(withUrl(error, url)))
      },
      {
        policy: this.#options.retry,
        clock: this.#clock,
        signal,
        onRetry: ({ attempt, delayMs, reason, error }) => {
          this.#lastFailure = error
          this.emit('retry', { phase: 'connect', attempt, delayMs, code: errorCodeOf(error), error })
          logRetry(this.#log.connect, 'connect', { attempt, delayMs, reason, error })
        },
      },
    )
    // mqtt.connect() copies the hook into client.options; a custom connector may not.
    if (!Object.hasOwn(client.options, INSPECT_CUSTOM)) redactOnInspect(client.options, SECRET_OPTION_KEYS, true)
    redactOnJson(client.options, SECRET_OPTION_KEYS)
    applyDefaultQos(client, config.connect.qos)
    // Client errors become non-fatal error events (refused credentials are the session's to report).
    client.on('error', (error: Error & { code?: unknown }) => {
      if (typeof error.code !== 'number' || !AUTH_REJECTED_CODES.has(error.code)) this.#warn(error)
    })
    const url = this.#brokerUrl(config)
    this.emit('connected', { url, clientId: client.options.clientId ?? '', source })
    this.#log.connect.info({ url, clientId: client.options.clientId, source }, 'connected')
    // From here on mqtt.js reconnects, steered by the session; without a policy it does not reconnect at all.
    const policy = this.#options.reconnect
    if (policy === false) client.options.reconnectPeriod = 0
    else superviseSession(client, { config, source }, this.#sessionHooks(), policy)
    return client
  }

  #clientOptions(config: DeviceConfig): { url: string; options: IClientOptions } {
    const url = this.#brokerUrl(config)
    const credentials = this.#sign(config, url)
    // Not redacted here: each caller hooks the object it hands on (connectOptions' result, the options for mqtt.js).
    const { clientId, username, password } = credentials
    const signed = { clientId, username, password: sealedPassword(password) }
    const mqtt = withSealedKeys(this.#options.mqtt)
    return { url, options: { ...mqtt, ...signed, clean: config.connect.cleanSession === 1 } }
  }

  #sign(config: DeviceConfig, url: string): MqttCredentials {
    const credentials = this.#auth.sign(config.device, { brokerUrl: url, now: this.#clock.now() })
    const { clientId, username, password } = credentials ?? {}
    if (typeof clientId !== 'string' || typeof username !== 'string' || typeof password !== 'string') {
      throw new InvalidOptionError(
        'auth',
        `Expected \`auth\` (${this.#auth.name}) to return clientId, username and password strings`,
      )
    }
    return { clientId, username, password }
  }

  #sessionHooks(): SessionHooks {
    return {
      url: (config) => this.#brokerUrl(config),
      sign: (config) => this.#sign(config, this.#brokerUrl(config)),
      replace: (rejected, signal) => this.#fresh.run((flight) => this.#replace(rejected, anySignal(flight, signal))),
      persist: (config) => this.#persist(config),
      emit: this.emit.bind(this),
      clock: this.#clock,
      logger: this.#log.session,
      servername: this.#options.mqtt.servername,
    }
  }

  /** The broker URL of `config`, computed once per configuration. */
  #brokerUrl(config: DeviceConfig): string {
    let url = this.#brokerUrls.get(config)
    if (url === undefined) {
      url = this.#computeBrokerUrl(config)
      this.#brokerUrls.set(config, url)
    }
    return url
  }

  #computeBrokerUrl(config: DeviceConfig): string {
    const url = brokerUrl(config.connect.host, this.#options.broker, this.#auth.defaultPort ?? DEFAULT_MQTTS_PORT)
    // mqtt.js upgrades mqtt:// and ws:// to TLS when a client certificate is given; sign for what will really happen.
    const { cert, key } = this.#options.mqtt
    return cert !== undefined && key !== undefined ? upgradeToTls(url) : url
  }

  async #invalidate(reason: 'requested'): Promise<void> {
    try {
      await this.#store.delete(this.#key)
    } catch (cause) {
      throw storeError(cause, 'cannot invalidate the credential cache')
    }
    this.#cacheEvent({ action: 'invalidate', key: this.#key, reason })
  }

  /**
   * After `rejected` was refused: credentials a concurrent call (or process) has already put in the cache, else fresh
   * ones from the server. The refused entry is not deleted: it is overwritten once new credentials arrive, and kept
   * if provisioning fails.
   */
  async #replace(rejected: DeviceConfig, signal: AbortSignal | undefined): Promise<Provisioned> {
    const current = await this.#readEntry().catch(() => undefined)
    if (current !== undefined && !sameCredentials(current, rejected)) {
      this.#announce(current, 'cache')
      return { config: current, source: 'cache' }
    }
    this.#cacheEvent({ action: 'invalidate', key: this.#key, reason: 'auth-rejected' })
    await this.#startupJitter(signal)
    return this.#fetch(signal, rejected)
  }

  #cacheEvent(event: CacheEvent): void {
    const { action, key } = event
    this.#log.store.debug(
      { action, cacheKey: key, reason: 'reason' in event ? event.reason : undefined },
      `cache ${action}`,
    )
    this.emit('cache', event)
  }

  #announce({ device, connect }: DeviceConfig, source: CredentialSource): void {
    const { productKey, deviceName } = device
    this.emit('provisioned', { source, productKey, deviceName, ...connect })
    this.#log.provision.info({ source, productKey, deviceName, host: connect.host }, 'provisioned')
  }

  /**
   * Run a public operation under the caller's signal and the deadline. A failure is also reported as a fatal `error`
   * event; an abort caused by the deadline becomes ERR_BOOT_TIMEOUT, with the last retried failure as its cause.
   */
  async #run<T>(call: CallOptions, operation: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    const { deadlineMs } = this.#options
    const deadline = deadlineMs === undefined ? undefined : AbortSignal.timeout(deadlineMs)
    const signals = [call.signal, deadline].filter((s): s is AbortSignal => s !== undefined)
    const signal = anySignal(...signals)
    this.#lastFailure = undefined
    try {
      return await operation(signal)
    } catch (caught) {
      const error =
        deadline?.aborted && caught instanceof AbortError && !call.signal?.aborted
          ? new BootTimeoutError(deadlineMs as number, this.#lastFailure)
          : caught
      this.emit('error', { error: error as Error, fatal: true })
      throw error
    }
  }

  #warn(error: unknown): void {
    const wrapped = error instanceof Error ? error : new Error(String(error))
    this.#log.boot.warn({ code: errorCodeOf(wrapped), message: wrapped.message }, 'non-fatal error')
    this.emit('error', { error: wrapped, fatal: false })
  }
}

/**
 * Register the bootstrap's options, the default seams for whatever the container (or a parent) does not provide, and
 * MqttBootstrap itself, in `container`: then `container.resolve(MqttBootstrap)`. Pass a child container: this writes
 * to the one it is given. Returns it.
 */
export function registerBootstrap(container: Container, options: BootstrapOptions): Container {
  return registerResolved(container, resolveOptions(options))
}

function registerResolved(container: Container, resolved: ResolvedOptions): Container {
  registerSeams(container, resolved)
  // A factory, not decorators: the container resolves each seam by its token (and no decorator metadata is needed).
  container.register(MqttBootstrap, {
    useFactory: (c) =>
      new MqttBootstrap(
        c.resolve(TOKENS.Options),
        c.resolve(TOKENS.CredentialStore),
        c.resolve(TOKENS.HttpTransport),
        c.resolve(TOKENS.AuthStrategy),
        c.resolve(TOKENS.MqttConnector),
        c.resolve(TOKENS.Clock),
        c.resolve(TOKENS.Logger),
        c.resolve(TOKENS.Registration),
      ),
  })
  return container
}

/**
 * A bootstrap in a child container of `options.container`, or of tsyringe's global one (never written to) when the
 * app uses tsyringe. An app that has not loaded tsyringe cannot have registered anything in it: its bootstrap is made
 * with the defaults directly, the same result without loading tsyringe (docs/performance.md).
 */
export function createBootstrap(options: BootstrapOptions): MqttBootstrap {
  const resolved = resolveOptions(options)
  const parent = options.container ?? (tsyringeLoaded() ? tsyringe().container : undefined)
  if (parent !== undefined) return registerResolved(parent.createChildContainer(), resolved).resolve(MqttBootstrap)
  const seams = defaultSeams(resolved)
  return new MqttBootstrap(
    resolved,
    seams.store,
    seams.transport,
    seams.auth,
    seams.connector,
    seams.clock,
    seams.logger,
    seams.registration,
  )
}

/** Provision (cache first) and connect: a drop-in for `mqtt.connectAsync()`. */
export async function connectProvisioned(options: BootstrapOptions): Promise<MqttClient> {
  return createBootstrap(options).connect()
}

const MISS_REASONS = {
  ERR_STORE_CORRUPT: 'corrupt',
  ERR_STORE_VERSION: 'version',
  ERR_STORE_KEY: 'key',
  ERR_STORE_IO: 'io',
  ERR_STORE_PERMISSIONS: 'io', // never thrown by a read: reported on its own (a non-fatal error event)
} as const

/** Where a registered device secret is kept besides the cache key: by the device's identity alone. */
function registrationKey(productKey: string, deviceName: string): string {
  return keyOf('urn:mqtt-bootstrap:registered', { productKey, deviceName })
}

/** The product secret is not needed once the device has its own secret, and is not kept on disk. */
function withoutProductSecret(config: DeviceConfig): DeviceConfig {
  if (config.device.productSecret === null || config.device.deviceSecret === '') return config
  return frozenValidated({ ...config, device: { ...config.device, productSecret: null } })
}

function sameCredentials(a: DeviceConfig, b: DeviceConfig): boolean {
  return (
    a.device.productKey === b.device.productKey &&
    a.device.deviceName === b.device.deviceName &&
    a.device.deviceSecret === b.device.deviceSecret &&
    a.connect.host === b.connect.host
  )
}

/** Wait for `work`, or until `signal` fires, whichever comes first. */
async function untilSettledOrAborted(work: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return work
  if (signal.aborted) return
  let onAbort = () => {}
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve
    signal.addEventListener('abort', onAbort, { once: true })
  })
  await Promise.race([work, aborted])
  signal.removeEventListener('abort', onAbort)
}

/** One signal for several (or the one, or none: no AbortSignal is made for nothing on the connect path). */
function anySignal(first: AbortSignal, ...more: Array<AbortSignal | undefined>): AbortSignal
function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined
function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined)
  if (present.length <= 1) return present[0]
  return AbortSignal.any(present)
}

function storeError(cause: unknown, message: string): CredentialStoreError {
  return cause instanceof CredentialStoreError ? cause : new CredentialStoreError('ERR_STORE_IO', message, { cause })
}

function errorCodeOf(error: Error): string {
  return error instanceof MqttBootstrapError || error instanceof InvalidOptionError ? error.code : error.name
}
