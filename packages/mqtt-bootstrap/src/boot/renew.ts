/**
 * The renew phase (issue 18), run by the session before credentials expire: a claim like the first (the device's
 * data; with the `certificate` option a CSR for a key made now: a rekey, never the old key again), retried with the
 * `retry` policy. While the current certificate is valid it is the TLS client certificate of the request, EST's
 * re-enroll (RFC 7030 4.2.2): the server knows the device by the certificate it issued, with the same subject. Once it
 * has expired it proves nothing, and the request is a fresh claim, as on a first boot.
 *
 * Nothing is cached here: the session keeps the old credentials in the store until the broker has accepted the new.
 */
import { heldKey } from '../certificates/held-keys.js'
import { lifetimeOf } from '../certificates/schedule.js'
import type { DeviceConfig } from '../contract.js'
import type { Provisioned } from '../session-hooks.js'
import type { ClientCertificate } from '../transport/http-transport.js'
import type { BootContext, FailureSink } from './context.js'
import { claim } from './provision.js'

/** A renewal's retried failures have no call to tell (a boot's deadline reports them): the `retry` events do. */
const NO_CALL: FailureSink = { failed: () => {} }

/** New credentials for `current`, from the server; rejects with the last failure once the retries are spent. */
export function renewCredentials(
  context: BootContext,
  current: DeviceConfig,
  signal: AbortSignal,
): Promise<Provisioned> {
  return claim(context, NO_CALL, signal, current, { proof: proofOf(current, context.seams.clock.now()) })
}

/** The current certificate and its key, while the certificate is valid at `now`. */
function proofOf(config: DeviceConfig, now: number): ClientCertificate | undefined {
  const key = heldKey(config)
  const cert = config.device.certificate
  const lifetime = lifetimeOf(config)
  if (key === undefined || cert === undefined || lifetime === undefined || lifetime.expiresAt <= now) return undefined
  return { cert, key }
}
