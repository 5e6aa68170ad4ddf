/**
 * The typed event map of `MqttBootstrap` (eventemitter3). Each payload is one object, so fields can be added later.
 * No payload carries a secret: URLs lose their query and credentials, devices are named by productKey/deviceName.
 * Every `attempt` is the number of the attempt the event is about, counted from 1 in every phase.
 */
import type { RenewedCredential } from './certificates/schedule.js'
import type { Qos } from './contract.js'
import type { CredentialStoreError, ProvisioningError } from './errors.js'

export type CredentialSource = 'cache' | 'server'

export interface ProvisioningEvent {
  /** The provisioning URL without query string. */
  url: string
  /** 1 for the first request, then 2, 3, … */
  attempt: number
}

interface RetryFields {
  /**
   * Counts the failures retried in this phase, from 1. provision, register, connect: the attempt that failed (the next
   * one is `attempt + 1`). reconnect: the lost connection is the first failure, so this wait comes before reconnect
   * attempt `attempt` (the `connecting` event that follows carries the same number).
   */
  attempt: number
  /** How long before the next attempt (Retry-After wins over the backoff). */
  delayMs: number
}

/** The provisioning request failed for a transient reason; its error says which (`error.code`, `ERR_PROVISION_*`). */
export interface ProvisionRetryEvent extends RetryFields {
  phase: 'provision'
  /** The seed's result code for every transient failure (the error's own code is `error.code`). */
  code: '77777'
  error: ProvisioningError
}

/**
 * A retried failure of dynamic registration (register), of the broker connect during boot (connect), or after boot,
 * the connection lost or a reconnect failed (reconnect).
 */
export interface PhaseRetryEvent<P extends 'register' | 'connect' | 'reconnect' = 'register' | 'connect' | 'reconnect'>
  extends RetryFields {
  phase: P
  /** The error's code (`ERR_REGISTER_BUSY`, `ERR_BROKER_CONNECT`, …). */
  code: string
  error: Error
}

/** Before each retry; `phase` tells which (`provision`, `register`, `connect` during boot; `reconnect` after). */
export type RetryEvent =
  | ProvisionRetryEvent
  | PhaseRetryEvent<'register'>
  | PhaseRetryEvent<'connect'>
  | PhaseRetryEvent<'reconnect'>

export interface RegistrationEvent {
  /** The registration strategy's name (`aliyun` by default). */
  strategy: string
  productKey: string
  deviceName: string
  /** 1 for the first request, then 2, 3, … (`registering` only). */
  attempt?: number
}

export interface ProvisionedEvent {
  source: CredentialSource
  productKey: string
  deviceName: string
  host: string
  qos: Qos
  cleanSession: 0 | 1
}

/** A cached configuration was found for this bootstrap's (url, data). */
export interface CacheHitEvent {
  action: 'hit'
  /** The cache key (a hash of URL and data). */
  key: string
  // Absent here, declared so that code reading `event.reason` or `event.error` without narrowing still compiles.
  reason?: undefined
  error?: undefined
}

/** None was found, or the one found is unusable (and was treated as absent). */
export interface CacheMissEvent {
  action: 'miss'
  key: string
  /**
   * `certificate`: the entry holds no certificate the device can use (none, not for its key, or not valid now), so
   * the device claims a new one. `expired`: the entry's deviceSecret is past its `expiresAt`.
   */
  reason: 'absent' | 'corrupt' | 'version' | 'key' | 'io' | 'certificate' | 'expired'
  /** Why the cache read failed (reason corrupt, version, key or io). */
  error?: CredentialStoreError
}

/** Credentials from the server were written to the cache. */
export interface CacheWriteEvent {
  action: 'write'
  key: string
  reason?: undefined
  error?: undefined
}

/** The cached credentials were dropped: the broker rejected them, or `invalidate()` was called. */
export interface CacheInvalidateEvent {
  action: 'invalidate'
  key: string
  reason: 'auth-rejected' | 'requested'
  error?: undefined
}

export type CacheEvent = CacheHitEvent | CacheMissEvent | CacheWriteEvent | CacheInvalidateEvent

export interface ConnectingEvent {
  /** The broker URL. */
  url: string
  clientId: string
  source: CredentialSource
  /** 1 for the first connect, then 2, 3, …; after boot, the reconnect attempt since the connection was lost. */
  attempt: number
}

export interface ConnectedEvent {
  url: string
  clientId: string
  source: CredentialSource
}

export interface AuthRejectedEvent {
  /**
   * CONNACK return code (3.1.1) or reason code (5): 4, 5, 134 or 135; 0 when the broker refused the client certificate
   * with a TLS alert (mutual TLS: no CONNACK comes).
   */
  returnCode: number
  source: CredentialSource
  /** Whether the bootstrap now provisions afresh (once, and only for cached credentials). */
  reprovision: boolean
}

export interface ErrorEvent {
  error: Error
  /** `true` when the operation failed (and its promise rejects with `error`); `false` for a problem worked around. */
  fatal: boolean
}

/** Before the session renews credentials that expire (issue 18): the certificate, or a secret with an expiresAt. */
export interface RenewingEvent {
  credential: RenewedCredential
  productKey: string
  deviceName: string
  /** When the credentials being renewed expire (ISO 8601, UTC). */
  expiresAt: string
  /**
   * `true` once they have expired: the request is then a fresh claim, as on a first boot (an expired certificate
   * proves nothing), not a renewal.
   */
  expired: boolean
  /** 1 for the first renewal of these credentials, 2 after it failed (each with its own retries), … */
  attempt: number
}

/** The renewed credentials have been accepted by the broker, and now replace the old ones in the cache. */
export interface RenewedEvent {
  credential: RenewedCredential
  productKey: string
  deviceName: string
  /** When the new credentials expire (ISO 8601, UTC); absent when they do not (the server sent no lifetime). */
  expiresAt?: string
}

export interface BootstrapEvents {
  provisioning: (event: ProvisioningEvent) => void
  retry: (event: RetryEvent) => void
  /** Before each dynamic registration request (the server answered a productSecret and no deviceSecret). */
  registering: (event: RegistrationEvent) => void
  /** The device secret was issued and is stored: the connect comes next. */
  registered: (event: RegistrationEvent) => void
  provisioned: (event: ProvisionedEvent) => void
  cache: (event: CacheEvent) => void
  connecting: (event: ConnectingEvent) => void
  connected: (event: ConnectedEvent) => void
  'auth-rejected': (event: AuthRejectedEvent) => void
  error: (event: ErrorEvent) => void
  /**
   * The session renews credentials before they expire; it retries failures with the `retry` policy, reports each
   * renewal that fails (or that the broker refuses) as a non-fatal `error`, and keeps the old credentials meanwhile.
   */
  renewing: (event: RenewingEvent) => void
  renewed: (event: RenewedEvent) => void
}
