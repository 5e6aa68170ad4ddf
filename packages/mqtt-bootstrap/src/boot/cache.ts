/**
 * The cache phase: read the configuration cached for this bootstrap's (url, data), write it once it has proven
 * itself, forget it on request. A store that fails is never fatal here: a read is a miss, a write a non-fatal error.
 */

import { heldKey } from '../certificates/held-keys.js'
import { lifetimeOf, noteLifetime } from '../certificates/schedule.js'
import { type DeviceConfig, frozenValidated, isValidatedConfig, parseDeviceConfig } from '../contract.js'
import { CredentialStoreError } from '../errors.js'
import type { CacheEvent } from '../events.js'
import { type StoredCredentials, storedEntry } from '../store/credential-store.js'
import { usableCertificate } from './certificate.js'
import type { BootContext } from './context.js'

const MISS_REASONS = {
  ERR_STORE_CORRUPT: 'corrupt',
  ERR_STORE_VERSION: 'version',
  ERR_STORE_KEY: 'key',
  ERR_STORE_IO: 'io',
  ERR_STORE_PERMISSIONS: 'io', // never thrown by a read: reported on its own (a non-fatal error event)
} as const

/** The cached configuration, or `undefined` (a miss, reported with its reason). */
export async function readCache(context: BootContext): Promise<DeviceConfig | undefined> {
  const key = context.options.cacheKey
  // Beside the read, not before it: a cached boot pays for one stat, not one round trip more.
  const audit = context.memory.audited ? undefined : auditStore(context)
  let event: CacheEvent
  let config: DeviceConfig | undefined
  try {
    config = await readEntry(context)
    event = config === undefined ? { action: 'miss', key, reason: 'absent' } : { action: 'hit', key }
  } catch (cause) {
    if (cause === NO_USABLE_CERTIFICATE || cause === EXPIRED) {
      config = undefined
      event = { action: 'miss', key, reason: cause === EXPIRED ? 'expired' : 'certificate' }
    } else {
      const error = storeError(cause, 'cannot read the credential cache')
      event = { action: 'miss', key, reason: MISS_REASONS[error.code], error }
    }
  }
  await audit
  context.report.cache(event)
  return config
}

/**
 * What readEntry() throws for an entry a device with the `certificate` option cannot use (usableCertificate()): a miss
 * of its own, not a store failure. Never leaves this module but through replace(), which takes any throw for "none".
 */
const NO_USABLE_CERTIFICATE = Symbol('no usable certificate')

/** What readEntry() throws for a deviceSecret past its `expiresAt`: a miss of its own, as NO_USABLE_CERTIFICATE. */
const EXPIRED = Symbol('expired')

/**
 * The entry's configuration, when this bootstrap can use it (with `certificate`: its key, a valid certificate; a
 * secret before its `expiresAt`), its lifetime noted from when it was stored.
 */
function usable(context: BootContext, entry: StoredCredentials, config: DeviceConfig): DeviceConfig {
  const now = context.seams.clock.now()
  // A store of one's own may keep any savedAt: one that is not a time, or one ahead of the clock, counts as now.
  const receivedAt = Number.isFinite(entry.savedAt) ? Math.min(entry.savedAt, now) : now
  if (context.options.certificate !== undefined) {
    if (usableCertificate(entry, config, now, receivedAt)) return config
    throw NO_USABLE_CERTIFICATE
  }
  noteLifetime(config, receivedAt)
  const lifetime = lifetimeOf(config)
  if (lifetime !== undefined && lifetime.expiresAt <= now) throw EXPIRED
  return config
}

/** What the store's audit finds (e.g. a directory open to others): non-fatal errors. A failing audit is silent. */
async function auditStore(context: BootContext): Promise<void> {
  context.memory.audited = true
  const findings = await Promise.resolve()
    .then(() => context.seams.store.audit?.())
    .catch(() => undefined)
  for (const error of findings ?? []) context.report.nonFatal(error)
}

/**
 * The cached configuration, checked like an answer from the server (any store may be registered, and a file can
 * be edited by hand). An invalid entry is deleted, best effort, and reported as ERR_STORE_CORRUPT.
 */
export async function readEntry(context: BootContext): Promise<DeviceConfig | undefined> {
  const { store } = context.seams
  const key = context.options.cacheKey
  const entry = await store.get(key)
  if (entry === undefined) return undefined
  if (isValidatedConfig(entry.config)) return usable(context, entry, entry.config) // made by parseDeviceConfig, frozen since
  const parsed = parseDeviceConfig(entry?.config)
  if (parsed.ok) return usable(context, entry, parsed.value)
  await store.delete(key).catch(() => undefined)
  throw new CredentialStoreError('ERR_STORE_CORRUPT', `cached credentials are invalid: ${parsed.problem}`)
}

/**
 * Cache credentials from the server: connect() once the broker has accepted them (the last good credentials stay
 * cached until then); provision() and connectOptions(), which cannot know, at once. Never rejects: a cache that
 * cannot be written is a non-fatal error event, the device works on without it.
 */
export async function persist(context: BootContext, config: DeviceConfig): Promise<void> {
  if (context.memory.stored === config) return // a registered secret, stored before the connect
  const key = context.options.cacheKey
  try {
    const savedAt = context.seams.clock.now()
    // The private key with its certificate, in one entry: a store writes them in one step or not at all.
    const privateKey = heldKey(config)?.toString()
    await context.seams.store.set(key, storedEntry(withoutProductSecret(config), savedAt, privateKey))
    context.report.cache({ action: 'write', key })
  } catch (cause) {
    context.report.nonFatal(storeError(cause, 'cannot write the credential cache'))
  }
}

/** Forget the cached credentials (`invalidate()`); a store that cannot is the caller's error. */
export async function invalidate(context: BootContext): Promise<void> {
  const key = context.options.cacheKey
  try {
    await context.seams.store.delete(key)
  } catch (cause) {
    throw storeError(cause, 'cannot invalidate the credential cache')
  }
  context.report.cache({ action: 'invalidate', key, reason: 'requested' })
}

export function storeError(cause: unknown, message: string): CredentialStoreError {
  return cause instanceof CredentialStoreError ? cause : new CredentialStoreError('ERR_STORE_IO', message, { cause })
}

/** The product secret is not needed once the device has its own secret, and is not kept on disk. */
function withoutProductSecret(config: DeviceConfig): DeviceConfig {
  const { productSecret, deviceSecret, certificate } = config.device
  // Kept only while it is still needed: a registration (no device secret yet, and no certificate either).
  if (productSecret === null || (deviceSecret === '' && certificate === undefined)) return config
  return frozenValidated({ ...config, device: { ...config.device, productSecret: null } })
}
