/**
 * Auth strategies map the provisioned device triplet to the MQTT CONNECT fields. They run synchronously, because
 * mqtt.js rebuilds CONNECT from `client.options` synchronously on every (re)connect.
 */
import type { DeviceCredentials } from '../contract.js'

export interface MqttCredentials {
  clientId: string
  username: string
  /** Secret. Absent when the credential is something else: `x509`'s client certificate. */
  password?: string
}

export interface SignContext {
  /** The broker URL the credentials are for (Alibaba's securemode depends on TLS). */
  brokerUrl: string
  /** The injected clock's time, in ms. */
  now: number
}

export interface AuthStrategy {
  /** Shown in events and logs. */
  readonly name: string
  /** Port for a bare `connect.host` over mqtts. @default 8883 */
  readonly defaultPort?: number
  sign(device: DeviceCredentials, context: SignContext): MqttCredentials
}

/** A custom strategy as a bare function. */
export type AuthFunction = (device: DeviceCredentials, context: SignContext) => MqttCredentials

export const DEFAULT_MQTTS_PORT = 8883
