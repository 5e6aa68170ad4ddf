/**
 * The `certificate` option (DESIGN.md "Certificates"), resolved next to its checks: the device makes its own key pair,
 * sends a CSR with its data, and connects with the certificate the server issues for it (mutual TLS, auth `x509`).
 * What it must not be combined with is refused here, at the door, before any I/O.
 */
import { checkInteger, checkKnown, fail, isPlainObject, typeName } from '../option-checks.js'
import { MAX_RENEW_BEFORE_MS } from './schedule.js'

/** The device's key types. P-256: small, fast to make on a device, and what every MQTT cloud takes. */
export type KeyType = 'p256'

export interface CertificateOptions {
  /** The key pair the device makes on its first boot. @default 'p256' */
  keyType?: KeyType
  /** The top-level `renewBeforeMs`, for the certificate only (it wins over that one). @default `renewBeforeMs` */
  renewBeforeMs?: number
}

/** The resolved `certificate` option. */
export interface ResolvedCertificate {
  readonly keyType: KeyType
  /** `undefined`: the top-level `renewBeforeMs`, else a third of the lifetime. */
  readonly renewBeforeMs?: number
}

export const CERTIFICATE_DEFAULTS: ResolvedCertificate = Object.freeze({ keyType: 'p256' })

const CERTIFICATE_OPTIONS: ReadonlySet<string> = new Set(['keyType', 'renewBeforeMs'])
const KEY_TYPES: readonly string[] = ['p256']

/** The request field the CSR travels in. */
export const CSR_FIELD = 'csr'

/**
 * `certificate` checked against the options it depends on: `data` must be an object to carry the CSR (and must not
 * carry one already), and `mqtt.key`/`mqtt.cert`/`mqtt.pfx` belong to the certificate then. `undefined` (or `false`)
 * when not asked for.
 */
export function resolveCertificate(
  value: unknown,
  data: unknown,
  mqtt: { key?: unknown; cert?: unknown; pfx?: unknown } | undefined,
): ResolvedCertificate | undefined {
  if (value === undefined || value === false) return undefined
  let resolved: ResolvedCertificate = CERTIFICATE_DEFAULTS
  if (value !== true) {
    if (!isPlainObject(value))
      fail('certificate', "true or an object { keyType: 'p256', renewBeforeMs }", typeName(value))
    checkKnown(value, CERTIFICATE_OPTIONS, 'certificate.')
    const keyType = value.keyType ?? 'p256'
    if (typeof keyType !== 'string' || !KEY_TYPES.includes(keyType)) {
      fail('certificate.keyType', `one of ${KEY_TYPES.map((type) => `'${type}'`).join(', ')}`, typeName(keyType))
    }
    const renewBeforeMs =
      value.renewBeforeMs === undefined
        ? undefined
        : checkInteger(value.renewBeforeMs, 'certificate.renewBeforeMs', 0, MAX_RENEW_BEFORE_MS)
    resolved =
      keyType === CERTIFICATE_DEFAULTS.keyType && renewBeforeMs === undefined
        ? CERTIFICATE_DEFAULTS
        : Object.freeze({ keyType: keyType as KeyType, ...(renewBeforeMs === undefined ? {} : { renewBeforeMs }) })
  }
  if (!isPlainObject(data)) {
    fail('data', 'an object when `certificate` is set (the CSR is sent as its `csr` field)', typeName(data))
  }
  if (Object.hasOwn(data, CSR_FIELD)) {
    fail('data', 'an object without a `csr` field when `certificate` is set (the device adds its own CSR)')
  }
  const ws = (mqtt as { wsOptions?: Record<string, unknown> } | undefined)?.wsOptions
  for (const key of ['key', 'cert', 'pfx'] as const) {
    if (mqtt?.[key] !== undefined) {
      fail(`mqtt.${key}`, 'absent when `certificate` is set (the device uses its own key and certificate)')
    }
    if (typeof ws === 'object' && ws !== null && ws[key] !== undefined) {
      fail(`mqtt.wsOptions.${key}`, 'absent when `certificate` is set (the device uses its own key and certificate)')
    }
  }
  return resolved
}

/** `auth: 'x509'` without the `certificate` option connects with the caller's own client certificate. */
export function checkOwnClientCertificate(mqtt: { key?: unknown; cert?: unknown; pfx?: unknown } | undefined): void {
  if (mqtt?.pfx !== undefined) return
  if (mqtt?.key === undefined || mqtt?.cert === undefined) {
    fail('auth', "'x509' with a client certificate: set `certificate`, or give `mqtt.key` and `mqtt.cert`")
  }
}
