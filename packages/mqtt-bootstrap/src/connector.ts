/**
 * The MQTT seam: open one connection and settle on its first CONNACK. The bootstrap's retry loop owns boot-time
 * retries, so the client is created with `reconnectPeriod: 0`; the bootstrap restores the caller's period once the
 * broker has accepted the connection (one retry loop per phase).
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { AbortError, BrokerError, errorCode, throwIfAborted } from './errors.js'
import { isCertificateError, isClientCertificateRefusal } from './tls-failures.js'

export interface MqttConnector {
  /**
   * Resolve with the connected client once the broker accepted it; otherwise reject with a `BrokerError` (or an
   * `AbortError`) after ending the client. `options.reconnectPeriod` is 0.
   */
  connect(url: string, options: IClientOptions, signal?: AbortSignal): Promise<MqttClient>
}

/** CONNACK codes that mean "these credentials are refused": 3.1.1 4/5, MQTT 5 134/135. */
export const AUTH_REJECTED_CODES: ReadonlySet<number> = new Set([4, 5, 134, 135])
/** CONNACK codes worth another try: server unavailable (3, 136), busy (137), quota (151), rate (159). */
const TRANSIENT_CONNACK_CODES: ReadonlySet<number> = new Set([3, 136, 137, 151, 159])

export class MqttJsConnector implements MqttConnector {
  connect(url: string, options: IClientOptions, signal?: AbortSignal): Promise<MqttClient> {
    throwIfAborted(signal)
    const client = mqtt.connect(url, verified(options))
    return new Promise<MqttClient>((resolve, reject) => {
      const settle = (error?: Error) => {
        client.off('connect', onConnect)
        client.off('error', onError)
        client.off('close', onClose)
        signal?.removeEventListener('abort', onAbort)
        if (error === undefined) {
          resolve(client)
          return
        }
        // We own a client that failed to connect: end it. (mqtt.connect() gives every client a no-op 'error'
        // listener, so a late error cannot crash the host.)
        client.end(true)
        reject(error)
      }
      const onConnect = () => settle()
      const onError = (error: Error) => settle(brokerFailure(error))
      const onClose = () =>
        settle(
          new BrokerError('ERR_BROKER_CONNECT', 'connection closed before the broker accepted it', { transient: true }),
        )
      const onAbort = () => settle(new AbortError(signal?.reason))
      client.on('connect', onConnect)
      client.on('error', onError)
      client.on('close', onClose)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}

/**
 * `options` with `rejectUnauthorized` spelled out when absent. mqtt.js does so for mqtts:// but hands wss:// options to
 * ws as they are, and tls.connect then reads NODE_TLS_REJECT_UNAUTHORIZED from the environment (`0` there would switch
 * verification off). A copy: the caller's object stays theirs; its other properties, the inspect hook among them,
 * are copied as they are.
 */
function verified(options: IClientOptions): IClientOptions {
  if (options.rejectUnauthorized !== undefined) return options
  const copy: IClientOptions = Object.defineProperties({}, Object.getOwnPropertyDescriptors(options))
  copy.rejectUnauthorized = true
  return copy
}

/**
 * What a refused CONNACK (or a TLS alert refusing the client certificate) asks of the session, decided on 'error'
 * and done on 'close', when the refused socket is gone: reconnect later, provision afresh, or give up. `undefined`
 * for an error that is not a refusal. `renewsCertificate`: a refused certificate can be replaced by a new claim.
 */
export type Refusal =
  | { kind: 'retry' }
  | { kind: 'revoked'; returnCode: number }
  | { kind: 'fatal'; error: BrokerError }

export function refusalOf(error: Error & { code?: unknown }, renewsCertificate: boolean): Refusal | undefined {
  const refused = isClientCertificateRefusal(error) // a TLS alert refuses the credentials, as a CONNACK 5 does
  if (typeof error.code !== 'number' && !refused) return undefined
  if (refused ? renewsCertificate : AUTH_REJECTED_CODES.has(error.code as number)) {
    return { kind: 'revoked', returnCode: refused ? 0 : (error.code as number) }
  }
  const failure = brokerFailure(error)
  return failure.transient ? { kind: 'retry' } : { kind: 'fatal', error: failure }
}

/** Credentials the broker refused after a re-provisioning (`fresh`) or a renewal (returnCode 0: a TLS alert). */
export function refusedCredentials(returnCode: number, kind: 'fresh' | 'renewed'): BrokerError {
  const what =
    returnCode === 0 ? `the ${kind} client certificate (a TLS alert)` : `${kind} credentials (CONNACK ${returnCode})`
  const after = kind === 'renewed' ? ': the device stays on the previous ones' : ''
  return new BrokerError('ERR_BROKER_AUTH_REJECTED', `broker refused ${what}${after}`, { transient: false, returnCode })
}

/** Classify a connect failure once: refused credentials, worth a retry, or permanent. */
export function brokerFailure(error: unknown): BrokerError {
  if (error instanceof BrokerError) return error
  const returnCode = (error as { code?: unknown } | undefined)?.code
  if (typeof returnCode === 'number') {
    if (AUTH_REJECTED_CODES.has(returnCode)) {
      return new BrokerError('ERR_BROKER_AUTH_REJECTED', `broker rejected the credentials (CONNACK ${returnCode})`, {
        transient: false,
        returnCode,
        cause: error,
      })
    }
    return new BrokerError('ERR_BROKER_CONNECT', `broker refused the connection (CONNACK ${returnCode})`, {
      transient: TRANSIENT_CONNACK_CODES.has(returnCode),
      returnCode,
      cause: error,
    })
  }
  if (isClientCertificateRefusal(error)) {
    const alert = (error as { code: string }).code
    return new BrokerError('ERR_BROKER_AUTH_REJECTED', `broker refused the client certificate (${alert})`, {
      transient: false,
      cause: error,
    })
  }
  if (isCertificateError(error)) {
    const message = `broker TLS certificate verification failed (${errorCode(error)})`
    return new BrokerError('ERR_BROKER_CONNECT', message, { transient: false, cause: error })
  }
  const reason = errorCode(error) ?? (error instanceof Error ? error.message : 'unknown error')
  return new BrokerError('ERR_BROKER_CONNECT', `cannot connect to the broker (${reason})`, {
    transient: true,
    cause: error,
  })
}
