/**
 * The `auth` option, resolved next to its default: a name or a function becomes the strategy it stands for, at the
 * door, so that nothing below the options sees a choice.
 */
import { fail, typeName } from '../option-checks.js'
import { aliyunAuth } from './aliyun.js'
import { plainAuth } from './plain.js'
import { type AuthFunction, type AuthStrategy, DEFAULT_MQTTS_PORT } from './strategy.js'
import { x509Auth } from './x509.js'

export type AuthOption = 'aliyun' | 'plain' | 'x509' | AuthStrategy | AuthFunction

/** The strategy of a bootstrap that names none (and whose container registers none). */
export const AUTH_DEFAULT = 'aliyun' satisfies AuthOption

/**
 * The `auth` option as a strategy; `undefined` when not given, so that a container's `TOKENS.AuthStrategy` can still
 * win over the default. Throws `InvalidOptionError`.
 */
export function resolveAuthOption(value: unknown): AuthStrategy | undefined {
  if (value === undefined) return undefined
  if (value === 'aliyun' || value === 'plain' || value === 'x509' || typeof value === 'function') {
    return authStrategy(value as AuthOption)
  }
  if (typeof value === 'object' && value !== null && typeof (value as AuthStrategy).sign === 'function') {
    return value as AuthStrategy
  }
  fail('auth', "'aliyun', 'plain', 'x509', a strategy { sign() } or a function", typeName(value))
}

/** The named strategies are stateless: one of each for every bootstrap (a fleet process keeps one per client). */
const ALIYUN: AuthStrategy = Object.freeze(aliyunAuth())
const PLAIN: AuthStrategy = Object.freeze(plainAuth())
export const X509: AuthStrategy = Object.freeze(x509Auth())

/** 'aliyun' | 'plain' | 'x509' | strategy | function -> strategy. */
export function authStrategy(auth: AuthOption): AuthStrategy {
  if (auth === 'aliyun') return ALIYUN
  if (auth === 'plain') return PLAIN
  if (auth === 'x509') return X509
  if (typeof auth === 'function') return { name: auth.name || 'custom', defaultPort: DEFAULT_MQTTS_PORT, sign: auth }
  return auth
}

export function defaultAuth(): AuthStrategy {
  return authStrategy(AUTH_DEFAULT)
}
