/**
 * The wire contract of the original PointAccess component: result codes, the answer's shape, and its validation.
 *
 * Validation uses valibot schemas (small, fast to import, and exportable as JSON Schema) followed by a normalisation
 * step that maps the contract's lenient forms (boolean cleanSession, missing productSecret) to one canonical shape.
 * Issue messages are built from the schema (path and expectation), never from the received value, which may be a
 * secret.
 */
import * as v from 'valibot'
import { brokerHostProblem } from './broker-url.js'
import { redactOnInspect } from './redact.js'

/** The result codes `PointAccess.request()` defines; any other string is the server's own refusal, passed through. */
export const ResultCode = Object.freeze({
  /** Configuration received; `deviceConfig` holds it. */
  SUCCESS: '00000',
  /** Transient: network, timeout, TLS handshake, HTTP 5xx/408/429, or the server answered `"77777"` itself. */
  TRANSIENT: '77777',
  /** An answer came but could not be understood. */
  INVALID_RESPONSE: '99999',
} as const)
export type KnownResultCode = (typeof ResultCode)[keyof typeof ResultCode]

export type Qos = 0 | 1 | 2

/** The device triplet (plus the product secret some servers hand out instead of a device secret). */
export interface DeviceCredentials {
  productKey: string
  deviceName: string
  /** Secret. Empty only when the server answered a `productSecret` instead (dynamic registration). */
  deviceSecret: string
  /** Secret, or `null` when the server sent none. */
  productSecret: string | null
}

export interface ConnectInfo {
  qos: Qos
  /** `mqtt(s)://` / `ws(s)://` URL, or a bare `host[:port]`. */
  host: string
  cleanSession: 0 | 1
}

export interface DeviceConfig {
  device: DeviceCredentials
  connect: ConnectInfo
}

/** Longest identifier or secret accepted in an answer; anything longer is not a device credential. */
export const MAX_FIELD_LENGTH = 1024
/** Longest server result code passed through. */
export const MAX_CODE_LENGTH = 64

// MQTT forbids U+0000 in strings, and control characters in an identifier only ever break logs and topics.
const PRINTABLE = /^[^\u0000-\u001f\u007f]*$/u
const text = (max: number) => v.pipe(v.string(), v.maxLength(max), v.regex(PRINTABLE))
const identifier = v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_FIELD_LENGTH), v.regex(PRINTABLE))

export const DeviceSchema = v.object({
  productKey: identifier,
  deviceName: identifier,
  deviceSecret: v.optional(text(MAX_FIELD_LENGTH), ''),
  productSecret: v.optional(v.nullable(text(MAX_FIELD_LENGTH)), null),
})

export const ConnectSchema = v.object({
  qos: v.optional(v.picklist([0, 1, 2]), 1),
  host: v.pipe(
    v.string(),
    v.check((host) => brokerHostProblem(host) === undefined, 'is not an mqtt(s)/ws(s) URL or host[:port]'),
  ),
  cleanSession: v.optional(v.union([v.picklist([0, 1]), v.boolean()]), 1),
})

export const DeviceConfigSchema = v.pipe(
  v.object({ device: DeviceSchema, connect: ConnectSchema }),
  v.check(
    ({ device }) => device.deviceSecret !== '' || (device.productSecret ?? '') !== '',
    'needs a deviceSecret or a productSecret',
  ),
)

export const AnswerSchema = v.object({
  code: v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_CODE_LENGTH), v.regex(PRINTABLE)),
  result: v.optional(v.unknown()),
})

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string }

/** A fresh copy of the original component's default `deviceConfig`. */
export function defaultDeviceConfig(): DeviceConfig {
  return withRedaction({
    device: { productKey: '', productSecret: null, deviceName: '', deviceSecret: '' },
    connect: { qos: 1, host: '', cleanSession: 1 },
  })
}

/** Validate and normalise a configuration (an answer's `result`, or a cached entry). */
export function parseDeviceConfig(value: unknown): Checked<DeviceConfig> {
  const parsed = v.safeParse(DeviceConfigSchema, value, { abortEarly: true })
  if (!parsed.success) return { ok: false, problem: describe(parsed.issues[0]) }
  const { device, connect } = parsed.output
  return {
    ok: true,
    value: withRedaction({
      device: {
        productKey: device.productKey,
        deviceName: device.deviceName,
        deviceSecret: device.deviceSecret,
        productSecret: device.productSecret === '' ? null : device.productSecret,
      },
      connect: {
        qos: connect.qos,
        host: connect.host,
        cleanSession: connect.cleanSession === true || connect.cleanSession === 1 ? 1 : 0,
      },
    }),
  }
}

/** The answer's envelope: `{ code, result? }`. */
export function parseAnswer(value: unknown): Checked<{ code: string; result: unknown }> {
  const parsed = v.safeParse(AnswerSchema, value, { abortEarly: true })
  if (!parsed.success) return { ok: false, problem: describe(parsed.issues[0]) }
  return { ok: true, value: { code: parsed.output.code, result: parsed.output.result } }
}

/** A deep copy whose `util.inspect` hides the secrets (see redact.ts). */
export function withRedaction(config: DeviceConfig): DeviceConfig {
  return {
    device: redactOnInspect({ ...config.device }, ['deviceSecret', 'productSecret']),
    connect: { ...config.connect },
  }
}

function describe(issue: v.BaseIssue<unknown> | undefined): string {
  if (issue === undefined) return 'is invalid'
  const path = v.getDotPath(issue) ?? '(root)'
  // valibot's own messages quote the received value, which may be a secret: build ours from the schema alone.
  switch (issue.type) {
    case 'check':
      return `${path} ${issue.message}`
    case 'min_length':
      return `${path} is empty`
    case 'max_length':
      return `${path} is longer than ${String(issue.requirement)} characters`
    case 'regex':
      return `${path} contains control characters`
    default:
      return issue.expected === null ? `${path} is invalid` : `${path}: expected ${issue.expected}`
  }
}
