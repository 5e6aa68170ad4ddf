/**
 * Alibaba Cloud registration's options, resolved next to their defaults. A module of its own so that both the
 * bootstrap's `registration` option and `new AliyunRegistration(options)` check with it, and neither imports the other
 * (options.ts and registration/aliyun.ts imported each other: issue 13).
 */
import { ALIYUN_SIGN_METHODS, type AliyunSignMethod } from '../auth/aliyun.js'
import { checkKnown, fail, isPlainObject, pick, typeName } from '../option-checks.js'
import {
  checkUrl,
  type ResolvedTransportOptions,
  resolveTransportOptions,
  TRANSPORT_DEFAULTS,
  TRANSPORT_OPTIONS,
} from '../transport/options.js'
import type { TlsOptions } from '../transport/undici-transport.js'

export interface AliyunRegistrationOptions {
  /** The registration endpoint. @default `https://iot-auth.${region}.aliyuncs.com/auth/register/device` */
  url?: string
  /** The Alibaba Cloud region, e.g. `cn-shanghai`. @default read from `connect.host` (`….<region>.aliyuncs.com`) */
  region?: string
  /** @default 'hmacsha256' */
  signMethod?: AliyunSignMethod
  /** CA / client certificate for the registration endpoint. @default the system roots */
  tls?: TlsOptions
  /** Per-request timeout in ms. @default 10000 */
  timeoutMs?: number
  /** Largest answer accepted, in bytes. @default 65536 */
  maxResponseBytes?: number
  /** Allow an `http://` url. For tests on loopback only: the device secret would travel in clear. @default false */
  allowInsecureHttp?: boolean
}

/** Checked, with the transport's options filled in: what `AliyunRegistration` works with. */
export type ResolvedAliyunRegistrationOptions = Readonly<
  Pick<AliyunRegistrationOptions, 'url' | 'region'> & { signMethod: AliyunSignMethod } & ResolvedTransportOptions
>

/** What the bootstrap's `registration` option may set: its top-level `allowInsecureHttp` governs registration too. */
export const BOOTSTRAP_REGISTRATION_OPTIONS: ReadonlySet<string> = new Set([
  'url',
  'region',
  'signMethod',
  'tls',
  'timeoutMs',
  'maxResponseBytes',
])
const REGISTRATION_OPTIONS: ReadonlySet<string> = new Set([...BOOTSTRAP_REGISTRATION_OPTIONS, 'allowInsecureHttp'])

/** An Alibaba Cloud region id: lower-case letters, a dash, then letters, digits and dashes (cn-shanghai, us-west-1). */
const REGION = /^[a-z]{2,}-[a-z0-9-]{1,40}$/

/** Resolved here: handed to `new AliyunRegistration()` by the bootstrap, it is not checked again. */
const resolved = new WeakSet<object>()

/**
 * Alibaba registration options, checked (option names prefixed `registration.`): the transport options, defaulting
 * to `defaults`, and where to register. Options this function returned come back as they are.
 */
export function resolveAliyunRegistrationOptions(
  value: AliyunRegistrationOptions,
  defaults: Omit<ResolvedTransportOptions, 'tls'> = TRANSPORT_DEFAULTS,
): ResolvedAliyunRegistrationOptions {
  if (resolved.has(value)) return value as ResolvedAliyunRegistrationOptions
  if (!isPlainObject(value)) fail('registration', 'an object of registration options', typeName(value))
  checkKnown(value, REGISTRATION_OPTIONS, 'registration.')
  const transport = resolveTransportOptions(pick(value, TRANSPORT_OPTIONS), 'registration.', defaults)
  const url =
    value.url === undefined ? undefined : checkUrl(value.url, transport.allowInsecureHttp, 'registration.url').href
  if (value.region !== undefined && (typeof value.region !== 'string' || !REGION.test(value.region))) {
    fail('registration.region', 'an Alibaba Cloud region such as cn-shanghai', typeName(value.region))
  }
  const signMethod: unknown = value.signMethod ?? 'hmacsha256'
  if (!isSignMethod(signMethod)) {
    fail('registration.signMethod', `one of ${ALIYUN_SIGN_METHODS.join(', ')}`, typeName(signMethod))
  }
  return remember({
    ...transport,
    signMethod,
    ...(url === undefined ? {} : { url }),
    ...(value.region === undefined ? {} : { region: value.region }),
  })
}

/**
 * Alibaba's registration as the bootstrap makes it by default: the top-level timeout, size limit and
 * `allowInsecureHttp` (checked already), the system roots (the top-level `tls` is the provisioning server's), the
 * endpoint from `connect.host`.
 */
export function defaultAliyunRegistrationOptions(
  transport: Omit<ResolvedTransportOptions, 'tls'>,
): ResolvedAliyunRegistrationOptions {
  const { timeoutMs, maxResponseBytes, allowInsecureHttp } = transport
  return remember({ tls: Object.freeze({}), timeoutMs, maxResponseBytes, allowInsecureHttp, signMethod: 'hmacsha256' })
}

function isSignMethod(value: unknown): value is AliyunSignMethod {
  return (ALIYUN_SIGN_METHODS as readonly unknown[]).includes(value)
}

function remember(options: ResolvedAliyunRegistrationOptions): ResolvedAliyunRegistrationOptions {
  const frozen = Object.freeze(options)
  resolved.add(frozen)
  return frozen
}
