/**
 * What the session (session.ts) is given by its bootstrap (boot/connect.ts ContextHooks), as types apart from it: the
 * boot phases name `Provisioned` without importing the session, and the session's file is about what it does. And
 * signInto(), how the session writes a configuration's CONNECT fields into the client's options.
 */
import type { IClientOptions } from 'mqtt'
import type { Clock } from './clock.js'
import type { DeviceConfig } from './contract.js'
import type { CredentialSource } from './events.js'
import type { SealedCredentials } from './redact.js'
import type { RenewalHooks } from './renewal.js'
import type { Reporter } from './report.js'

export interface Provisioned {
  config: DeviceConfig
  source: CredentialSource
}

/** What the session needs from its bootstrap; `renewalOf`, `renew`: credentials that expire (renewal.ts). */
export interface SessionHooks extends RenewalHooks {
  /** The broker URL for `config`. */
  url(config: DeviceConfig): string
  /** Freshly signed CONNECT fields for `config`, sealed (may throw: a custom strategy's trouble). */
  sign(config: DeviceConfig): SealedCredentials
  /** The device's own key and certificate for `config` (the `certificate` option), if it has them. */
  clientCertificate(config: DeviceConfig, ws: object | undefined): { key: Buffer; cert: string } | undefined
  /** Whether a refused client certificate can be replaced by a new claim (the `certificate` option). */
  readonly renewsCertificate: boolean
  /** Credentials to use after `rejected` was refused: newer cached ones, else the server's (retried). */
  replace(rejected: DeviceConfig, signal: AbortSignal): Promise<Provisioned>
  renew(config: DeviceConfig, signal: AbortSignal): Promise<Provisioned>
  /** Cache credentials that have just been accepted by the broker. Never rejects. */
  persist(config: DeviceConfig): Promise<void>
  /** Every event and its log line (report.ts). */
  report: Pick<
    Reporter,
    | 'reconnectWait'
    | 'reconnecting'
    | 'reconnected'
    | 'reconnectRejected'
    | 'sessionEnded'
    | 'nonFatal'
    | 'renewing'
    | 'renewed'
  >
  clock: Clock
  /** The caller's mqtt.js servername, kept when the host changes. */
  servername: string | undefined
}

/**
 * Sign `config`'s CONNECT fields into `options`, which mqtt.js reads on every attempt: a re-provisioned or renewed
 * device has a new key and certificate too (mqtt.js hands its options to tls.connect). A signing that throws (a custom
 * strategy's trouble) is reported, and the attempt goes with the previous fields.
 */
export function signInto(
  options: IClientOptions,
  hooks: Pick<SessionHooks, 'sign' | 'clientCertificate' | 'report'>,
  config: DeviceConfig,
): void {
  try {
    const credentials = hooks.sign(config)
    options.clientId = credentials.clientId
    options.username = credentials.username
    options.password = credentials.password
    options.clean = config.connect.cleanSession === 1 // a re-provisioning may change it: the next CONNECT says so
    const own = hooks.clientCertificate(config, options.wsOptions)
    if (own !== undefined) Object.assign(options, own)
  } catch (error) {
    hooks.report.nonFatal(error)
  }
}
