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
  return Object.freeze(new AliyunOnFirstUse(asResolved, options))
}

/** Alibaba's flow with the top-level timeout and size limit (see defaultAliyunRegistrationOptions). */
export function defaultRegistration(transport: Omit<ResolvedTransportOptions, 'tls'>): RegistrationStrategy {
  return Object.freeze(new AliyunOnFirstUse(defaultAliyunRegistrationOptions, transport))
}

const asResolved = (options: ResolvedAliyunRegistrationOptions) => options

/**
 * Alibaba's flow, made when a device first registers (most boots never do, and a cached boot should not pay), from
 * options resolved at the door (`AliyunRegistration` does not check them again). One object per bootstrap (a fleet
 * process keeps one per client): no closures.
 */
class AliyunOnFirstUse<I> implements RegistrationStrategy {
  readonly name = 'aliyun'
  readonly #resolve: (input: I) => ResolvedAliyunRegistrationOptions
  readonly #input: I
  #made: AliyunRegistration | undefined

  constructor(resolve: (input: I) => ResolvedAliyunRegistrationOptions, input: I) {
    this.#resolve = resolve
    this.#input = input
  }

  register(...args: Parameters<RegistrationStrategy['register']>): ReturnType<RegistrationStrategy['register']> {
    this.#made ??= new AliyunRegistration(this.#resolve(this.#input))
    return this.#made.register(...args)
  }
}
