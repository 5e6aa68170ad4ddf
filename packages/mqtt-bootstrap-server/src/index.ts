/**
 * mqtt-bootstrap-server: the provisioning server side (handler, registry, conformance checker, schema) and the
 * `mqtt-bootstrap` command. A device installs only `mqtt-bootstrap`, which never imports this package.
 */
export { type AliyunVerifyOptions, verifyAliyunCredentials } from 'mqtt-bootstrap'
export { type DeviceConfig, ResultCode } from 'mqtt-bootstrap/contract'
export {
  CHECKS,
  type CheckOptions,
  type CheckReport,
  type CheckResult,
  type CheckStatus,
  checkProvisioningServer,
} from './check.js'
export {
  createProvisioningHandler,
  type ProvisioningHandlerOptions,
  type RequestOutcome,
  type Resolution,
  SERVER_CODES,
} from './handler.js'
export { DeviceRegistry } from './registry.js'
export { provisioningSchema, RESULT_CODES } from './schema.js'
