/**
 * mqtt-bootstrap-server: the provisioning server side (handler, registry, conformance checker, schema) and the
 * `mqtt-bootstrap` command. A device installs only `mqtt-bootstrap`, which never imports this package.
 */
export {
  type AliyunVerifyOptions,
  type AzureVerifyOptions,
  type TencentVerifyOptions,
  verifyAliyunCredentials,
  verifyAzureSas,
  verifyTencentCredentials,
} from 'mqtt-bootstrap'
export { type DeviceConfig, deriveDeviceKey, ResultCode } from 'mqtt-bootstrap/contract'
export type { IssuingCaOptions } from './certificates/ca.js'
export type { CertificateRequest, CertificateRequestCheck } from './certificates/csr.js'
export {
  type CertificateIssuer,
  CertificateIssuingError,
  type CertificateTarget,
  type IssueCertificatesOptions,
  issueCertificates,
} from './certificates/issue.js'
export { type Renewal, renewedDeviceName } from './certificates/renewal.js'
export {
  CHECKS,
  type CheckOptions,
  type CheckReport,
  type CheckResult,
  type CheckStatus,
  checkProvisioningServer,
} from './check.js'
export type { CheckAttestation, CheckKey } from './check-claims.js'
export {
  CLAIM_LIMITS_DEFAULTS,
  ClaimLimiter,
  type ClaimLimitsOptions,
  type LimitCounter,
  type LimitCounterStore,
  MemoryLimitCounters,
} from './claims/limits.js'
export {
  MEMORY_NONCE_STORE_DEFAULTS,
  MemoryNonceStore,
  type MemoryNonceStoreOptions,
  type NonceStore,
  NonceStoreFullError,
} from './claims/nonces.js'
export {
  type ClaimLog,
  configurationDigest,
  MEMORY_CLAIM_LOG_DEFAULTS,
  MemoryClaimLog,
  type MemoryClaimLogOptions,
  type Reclaim,
  type ReclaimOptions,
  type ServedClaim,
} from './claims/reclaims.js'
export {
  CLAIM_CODES,
  type Claim,
  type ClaimVerdict,
  type ClaimVerifier,
  type DeviceKey,
  SIGNED_CLAIMS_DEFAULTS,
  type SignedClaimsOptions,
  signedClaims,
  verifiedKeyId,
} from './claims/verify.js'
export {
  type CertificateSubject,
  CLIENT_CERTIFICATE_DEFAULTS,
  type ClientCertificateOptions,
} from './claims/x509.js'
export {
  createProvisioningHandler,
  type ProvisioningHandlerOptions,
  type RequestOutcome,
  type Resolution,
  SERVER_CODES,
} from './handler.js'
export { PostgresClaimLog } from './postgres/claim-log.js'
export {
  POSTGRES_LIMIT_COUNTERS_DEFAULTS,
  PostgresLimitCounters,
  type PostgresLimitCountersOptions,
} from './postgres/counters.js'
export { PostgresNonceStore, type PostgresNonceStoreOptions } from './postgres/nonces.js'
export {
  type ClaimPolicy,
  PostgresRegistry,
  type PostgresRegistryOptions,
  type RegistryListing,
  type RegistrySettings,
  type Triplet,
} from './postgres/registry.js'
export { DeviceRegistry, type RegistryVerifierOptions } from './registry.js'
export { provisioningSchema, RESULT_CODES } from './schema.js'
export { RegistryUnavailableError } from './unavailable.js'
