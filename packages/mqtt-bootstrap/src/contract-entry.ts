/**
 * mqtt-bootstrap/contract: the wire contract as code, for the other side of the wire. mqtt-bootstrap-server and its
 * conformance checker judge requests and answers with exactly what the device uses, so a server that passes is one
 * the device works with; a provisioning server of one's own written in TypeScript can do the same. A device app
 * needs none of it (the main entry validates for it).
 *
 * Every export is named here. The two packages are released together at the same version (mqtt-bootstrap-server
 * depends on exactly its own version of this package), so the shapes here follow the main entry's semver.
 */
export { deriveDeviceKey } from './attestation/derive.js'
export { checkKeyId, keyBytes, MAX_KEY_ID_LENGTH } from './attestation/key.js'
export type { ClaimHeaders, ClaimKey, ClaimRequest } from './attestation/sign.js'
export {
  CLAIM_ALG,
  CLAIM_COMPONENTS,
  CLAIM_HEADERS,
  CLAIM_LABEL,
  contentDigest,
  signClaim,
} from './attestation/sign.js'
export { type ChainCheck, checkCertificateChain, publicKeyOf } from './certificates/chain.js'
export { createCertificateRequest, createDeviceKey, type DeviceKey } from './certificates/csr.js'
export type { KeyType } from './certificates/options.js'
export type { Checked, ConnectInfo, DeviceConfig, DeviceCredentials, KnownResultCode, Qos } from './contract.js'
export {
  codePointLimit,
  contractSchemas,
  describeIssue,
  expiryTime,
  MAX_CERTIFICATE_LENGTH,
  MAX_CODE_LENGTH,
  MAX_FIELD_LENGTH,
  parseAnswer,
  parseDeviceConfig,
  ResultCode,
} from './contract.js'
export { interpretAnswer, parseBody } from './point-access.js'
export { REDACTED, redactUrl } from './redact.js'
export { checkHeaders, checkUrl, serializeData } from './transport/options.js'
