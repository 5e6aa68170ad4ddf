/**
 * The bootstrap's `registration` option, resolved next to its default: whatever it says becomes a
 * `RegistrationStrategy` at the door (`false` the one that refuses, Alibaba's options Alibaba's flow with them).
 */
import { checkKnown, fail, isPlainObject, typeName } from '../option-checks.js'
import type { ResolvedTransportOptions } from '../transport/options.js'
import { AliyunRegistration } from './aliyun.js'
import {
  type AliyunRegistrationOptions,
  BOOTSTRAP_REGISTRATION_OPTIONS,
  defaultAliyunRegistrationOptions,
  type ResolvedAliyunRegistrationOptions,
  resolveAliyunRegistrationOptions,
} from './aliyun-options.js'
import { noRegistration, type RegistrationStrategy } from './strategy.js'

export type RegistrationOption = AliyunRegistrationOptions | RegistrationStrategy | false

/**
 * The `registration` option as a strategy; `undefined` when not given, so that a container's `TOKENS.Registration`
 * can still win over the default. Alibaba's options default to the top-level transport options, and the top-level
 * `allowInsecureHttp` governs them. Throws `InvalidOptionError`.
 */
export function resolveRegistrationOption(
  value: unknown,
  transport: ResolvedTransportOptions,
): RegistrationStrategy | undefined {
  if (value === undefined) return undefined
  if (value === false) return noRegistration
  const strategy = value as Partial<RegistrationStrategy> | null
  if (typeof strategy?.register === 'function') {
    if (typeof strategy.name !== 'string') fail('registration.name', 'a string', typeName(strategy.name))
    return value as RegistrationStrategy
  }
  if (!isPlainObject(value)) {
    fail('registration', 'Alibaba registration options, a strategy with register(), or false', typeName(value))
  }
  checkKnown(value, BOOTSTRAP_REGISTRATION_OPTIONS, 'registration.')
  const options = resolveAliyunRegistrationOptions(
    { ...value, allowInsecureHttp: transport.allowInsecureHttp },
    transport,
  )
  return aliyunOnFirstUse(() => options)
}

/** Alibaba's flow with the top-level timeout and size limit (see defaultAliyunRegistrationOptions). */
export function defaultRegistration(transport: Omit<ResolvedTransportOptions, 'tls'>): RegistrationStrategy {
  return aliyunOnFirstUse(() => defaultAliyunRegistrationOptions(transport))
}

/**
 * Alibaba's flow, made when a device first registers (most boots never do, and a cached boot should not pay). The
 * options come resolved: `AliyunRegistration` does not check them again.
 */
function aliyunOnFirstUse(options: () => ResolvedAliyunRegistrationOptions): RegistrationStrategy {
  let made: AliyunRegistration | undefined
  return Object.freeze({
    name: 'aliyun',
    register: (request, context) => {
      made ??= new AliyunRegistration(options())
      return made.register(request, context)
    },
  } satisfies RegistrationStrategy)
}
