/**
 * The I/O seams of a bootstrap, as one object: what the boot phases reach the world through. Both ways of building a
 * bootstrap (a tsyringe container, or the defaults directly: tokens.ts) end in one `new MqttBootstrap(options, seams)`.
 */
import type { AuthStrategy } from './auth/strategy.js'
import type { Clock } from './clock.js'
import type { MqttConnector } from './connector.js'
import type { Logger } from './logger.js'
import type { RegistrationStrategy } from './registration/strategy.js'
import type { CredentialStore } from './store/credential-store.js'
import type { HttpTransport } from './transport/http-transport.js'

export interface Seams {
  store: CredentialStore
  transport: HttpTransport
  auth: AuthStrategy
  connector: MqttConnector
  clock: Clock
  logger: Logger
  registration: RegistrationStrategy
}
