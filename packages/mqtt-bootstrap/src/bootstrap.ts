/**
 * MqttBootstrap: the public calls, the deadline and the connect loop. Each boot phase is a module of its own under
 * boot/ (cache, provision, register, connect), given this bootstrap's context and the call it works for; every event
 * and its log line come from one Reporter method (report.ts).
 *
 * One retry loop owns each phase: async-retry (see retry.ts) retries provisioning and the first connect, with mqtt.js's
 * own reconnects off; once the broker has accepted the device, the session (session.ts) keeps it connected.
 */
import type { IClientOptions, MqttClient } from 'mqtt'
import { invalidate, persist } from './boot/cache.js'
import { clientOptions, open } from './boot/connect.js'
import { type BootContext, Call } from './boot/context.js'
import { provisioned, replaced } from './boot/flights.js'
import { completeClock } from './clock.js'
import type { Container } from './container.js'
import { type DeviceConfig, withRedaction } from './contract.js'
import { AbortError, BootTimeoutError, BrokerError } from './errors.js'
import type { BootstrapEvents } from './events.js'
import { EventEmitter, tsyringe, tsyringeLoaded } from './lazy.js'
import { type BootstrapOptions, DEFAULTS, type ResolvedOptions, resolveOptions } from './options.js'
import { redactOnInspect, redactOnJson, SECRET_OPTION_KEYS } from './redact.js'
import { Reporter } from './report.js'
import type { Seams } from './seams.js'
import type { Provisioned } from './session-hooks.js'
import { anySignal, untilSettledOrAborted } from './signals.js'
import { defaultSeams, registerSeams, resolveSeams, TOKENS } from './tokens.js'

/** `mqtt.connect(url, options)`-ready options, signed with the provisioned credentials. */
export type ConnectOptions = IClientOptions & { url: string }

export interface CallOptions {
  /** Cancels this call (together with the bootstrap's own `signal` option). */
  signal?: AbortSignal
}

export class MqttBootstrap extends EventEmitter<BootstrapEvents> {
  readonly #context: BootContext

  /** The one way a bootstrap is made (createBootstrap and a container's factory both end here). */
  constructor(options: ResolvedOptions, seams: Seams) {
    super()
    seams.store.useLogger?.(seams.logger) // e.g. a FileCredentialStore's waits for its lock, in the app's log
    this.#context = {
      options,
      seams: { ...seams, clock: completeClock(seams.clock) },
      report: new Reporter(this, seams.logger),
      memory: {
        stored: undefined,
        urlConfig: undefined,
        brokerUrl: '',
        shownUrl: undefined,
        jittered: false,
        audited: false,
        load: undefined,
        fresh: undefined,
      },
    }
  }

  /** The device's configuration: the cached one, else one from the server (retried). Concurrent calls share one. */
  provision(call: CallOptions = {}): Promise<DeviceConfig> {
    return this.#run(call, async (signal, state) =>
      withRedaction((await this.#provisionedAndCached(state, signal)).config),
    )
  }

  /** Signed options for apps that call `mqtt.connect()` themselves: `mqtt.connect(opts.url, opts)`. */
  connectOptions(call: CallOptions = {}): Promise<ConnectOptions> {
    return this.#run(call, async (signal, state) => {
      const { config } = await this.#provisionedAndCached(state, signal)
      const { url, options } = clientOptions(this.#context, config)
      const reconnectPeriod = this.#context.options.mqtt.reconnectPeriod ?? DEFAULTS.reconnectPeriod
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
    return this.#run(call, async (callSignal, state) => {
      const context = this.#context
      const signal = anySignal(context.options.signal, callSignal)
      let current = await provisioned(context, state, callSignal)
      for (let round = 1; ; round++) {
        let client: MqttClient
        try {
          client = await open(context, state, current, signal)
        } catch (error) {
          if (!(error instanceof BrokerError && error.code === 'ERR_BROKER_AUTH_REJECTED')) throw error
          // A TLS alert (no returnCode) refused the client certificate: a new claim helps only the `certificate` option.
          const renewable = error.returnCode !== undefined || context.options.certificate !== undefined
          const reprovision = current.source === 'cache' && round === 1 && renewable
          context.report.authRejected(error.returnCode ?? 0, current.source, reprovision)
          // The refused credentials stay cached until newer ones replace them (a failed re-provisioning must not
          // leave the device with nothing: the refusal may pass).
          if (!reprovision) throw error
          current = await replaced(context, state, current.config, callSignal)
          continue
        }
        // Accepted by the broker: now they are the last good credentials. The device is connected whatever happens
        // to this write, so an abort or the deadline stops the wait for it, not the write.
        if (current.source === 'server') await untilSettledOrAborted(persist(context, current.config), signal)
        return client
      }
    })
  }

  /** Forget the cached credentials, so the next call provisions afresh. */
  invalidate(): Promise<void> {
    return invalidate(this.#context)
  }

  /** The configuration (boot/flights.ts), and credentials from the server cached at once (for callers that do not connect). */
  async #provisionedAndCached(call: Call, signal: AbortSignal | undefined): Promise<Provisioned> {
    const result = await provisioned(this.#context, call, signal)
    if (result.source === 'server') await persist(this.#context, result.config)
    return result
  }

  /**
   * Run a public call under the caller's signal and the deadline. A failure is also reported as a fatal `error`
   * event; an abort caused by the deadline becomes ERR_BOOT_TIMEOUT, with the last failure retried during this call
   * as its cause: each call its own (its connects', and those of the shared flights it waited on, boot/context.ts).
   */
  async #run<T>(
    options: CallOptions,
    operation: (signal: AbortSignal | undefined, call: Call) => Promise<T>,
  ): Promise<T> {
    const { deadlineMs } = this.#context.options
    const deadline = deadlineMs === undefined ? undefined : AbortSignal.timeout(deadlineMs)
    const signal = anySignal(options.signal, deadline)
    const call = new Call()
    try {
      return await operation(signal, call)
    } catch (caught) {
      const error =
        deadline?.aborted && caught instanceof AbortError && !options.signal?.aborted
          ? new BootTimeoutError(deadlineMs as number, call.lastFailure)
          : caught
      this.#context.report.fatal(error as Error)
      throw error
    }
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
    useFactory: (c) => new MqttBootstrap(c.resolve(TOKENS.Options), resolveSeams(c)),
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
  return new MqttBootstrap(resolved, defaultSeams(resolved))
}

/** Provision (cache first) and connect: a drop-in for `mqtt.connectAsync()`. */
export async function connectProvisioned(options: BootstrapOptions): Promise<MqttClient> {
  return createBootstrap(options).connect()
}
