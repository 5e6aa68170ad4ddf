/**
 * Dependency injection (tsyringe). Every I/O seam has a typed symbol token; `registerBootstrap()` fills a container
 * with the defaults for whatever the caller has not registered. Nothing is ever registered in tsyringe's global
 * container: the bootstrap works in a child container (STYLE: no hidden global state).
 */

import { aliyunAuth } from './auth/aliyun.js'
import { plainAuth } from './auth/plain.js'
import { type AuthStrategy, DEFAULT_MQTTS_PORT } from './auth/strategy.js'
import { type Clock, systemClock } from './clock.js'
import { type MqttConnector, MqttJsConnector } from './connector.js'
import type { Container, Token } from './container.js'
import { type Logger, silentLogger } from './logger.js'
import { type AuthOption, DEFAULTS, type ResolvedOptions } from './options.js'
import { AliyunRegistration, type AliyunRegistrationOptions } from './registration/aliyun.js'
import { noRegistration, type RegistrationStrategy } from './registration/strategy.js'
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
 * Register the resolved options and the default seams in `container`. Explicit options (`cache`, `auth`, `logger`)
 * are registered in `container` itself, so they win; a seam without one keeps the registration the container (or one
 * of its parents) already has, else gets the default.
 */
export function registerSeams(container: Container, resolved: ResolvedOptions): Container {
  container.register(TOKENS.Options, { useValue: resolved })
  const fill = <T>(seam: Token<T>, explicit: T | undefined, fallback: () => T) => {
    if (explicit !== undefined) container.register(seam, { useValue: explicit })
    else if (!container.isRegistered(seam, true)) container.register(seam, { useValue: fallback() })
  }
  const seams = seamFactories(resolved)
  fill(TOKENS.CredentialStore, resolved.cache, seams.store)
  fill(TOKENS.AuthStrategy, resolved.auth === undefined ? undefined : toStrategy(resolved.auth), seams.auth)
  fill(TOKENS.Logger, resolved.logger, seams.logger)
  fill(TOKENS.HttpTransport, undefined, seams.transport)
  fill(TOKENS.MqttConnector, undefined, seams.connector)
  fill(TOKENS.Clock, undefined, seams.clock)
  fill(TOKENS.Registration, explicitRegistration(resolved), seams.registration)
  return container
}

/** The seams of a bootstrap with nothing registered anywhere: the options' own, else the defaults. */
export function defaultSeams(resolved: ResolvedOptions) {
  const seams = seamFactories(resolved)
  return {
    store: resolved.cache ?? seams.store(),
    auth: resolved.auth === undefined ? seams.auth() : toStrategy(resolved.auth),
    logger: resolved.logger ?? seams.logger(),
    transport: seams.transport(),
    connector: seams.connector(),
    clock: seams.clock(),
    registration: explicitRegistration(resolved) ?? seams.registration(),
  }
}

/**
 * The `registration` option as a strategy: a strategy as it is, `false` as one that refuses such answers, Alibaba's
 * options as Alibaba's flow with them; `undefined` when the option is not given (the container's, else the default).
 */
function explicitRegistration(resolved: ResolvedOptions): RegistrationStrategy | undefined {
  const option = resolved.registration
  if (option === undefined) return undefined
  if (option === false) return noRegistration
  if ('register' in option) return option
  return aliyunOnFirstUse(option)
}

/** Alibaba's flow, made when a device first registers (most boots never do, and a cached boot should not pay). */
function aliyunOnFirstUse(options: AliyunRegistrationOptions): RegistrationStrategy {
  let made: AliyunRegistration | undefined
  return Object.freeze({
    name: 'aliyun',
    register: (request, context) => {
      made ??= new AliyunRegistration(options)
      return made.register(request, context)
    },
  } satisfies RegistrationStrategy)
}

function seamFactories(resolved: ResolvedOptions) {
  return {
    store: (): CredentialStore => new MemoryCredentialStore(),
    auth: (): AuthStrategy => toStrategy(DEFAULTS.auth),
    logger: (): Logger => silentLogger,
    transport: (): HttpTransport => new UndiciTransport(resolved.tls),
    connector: (): MqttConnector => new MqttJsConnector(),
    clock: (): Clock => systemClock,
    /** Alibaba's flow with the top-level timeout and size limit; its transport (undici) is made on a first use. */
    registration: (): RegistrationStrategy =>
      aliyunOnFirstUse({
        timeoutMs: resolved.timeoutMs,
        maxResponseBytes: resolved.maxResponseBytes,
        allowInsecureHttp: resolved.allowInsecureHttp,
      }),
  }
}

/** 'aliyun' | 'plain' | strategy | function -> strategy. */
export function toStrategy(auth: AuthOption): AuthStrategy {
  if (auth === 'aliyun') return aliyunAuth()
  if (auth === 'plain') return plainAuth()
  if (typeof auth === 'function') return { name: auth.name || 'custom', defaultPort: DEFAULT_MQTTS_PORT, sign: auth }
  return auth
}
