/**
 * The typed event map of `MqttBootstrap` (eventemitter3). Each payload is one object, so fields can be added later.
 * No payload carries a secret: URLs lose their query and credentials, devices are named by productKey/deviceName.
 * Every `attempt` is the number of the attempt the event is about, counted from 1 in every phase.
 */
import type { Qos } from './contract.js'
import type { CredentialStoreError } from './errors.js'

export type CredentialSource = 'cache' | 'server'

export interface ProvisioningEvent {
  /** The provisioning URL without query string. */
  url: string
  /** 1 for the first request, then 2, 3, … */
  attempt: number
}

export interface RetryEvent {
  /**
   * provision, register, connect: during boot (register: dynamic registration). reconnect: the connection was lost
   * (or a reconnect failed) after boot.
   */
  phase: 'provision' | 'register' | 'connect' | 'reconnect'
  /**
   * Counts the failures retried in this phase, from 1. provision, register, connect: the attempt that failed (the next
   * one is `attempt + 1`). reconnect: the lost connection is the first failure, so this wait comes before reconnect
   * attempt `attempt` (the `connecting` event that follows carries the same number).
   */
  attempt: number
  /** How long before the next attempt (Retry-After wins over the backoff). */
  delayMs: number
  /** `"77777"` in the provision phase; the error code (`ERR_REGISTER_BUSY`, `ERR_BROKER_CONNECT`, …) in the others. */
  code: string
  error: Error
}

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

export interface CacheEvent {
  action: 'hit' | 'miss' | 'write' | 'invalidate'
  /** The cache key (a hash of URL and data). */
  key: string
  /** miss: absent, corrupt, version, key, io; invalidate: auth-rejected, requested. */
  reason?: 'absent' | 'corrupt' | 'version' | 'key' | 'io' | 'auth-rejected' | 'requested'
  /** Why a cache read failed (miss with reason corrupt, version or io). */
  error?: CredentialStoreError
}

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
  /** CONNACK return code (3.1.1) or reason code (5): 4, 5, 134 or 135. */
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
}
