/**
 * Dynamic registration ("one secret per product"): a provisioning server may answer a productSecret instead of the
 * deviceSecret; a registration strategy exchanges it for the device's own secret. Alibaba Cloud's HTTPS flow is the
 * default (`AliyunRegistration`); other clouds' variants plug in through `TOKENS.Registration` or the `registration`
 * option.
 */

import { withUrl } from '../error-urls.js'
import { ProvisioningError } from '../errors.js'

export interface RegistrationRequest {
  productKey: string
  deviceName: string
  /** Secret. */
  productSecret: string
  /** The broker address the provisioning server answered (`connect.host`): Alibaba's region is read from it. */
  host: string
}

export interface RegistrationContext {
  /** Cancels the request. */
  signal: AbortSignal | undefined
  /** The injected clock's time, in ms (for an HTTP-date Retry-After, measured when the answer comes). */
  now(): number
}

export interface RegisteredDevice {
  /** Secret. The device's own secret, issued once: the bootstrap stores it before it connects. */
  deviceSecret: string
}

export interface RegistrationStrategy {
  /** Shown in events and logs. */
  readonly name: string
  /**
   * Exchange the product secret for the device secret. Reject with a `RegistrationError`: a `transient` one (any of
   * the library's errors with `transient: true`) is retried with the bootstrap's retry policy and its `retryAfterMs`;
   * any other error ends the boot.
   */
  register(request: RegistrationRequest, context: RegistrationContext): Promise<RegisteredDevice>
}

/** What `registration: false` answers: an answer without a deviceSecret is refused (from `url`, when known). */
export function noDeviceSecretError(url?: string): ProvisioningError {
  const error = new ProvisioningError(
    'ERR_PROVISION_NO_DEVICE_SECRET',
    'the server answered a productSecret without a deviceSecret, and registration is off (`registration: false`)',
    { resultCode: '00000', transient: false },
  )
  return url === undefined ? error : withUrl(error, url)
}

/** `registration: false`: an answer without a deviceSecret is refused. */
export const noRegistration: RegistrationStrategy = Object.freeze({
  name: 'none',
  register: (): Promise<RegisteredDevice> => Promise.reject(noDeviceSecretError()),
})
