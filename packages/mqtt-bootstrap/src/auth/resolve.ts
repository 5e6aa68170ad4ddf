/**
 * The `auth` option, resolved next to its default: a name or a function becomes the strategy it stands for, at the
 * door, so that nothing below the options sees a choice.
 */
import { fail, typeName } from '../option-checks.js'
import { aliyunAuth } from './aliyun.js'
import { azureAuth } from './azure.js'
import { baiduAuth } from './baidu.js'
import { huaweiAuth } from './huawei.js'
import { onenetAuth } from './onenet.js'
import { plainAuth } from './plain.js'
import { type AuthFunction, type AuthStrategy, DEFAULT_MQTTS_PORT } from './strategy.js'
import { tencentAuth } from './tencent.js'
import { thingsboardAuth } from './thingsboard.js'
import { x509Auth } from './x509.js'

/** The strategies an `auth` name stands for, each with its defaults (the factories take options). */
export const AUTH_NAMES = [
  'aliyun',
  'plain',
  'x509',
  'tencent',
  'huawei',
  'onenet',
  'azure',
  'baidu',
  'thingsboard',
] as const
export type AuthName = (typeof AUTH_NAMES)[number]

export type AuthOption = AuthName | AuthStrategy | AuthFunction

/** The strategy of a bootstrap that names none (and whose container registers none). */
export const AUTH_DEFAULT = 'aliyun' satisfies AuthOption

const FACTORIES: Record<AuthName, () => AuthStrategy> = {
  aliyun: aliyunAuth,
  plain: plainAuth,
  x509: x509Auth,
  tencent: tencentAuth,
  huawei: huaweiAuth,
  onenet: onenetAuth,
  azure: azureAuth,
  baidu: baiduAuth,
  thingsboard: thingsboardAuth,
}

/**
 * The named strategies are stateless (Tencent's random connId is drawn per signing): one of each for every bootstrap
 * (a fleet process keeps one per client), made on first use.
 */
const NAMED = new Map<AuthName, AuthStrategy>()

const isName = (value: unknown): value is AuthName => AUTH_NAMES.includes(value as AuthName)

/**
 * The `auth` option as a strategy; `undefined` when not given, so that a container's `TOKENS.AuthStrategy` can still
 * win over the default. Throws `InvalidOptionError`.
 */
export function resolveAuthOption(value: unknown): AuthStrategy | undefined {
  if (value === undefined) return undefined
  if (isName(value) || typeof value === 'function') return authStrategy(value as AuthOption)
  if (typeof value === 'object' && value !== null && typeof (value as AuthStrategy).sign === 'function') {
    return value as AuthStrategy
  }
  fail(
    'auth',
    `one of ${AUTH_NAMES.map((name) => `'${name}'`).join(', ')}, a strategy { sign() } or a function`,
    typeName(value),
  )
}

/** A name, strategy or function -> strategy. */
export function authStrategy(auth: AuthOption): AuthStrategy {
  if (typeof auth === 'function') return { name: auth.name || 'custom', defaultPort: DEFAULT_MQTTS_PORT, sign: auth }
  if (!isName(auth)) return auth
  let strategy = NAMED.get(auth)
  if (strategy === undefined) {
    strategy = Object.freeze(FACTORIES[auth]())
    NAMED.set(auth, strategy)
  }
  return strategy
}

export const X509: AuthStrategy = authStrategy('x509')

export function defaultAuth(): AuthStrategy {
  return authStrategy(AUTH_DEFAULT)
}
