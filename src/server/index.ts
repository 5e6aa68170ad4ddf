/**
 * mqtt-bootstrap/server: the provisioning server side. A device never imports this entry.
 */
export { type AliyunVerifyOptions, verifyAliyunCredentials } from '../auth/aliyun.js'
export { type DeviceConfig, ResultCode } from '../contract.js'
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
  type Resolution,
  SERVER_CODES,
} from './handler.js'
export { DeviceRegistry } from './registry.js'
export { provisioningSchema, RESULT_CODES } from './schema.js'
