/**
 * Dependency injection (tsyringe). Every I/O seam has a typed symbol token; `registerBootstrap()` fills a container
 * with the defaults for whatever the caller has not registered. Nothing is ever registered in tsyringe's global
 * container: the bootstrap works in a child container (STYLE: no hidden global state).
 */

import { defaultAuth } from './auth/resolve.js'
import type { AuthStrategy } from './auth/strategy.js'
import { type Clock, systemClock } from './clock.js'
import { type MqttConnector, MqttJsConnector } from './connector.js'
import type { Container, Token } from './container.js'
import { type Logger, silentLogger } from './logger.js'
import type { ResolvedOptions } from './options.js'
import { defaultRegistration } from './registration/resolve.js'
import type { RegistrationStrategy } from './registration/strategy.js'
import type { Seams } from './seams.js'
import type { CredentialStore } from './store/credential-store.js'
import { MemoryCredentialStore } from './store/memory-store.js'
import type { HttpTransport } from './transport/http-transport.js'
import { UndiciTransport } from './transport/undici-transport.js'

const token = <T>(name: string) => Symbol.for(`mqtt-bootstrap:${name}`) as Token<T>

export const TOKENS = Object.freeze({
  /** The resolved options (`resolveOptions(options)`). */
  Options: token<ResolvedOptions>('Options'),
  HttpTransport: token<HttpTransport>('HttpTransport'),
  CredentialStore: token<CredentialStore>('CredentialStore'),
  AuthStrategy: token<AuthStrategy>('AuthStrategy'),
  MqttConnector: token<MqttConnector>('MqttConnector'),
  Clock: token<Clock>('Clock'),
  Logger: token<Logger>('Logger'),
  /** Dynamic registration (a productSecret exchanged for a deviceSecret). */
  Registration: token<RegistrationStrategy>('Registration'),
})

/**
 * Register the resolved options and the default seams in `container`. Explicit options (`cache`, `auth`, `logger`,
 * `registration`, resolved to seams already) are registered in `container` itself, so they win; a seam without one
 * keeps the registration the container (or one of its parents) already has, else gets the default.
 */
export function registerSeams(container: Container, resolved: ResolvedOptions): Container {
  container.register(TOKENS.Options, { useValue: resolved })
  const fill = <T>(seam: Token<T>, explicit: T | undefined, fallback: () => T) => {
    if (explicit !== undefined) container.register(seam, { useValue: explicit })
    else if (!container.isRegistered(seam, true)) container.register(seam, { useValue: fallback() })
  }
  const seams = seamFactories(resolved)
  fill(TOKENS.CredentialStore, resolved.cache, seams.store)
  fill(TOKENS.AuthStrategy, resolved.auth, seams.auth)
  fill(TOKENS.Logger, resolved.logger, seams.logger)
  fill(TOKENS.HttpTransport, undefined, seams.transport)
  fill(TOKENS.MqttConnector, undefined, seams.connector)
  fill(TOKENS.Clock, undefined, seams.clock)
  fill(TOKENS.Registration, resolved.registration, seams.registration)
  return container
}

/** The seams a container holds (after registerSeams()), as one object. */
export function resolveSeams(container: Container): Seams {
  return {
    store: container.resolve(TOKENS.CredentialStore),
    transport: container.resolve(TOKENS.HttpTransport),
    auth: container.resolve(TOKENS.AuthStrategy),
    connector: container.resolve(TOKENS.MqttConnector),
    clock: container.resolve(TOKENS.Clock),
    logger: container.resolve(TOKENS.Logger),
    registration: container.resolve(TOKENS.Registration),
  }
}

/** The seams of a bootstrap with nothing registered anywhere: the options' own, else the defaults. */
export function defaultSeams(resolved: ResolvedOptions): Seams {
  const seams = seamFactories(resolved)
  return {
    store: resolved.cache ?? seams.store(),
    transport: seams.transport(),
    auth: resolved.auth ?? seams.auth(),
    connector: seams.connector(),
    clock: seams.clock(),
    logger: resolved.logger ?? seams.logger(),
    registration: resolved.registration ?? seams.registration(),
  }
}

/** Stateless: one for every bootstrap (a fleet process keeps one bootstrap per client alive). */
const MQTT_CONNECTOR: MqttConnector = new MqttJsConnector()

function seamFactories(resolved: ResolvedOptions) {
  return {
    store: (): CredentialStore => new MemoryCredentialStore(),
    auth: (): AuthStrategy => defaultAuth(),
    logger: (): Logger => silentLogger,
    transport: (): HttpTransport => new UndiciTransport(resolved.tls),
    connector: (): MqttConnector => MQTT_CONNECTOR,
    clock: (): Clock => systemClock,
    /** Alibaba's flow with the top-level timeout and size limit; its transport (undici) is made on a first use. */
    registration: (): RegistrationStrategy => defaultRegistration(resolved),
  }
}
