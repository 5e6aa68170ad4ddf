/**
 * The credential cache seam. Entries are keyed by {@link credentialKey} of (provisioning URL, request data), so a
 * device that identifies itself differently never reuses another identity's credentials.
 */
import type { DeviceConfig } from '../contract.js'
import type { CredentialStoreError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import type { Logger } from '../logger.js'
import { redactOnInspect } from '../redact.js'

export interface StoredCredentials {
  config: DeviceConfig
  /** When the configuration was received from the server (ms since the epoch). */
  savedAt: number
  /**
   * Secret: the device's private key (PKCS#8 PEM) for `config.device.certificate`, when the device made one (the
   * `certificate` option). A store keeps it with the entry, written in the same atomic step, never apart from it.
   */
  privateKey?: string
}

const PRIVATE_KEY = ['privateKey'] as const

/**
 * An entry as a store hands it out: the private key, if any, shown by util.inspect as `[redacted]` (it stays in JSON:
 * a store of one's own persists entries so, as it does the device secret).
 */
export function storedEntry(config: DeviceConfig, savedAt: number, privateKey: string | undefined): StoredCredentials {
  if (privateKey === undefined) return { config, savedAt }
  return redactOnInspect({ config, savedAt, privateKey }, PRIVATE_KEY)
}

export interface CredentialStore {
  /**
   * The entry for `key`, or `undefined` when there is none. A store that finds its data unusable throws a
   * `CredentialStoreError`; the bootstrap counts that as a miss and reports it in a `cache` event.
   */
  get(key: string): Promise<StoredCredentials | undefined>
  /** Save the entry. Must not leave a partly written entry behind if the process dies meanwhile. */
  set(key: string, value: StoredCredentials): Promise<void>
  /** Remove the entry; no error when there is none. */
  delete(key: string): Promise<void>
  /**
   * Optional: whether entries outlive the process. `false` (a MemoryCredentialStore) warns before a dynamic
   * registration, whose secret is issued once and would be lost with the process; absent counts as persistent.
   */
  readonly persistent?: boolean
  /**
   * Optional: problems that do not stop the store but deserve a warning (e.g. `ERR_STORE_PERMISSIONS`: its directory
   * is open to other users). The bootstrap calls it once, on its first cache read, and reports each as a non-fatal
   * `error` event and a log line. Should be cheap (it is on the cached boot's path) and never throw.
   */
  audit?(): Promise<CredentialStoreError[]>
  /**
   * Optional: the bootstrap's `logger`, handed over when the bootstrap is made, for what the store logs itself (a
   * FileCredentialStore's waits for its lock). A store made with a logger of its own keeps it; so does one already
   * handed another bootstrap's.
   */
  useLogger?(logger: Logger): void
}

/**
 * SHA-256 of the URL and the canonical JSON of `data` (object keys sorted), so `{a, b}` and `{b, a}` share an entry.
 * Headers are left out on purpose: they carry tokens that rotate, not the device's identity.
 */
export function credentialKey(url: string, data: unknown): string {
  return keyOf(new URL(url).href, data)
}

/** credentialKey() for a URL that is already an href (as resolved options hold it). */
export function keyOf(href: string, data: unknown): string {
  const material = `${href}\n${canonicalJson(data)}`
  let key = recentKeys.get(material)
  if (key === undefined) {
    key = nodeCrypto().createHash('sha256').update(material).digest('hex')
    if (recentKeys.size >= 64) recentKeys.clear()
    recentKeys.set(material, key)
  }
  return key
}

/** A pure function's memo: a process that boots again (or many devices in a bench) hashes each identity once. */
const recentKeys = new Map<string, string>()

function canonicalJson(value: unknown): string {
  if (isFlatAndOrdered(value)) return JSON.stringify(value) // the same text, without a replacer call per value
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v
    const keys = Object.keys(v)
    if (keys.every((key, i) => i === 0 || (keys[i - 1] as string) < key)) return v // already in order (the usual case)
    return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  })
}

/** A primitive, or a plain object of primitives whose keys are in order (the usual `{ imei }`). */
function isFlatAndOrdered(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return typeof value !== 'bigint'
  const prototype = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) return false
  let previous: string | undefined
  for (const key in value) {
    const v = (value as Record<string, unknown>)[key]
    if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return false
    if (previous !== undefined && !(previous < key)) return false
    previous = key
  }
  return true
}
