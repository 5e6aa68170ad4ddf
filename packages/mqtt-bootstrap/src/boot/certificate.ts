/**
 * The certificate steps of the boot phases (the `certificate` option, DESIGN.md "Certificates"): the claim carries a
 * CSR for a key made now; the answer's chain must be for that key and valid now, else it is `"99999"`; a cached entry
 * is used only with its key, for a certificate still valid. The private key never leaves the device: it is not in the
 * request (the CSR holds the public key), and from here on it is held beside the configuration (held-keys.ts).
 */
import { checkCertificateChain, NOT_BEFORE_SKEW_MS, publicKeyOf } from '../certificates/chain.js'
import { createCertificateRequest, createDeviceKey, type DeviceKey } from '../certificates/csr.js'
import { holdKey } from '../certificates/held-keys.js'
import type { ResolvedCertificate } from '../certificates/options.js'
import { CSR_FIELD } from '../certificates/options.js'
import { noteLifetime } from '../certificates/schedule.js'
import { type DeviceConfig, ResultCode } from '../contract.js'
import { ProvisioningError } from '../errors.js'
import type { StoredCredentials } from '../store/credential-store.js'

/** One claim for a certificate: the request body (the caller's data and the CSR) and the key it is for. */
export interface CertificateClaim {
  readonly body: string
  readonly key: DeviceKey
}

/**
 * A new key pair and the claim's body: `data` (an object without `csr`: checked at the door) plus its CSR. One per
 * provisioning, shared by its retries (a retry sends the same CSR, signed afresh when claims are signed).
 */
export async function certificateClaim(data: unknown, certificate: ResolvedCertificate): Promise<CertificateClaim> {
  const key = await createDeviceKey(certificate.keyType)
  const csr = createCertificateRequest(key)
  return { body: JSON.stringify({ ...(data as object), [CSR_FIELD]: csr }), key }
}

/**
 * The answer to `claim`, accepted: its chain parses, its leaf is for the claim's key and valid at `now`. Otherwise a
 * `"99999"` (not retried: the same server would answer the same). The key is then held beside the configuration.
 */
export function acceptCertificate(config: DeviceConfig, claim: CertificateClaim, now: number): DeviceConfig {
  const chain = config.device.certificate
  if (chain === undefined) {
    throw invalid('has no certificate (result.device.certificate) for the CSR the device sent')
  }
  const checked = checkCertificateChain(chain, claim.key.publicKeyDer, now, NOT_BEFORE_SKEW_MS)
  if (!checked.ok) throw invalid(`has a certificate the device cannot use: ${checked.problem}`)
  holdKey(config, claim.key.privateKeyPem)
  noteLifetime(config, now, checked)
  return config
}

function invalid(why: string): ProvisioningError {
  return new ProvisioningError('ERR_PROVISION_INVALID_RESPONSE', `provisioning answer ${why}`, {
    resultCode: ResultCode.INVALID_RESPONSE,
    transient: false,
    status: 200,
  })
}

/**
 * Whether a cached entry can be used by a device with the `certificate` option: it has its private key, and its
 * certificate is for that key and valid at `now`. Then the key is held beside the configuration, and its lifetime
 * noted from `receivedAt` (when it was stored). Any other entry (one
 * stored without the option, another key's, an expired certificate) is not corrupt, only of no use: the device
 * claims anew, and the new entry replaces it once the broker has accepted it.
 */
export function usableCertificate(
  entry: StoredCredentials,
  config: DeviceConfig,
  now: number,
  receivedAt: number,
): boolean {
  const { privateKey } = entry
  const chain = config.device.certificate
  if (typeof privateKey !== 'string' || chain === undefined) return false
  let publicKey: Buffer
  try {
    publicKey = publicKeyOf(privateKey)
  } catch {
    return false
  }
  // notBefore was judged when the certificate arrived: a device whose clock is reset behind it (no battery-backed
  // clock) keeps a good certificate rather than claim one it would judge the same. Expiry is judged now.
  const checked = checkCertificateChain(chain, publicKey, now, Number.POSITIVE_INFINITY)
  if (!checked.ok) return false
  holdKey(config, privateKey)
  noteLifetime(config, receivedAt, checked)
  return true
}
