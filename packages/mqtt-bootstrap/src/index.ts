/**
 * mqtt-bootstrap: provision device credentials over HTTPS, cache them, and open the mqtt.js session.
 *
 * Every export is named here (no `export *`). Left out on purpose: the server side (the `mqtt-bootstrap-server`
 * package), which a device never needs, and the contract's schemas and parsers (`mqtt-bootstrap/contract`).
 */

export { deriveDeviceKey } from './attestation/derive.js'
export type { AttestationOptions } from './attestation/options.js'
export type {
  AliyunAuthOptions,
  AliyunRegistrationSignInput,
  AliyunSignInput,
  AliyunSignMethod,
  AliyunVerifyOptions,
} from './auth/aliyun.js'
export { aliyunAuth, signAliyun, signAliyunRegistration, verifyAliyunCredentials } from './auth/aliyun.js'
export {
  type AzureAuthOptions,
  type AzureSasInput,
  type AzureVerifyOptions,
  azureAuth,
  signAzureSas,
  verifyAzureSas,
} from './auth/azure.js'
export { type BaiduAlgorithm, type BaiduAuthOptions, type BaiduSignInput, baiduAuth, signBaidu } from './auth/baidu.js'
export { type HuaweiAuthOptions, type HuaweiSignInput, huaweiAuth, signHuawei } from './auth/huawei.js'
export {
  type OnenetAuthOptions,
  type OnenetMethod,
  type OnenetSignInput,
  onenetAuth,
  signOnenet,
} from './auth/onenet.js'
export { plainAuth } from './auth/plain.js'
export type { AuthName } from './auth/resolve.js'
export type { AuthFunction, AuthStrategy, MqttCredentials, SignContext } from './auth/strategy.js'
export {
  signTencent,
  type TencentAuthOptions,
  type TencentSignInput,
  type TencentSignMethod,
  type TencentVerifyOptions,
  tencentAuth,
  verifyTencentCredentials,
} from './auth/tencent.js'
export { thingsboardAuth } from './auth/thingsboard.js'
export { x509Auth } from './auth/x509.js'
export type { CallOptions, ConnectOptions } from './bootstrap.js'
export { connectProvisioned, createBootstrap, MqttBootstrap, registerBootstrap } from './bootstrap.js'
export type { BrokerOptions, BrokerProtocol } from './broker-url.js'
export type { RenewedCredential } from './certificates/schedule.js'
export type { Clock } from './clock.js'
export { systemClock } from './clock.js'
export type { MqttConnector } from './connector.js'
export { MqttJsConnector } from './connector.js'
export type { Container, Token } from './container.js'
export type { ConnectInfo, DeviceConfig, DeviceCredentials, KnownResultCode, Qos } from './contract.js'
export { defaultDeviceConfig, ResultCode } from './contract.js'
export type {
  AuthErrorCode,
  BrokerErrorCode,
  CredentialStoreErrorCode,
  ErrorCode,
  ErrorDetails,
  ProvisioningErrorCode,
  RegistrationErrorCode,
  TransportErrorCode,
} from './errors.js'
export {
  AbortError,
  AuthError,
  BootTimeoutError,
  BrokerError,
  CredentialStoreError,
  DependencyError,
  errorCode,
  InvalidOptionError,
  MessageStoreError,
  MqttBootstrapError,
  ProvisioningError,
  RegistrationError,
} from './errors.js'
export type {
  AuthRejectedEvent,
  BootstrapEvents,
  CacheEvent,
  CacheHitEvent,
  CacheInvalidateEvent,
  CacheMissEvent,
  CacheWriteEvent,
  ConnectedEvent,
  ConnectingEvent,
  CredentialSource,
  ErrorEvent,
  PhaseRetryEvent,
  ProvisionedEvent,
  ProvisioningEvent,
  ProvisionRetryEvent,
  RegistrationEvent,
  RenewedEvent,
  RenewingEvent,
  RetryEvent,
} from './events.js'
export type { Logger } from './logger.js'
export { silentLogger } from './logger.js'
export type { MqttOptions, ProvisionedMqttKey } from './mqtt-options.js'
export { PROVISIONED_MQTT_KEYS } from './mqtt-options.js'
export type {
  AuthOption,
  BootstrapOptions,
  CertificateOptions,
  KeyType,
  ResolvedOptions,
  TransportOptions,
} from './options.js'
export { DEFAULTS } from './options.js'
export type { PointAccessDeps, PointAccessOptions, PointAccessRequestOptions } from './point-access.js'
export { PointAccess } from './point-access.js'
export type { AliyunRegistrationOptions } from './registration/aliyun.js'
export { AliyunRegistration, aliyunRegionOf } from './registration/aliyun.js'
export type {
  RegisteredDevice,
  RegistrationContext,
  RegistrationRequest,
  RegistrationStrategy,
} from './registration/strategy.js'
export type { RetryOptions, RetryPolicy } from './retry.js'
export { RETRY_DEFAULTS } from './retry.js'
export type { Seams } from './seams.js'
export type { CredentialStore, StoredCredentials } from './store/credential-store.js'
export { credentialKey } from './store/credential-store.js'
export type { FileCredentialStoreOptions } from './store/file-store.js'
export { FileCredentialStore } from './store/file-store.js'
export { MemoryCredentialStore } from './store/memory-store.js'
export type { MessageIdProvider } from './store/message-ids.js'
export type { FileMessageStoreOptions, MessageStoreEvents } from './store/message-store.js'
export { FileMessageStore } from './store/message-store.js'
export { TOKENS } from './tokens.js'
export type { HttpRequest, HttpResponse, HttpTransport } from './transport/http-transport.js'
export type { TransportErrorDetails } from './transport/transport-error.js'
export { TransportError } from './transport/transport-error.js'
export type { TlsOptions } from './transport/undici-transport.js'
export { UndiciTransport } from './transport/undici-transport.js'
