/**
 * Errors from a server that may have echoed a secret the device holds, rebuilt without the echoes (redact.ts's
 * redactEchoes): what the bootstrap throws when it re-provisions or registers with secrets the server could quote.
 */
import type { DeviceConfig } from './contract.js'
import { ProvisioningError, RegistrationError } from './errors.js'
import { redactEchoes } from './redact.js'

export function secretsOf(config: DeviceConfig): Array<string | null> {
  return [config.device.deviceSecret, config.device.productSecret]
}

/**
 * `error` as it may be shown when the server that caused it could have echoed `secrets`: a provisioning or
 * registration error rebuilt with every echo redacted (message, code, server message) and no `cause` (the original
 * holds the echo). Others, made by this library or the transport, quote no server text, and pass as they are.
 */
export function withoutEchoes(error: unknown, secrets: ReadonlyArray<string | null>): unknown {
  const clean = (text: string) => redactEchoes(text, secrets)
  if (error instanceof ProvisioningError) {
    const { resultCode, transient, status, retryAfterMs } = error
    if (clean(error.message) === error.message && clean(resultCode) === resultCode) return error
    return new ProvisioningError(error.code, clean(error.message), {
      resultCode: clean(resultCode),
      transient,
      ...(status === undefined ? {} : { status }),
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...(error.url === undefined ? {} : { url: error.url }),
    })
  }
  if (error instanceof RegistrationError) {
    const { transient, status, retryAfterMs, serverCode, serverMessage } = error
    const code = typeof serverCode === 'string' ? clean(serverCode) : serverCode
    const said = serverMessage === undefined ? undefined : clean(serverMessage)
    if (clean(error.message) === error.message && code === serverCode && said === serverMessage) return error
    return new RegistrationError(error.code, clean(error.message), {
      transient,
      ...(status === undefined ? {} : { status }),
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...(code === undefined ? {} : { serverCode: code }),
      ...(said === undefined ? {} : { serverMessage: said }),
      ...(error.url === undefined ? {} : { url: error.url }),
    })
  }
  return error
}
