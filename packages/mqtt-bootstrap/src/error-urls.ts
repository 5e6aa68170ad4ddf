/**
 * Errors that say which server they were about (issue 12: "ERR_PROVISION_TLS" alone does not tell a device developer
 * whether the provisioning server, the registration endpoint or the broker failed). Each path adds the URL in one place,
 * where its request is made: requestConfig (point-access.ts), AliyunRegistration.register, the bootstrap's connect and the session.
 * The URL is redacted (redactUrl: no userinfo, query or fragment, which may carry tokens).
 */
import { BrokerError, ProvisioningError, RegistrationError } from './errors.js'
import { redactUrl } from './redact.js'

/**
 * `error` with `url` (redacted) in its message and its `url` field: a provisioning, registration or broker error
 * rebuilt (same code, fields, cause and stack), any other error as it is, and one that already names a URL too.
 */
export function withUrl<E>(error: E, url: string | URL): E {
  if (!(error instanceof ProvisioningError || error instanceof RegistrationError || error instanceof BrokerError)) {
    return error
  }
  if (error.url !== undefined) return error
  const shown = redactUrl(String(url))
  const message = `${error.message}, at ${shown}`
  const { transient, cause } = error
  let copy: ProvisioningError | RegistrationError | BrokerError
  if (error instanceof ProvisioningError) {
    const { resultCode, status, retryAfterMs } = error
    copy = new ProvisioningError(error.code, message, {
      resultCode,
      transient,
      status,
      retryAfterMs,
      url: shown,
      cause,
    })
  } else if (error instanceof RegistrationError) {
    const { status, retryAfterMs, serverCode, serverMessage } = error
    const details = { transient, status, retryAfterMs, serverCode, serverMessage, url: shown, cause }
    copy = new RegistrationError(error.code, message, details)
  } else {
    copy = new BrokerError(error.code, message, { transient, returnCode: error.returnCode, url: shown, cause })
  }
  if (error.attempts !== undefined) copy.attempts = error.attempts
  // The stack of where it happened, not of this function.
  const head = `${error.name}: ${error.message}`
  if (error.stack?.startsWith(head)) copy.stack = `${copy.name}: ${message}${error.stack.slice(head.length)}`
  return copy as E
}
