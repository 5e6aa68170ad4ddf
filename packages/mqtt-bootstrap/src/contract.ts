/**
 * The wire contract of the original PointAccess component: result codes, the answer's shape, and its validation.
 *
 * Validation uses valibot schemas (small, fast to import, and exportable as JSON Schema) followed by a normalisation
 * step that maps the contract's lenient forms (boolean cleanSession, missing productSecret) to one canonical shape.
 * Issue messages are built from the schema (path and expectation), never from the received value, which may be a
 * secret.
 */
import type * as Valibot from 'valibot'
import { BROKER_HOST_PATTERN, longerThan, MAX_HOST_LENGTH, mqttCharSource } from './broker-url.js'
import { valibot } from './lazy.js'
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
  /**
   * The device's certificate chain (PEM, leaf first), issued for the CSR the device sent (the `certificate` option);
   * absent otherwise. Public: the private key it goes with never leaves the device.
   */
  certificate?: string
  /**
   * When the credentials stop working (RFC 3339 date-time, e.g. `2026-12-02T10:00:00Z`), for a deviceSecret with a
   * lifetime; absent for one without. The session renews before it (the `renewBeforeMs` option).
   */
  expiresAt?: string
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
/** Longest certificate chain accepted in an answer (PEM text): a leaf and a few CA certificates. */
export const MAX_CERTIFICATE_LENGTH = 32 * 1024
/** Longest server result code passed through. */
export const MAX_CODE_LENGTH = 64

// The schemas are declarative on purpose (no v.check, no transform): server/schema.ts turns them into the published
// JSON Schema, so what the device accepts and what the contract says cannot drift. Every regex has its own message:
// valibot's default one quotes the value. They are built on first use (valibot loads then: see lazy.ts).

// Every string of an answer is one MQTT allows (broker-url.ts says which characters, and why the pattern means the
// same with and without the `u` flag JSON Schema validators use). productKey and deviceName go into CONNECT's
// clientId and username and the host into the broker URL: a broker drops a CONNECT with a forbidden character, so an
// answer with one would be retried forever; refused here, it is a "99999". The secrets too: the plain strategy sends
// the device secret as the password, and a lone surrogate has no UTF-8 form (it would silently become U+FFFD, and two
// secrets one). The result code is logged, and a C1 control (CSI) is a terminal escape. One rule for every field.
const MQTT_STRING_MESSAGE = 'contains control characters, lone surrogates or noncharacters'

const codePointLimits = new WeakMap<object, number>()
/** The limit of a maxCodePoints() action, for the JSON Schema export. */
export function codePointLimit(action: object): number | undefined {
  return codePointLimits.get(action)
}

function buildSchemas(v: typeof Valibot) {
  // No flags: a pattern must also be a JSON Schema `pattern`.
  const printable = v.regex(new RegExp(`^${mqttCharSource()}*$`), MQTT_STRING_MESSAGE)
  /**
   * At most `max` Unicode code points: what JSON Schema's maxLength counts (String.length counts UTF-16 units, so an
   * emoji would count twice). server/schema.ts publishes it as maxLength.
   */
  const maxCodePoints = (max: number) => {
    const action = v.check((value: string) => !longerThan(value, max), `is longer than ${max} characters`)
    codePointLimits.set(action, max)
    return action
  }
  const text = v.pipe(v.string(), maxCodePoints(MAX_FIELD_LENGTH), printable)
  const nonEmpty = v.pipe(v.string(), v.minLength(1), maxCodePoints(MAX_FIELD_LENGTH), printable)
  /**
   * A PEM chain: one or more CERTIFICATE blocks (base64 lines), nothing else. What is inside is the device's to check
   * (certificates/chain.ts: it parses, it is for the device's key, it is valid now); the schema keeps the text sane.
   */
  const certificate = v.pipe(
    v.string(),
    maxCodePoints(MAX_CERTIFICATE_LENGTH),
    v.regex(PEM_CHAIN_PATTERN, 'is not a PEM certificate chain'),
  )
  /** An RFC 3339 date-time with its offset; that the date is a real one (no 31 February) is checked after. */
  const expiresAt = v.pipe(v.string(), v.regex(EXPIRES_AT_PATTERN, 'is not an RFC 3339 date-time with an offset'))
  const identity = {
    productKey: nonEmpty,
    deviceName: nonEmpty,
    certificate: v.optional(certificate),
    expiresAt: v.optional(expiresAt),
  }

  /**
   * The triplet; a server may send a productSecret instead of the deviceSecret (dynamic registration), or a
   * certificate for the device's own key (the `certificate` option), not none of them.
   */
  const Device = v.union([
    v.object({ ...identity, deviceSecret: nonEmpty, productSecret: v.optional(v.nullable(text), null) }),
    v.object({ ...identity, deviceSecret: v.optional(text, ''), productSecret: nonEmpty }),
    v.object({
      ...identity,
      deviceSecret: v.optional(text, ''),
      productSecret: v.optional(v.nullable(text), null),
      certificate,
    }),
  ])
  const Connect = v.object({
    qos: v.optional(v.picklist([0, 1, 2]), 1),
    host: v.pipe(
      v.string(),
      maxCodePoints(MAX_HOST_LENGTH),
      v.regex(BROKER_HOST_PATTERN, 'is not an mqtt(s)/ws(s) URL or host[:port]'),
    ),
    cleanSession: v.optional(v.union([v.picklist([0, 1]), v.boolean()]), 1),
  })
  /** A result code: the server's own refusals are strings like this too. */
  const Code = v.pipe(v.string(), v.minLength(1), maxCodePoints(MAX_CODE_LENGTH), printable)
  return {
    Device,
    Connect,
    DeviceConfig: v.object({ device: Device, connect: Connect }),
    Code,
    Answer: v.object({ code: Code, result: v.optional(v.unknown()), message: v.optional(v.unknown()) }),
  }
}

/**
 * CERTIFICATE blocks, each of base64 lines (LF or CRLF), blank lines between them allowed. No flags, so that it is a
 * JSON Schema pattern too; linear to match (every repetition ends at a character its body cannot hold).
 */
const PEM_CHAIN_PATTERN =
  /^(?:-----BEGIN CERTIFICATE-----\r?\n(?:[A-Za-z0-9+/=]+\r?\n)+-----END CERTIFICATE-----(?:\r?\n)*)+$/

/**
 * RFC 3339's date-time (ISO 8601's profile for the Internet): `2026-12-02T10:00:00Z`, fractions of a second and an
 * offset (`+08:00`) allowed, no leap second (JavaScript's dates have none). A JSON Schema pattern as well.
 */
const EXPIRES_AT_PATTERN =
  /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/

/**
 * The time `expiresAt` (as the schema accepts it) names, in ms since the epoch; `undefined` for a date that does not
 * exist (30 February: Date.parse would roll it over into March).
 */
export function expiryTime(expiresAt: string): number | undefined {
  const [year, month, day] = expiresAt.slice(0, 10).split('-').map(Number) as [number, number, number]
  const date = new Date(Date.UTC(year, month - 1, day))
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined
  const time = Date.parse(expiresAt.toUpperCase())
  return Number.isFinite(time) ? time : undefined
}

let schemas: ReturnType<typeof buildSchemas> | undefined

/** The contract's valibot schemas (built, and valibot loaded, on first use). */
export function contractSchemas(): ReturnType<typeof buildSchemas> {
  schemas ??= buildSchemas(valibot())
  return schemas
}

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string }

/** A fresh copy of the original component's default `deviceConfig`. */
export function defaultDeviceConfig(): DeviceConfig {
  return withRedaction({
    device: { productKey: '', productSecret: null, deviceName: '', deviceSecret: '' },
    connect: { qos: 1, host: '', cleanSession: 1 },
  })
}

/** A problem is described by its first issue: valibot need not look for more. */
const FIRST_ISSUE = { abortEarly: true } as const

/** Validate and normalise a configuration (an answer's `result`, or a cached entry). */
export function parseDeviceConfig(value: unknown): Checked<DeviceConfig> {
  const parsed = valibot().safeParse(contractSchemas().DeviceConfig, value, FIRST_ISSUE)
  if (!parsed.success) return { ok: false, problem: describeIssue(parsed.issues[0]) }
  const { device, connect } = parsed.output
  if (device.expiresAt !== undefined && expiryTime(device.expiresAt) === undefined) {
    return { ok: false, problem: 'device.expiresAt is not a date that exists' }
  }
  return {
    ok: true,
    value: withRedaction({
      device: {
        productKey: device.productKey,
        deviceName: device.deviceName,
        deviceSecret: device.deviceSecret,
        productSecret: device.productSecret === '' ? null : (device.productSecret ?? null),
        ...(device.certificate === undefined ? {} : { certificate: device.certificate }),
        ...(device.expiresAt === undefined ? {} : { expiresAt: device.expiresAt }),
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
  const parsed = valibot().safeParse(contractSchemas().Answer, value, FIRST_ISSUE)
  if (!parsed.success) return { ok: false, problem: describeIssue(parsed.issues[0]) }
  return { ok: true, value: { code: parsed.output.code, result: parsed.output.result } }
}

const DEVICE_SECRET_KEYS = ['deviceSecret', 'productSecret'] as const

/** A deep copy whose `util.inspect` hides the secrets (see redact.ts). */
export function withRedaction(config: DeviceConfig): DeviceConfig {
  return {
    device: redactOnInspect({ ...config.device }, DEVICE_SECRET_KEYS),
    connect: { ...config.connect },
  }
}

const validated = new WeakSet<object>()

/**
 * A frozen copy of a configuration that parseDeviceConfig() accepted, recognised later by isValidatedConfig(), so
 * that a store holding such objects (MemoryCredentialStore) saves the cached boot a second validation.
 */
export function frozenValidated(config: DeviceConfig): DeviceConfig {
  const copy = withRedaction(config)
  Object.freeze(copy.device)
  Object.freeze(copy.connect)
  validated.add(Object.freeze(copy))
  return copy
}

export function isValidatedConfig(config: unknown): config is DeviceConfig {
  return validated.has(config as object) // false for a primitive: WeakSet.has does not throw
}

/** A valibot issue in words: where, and which rule. Never the value (it may be a secret). */
export function describeIssue(issue: Valibot.BaseIssue<unknown>, prefix?: string): string {
  const own = valibot().getDotPath(issue)
  const path = [prefix, own].filter((part) => part).join('.') || '(root)'
  // Only a union's issue has issues of its own (the two shapes of `device`, cleanSession's number or boolean): what
  // is wrong with its first option, the usual one. Their paths are relative to the union's.
  const first = issue.issues?.[0]
  if (first !== undefined) return describeIssue(first, path)
  // valibot's own messages quote the received value, which may be a secret: build ours from the schema alone (our
  // regex actions carry their own messages).
  switch (issue.type) {
    case 'regex':
    case 'check':
      return `${path} ${issue.message}`
    case 'min_length':
      return `${path} is empty`
    default:
      return `${path}: expected ${issue.expected}`
  }
}
