import { frozenValidated, isValidatedConfig, parseDeviceConfig } from '../contract.js'
import { type CredentialStore, type StoredCredentials, storedEntry } from './credential-store.js'

/**
 * Keeps credentials for the life of the process (the default: a new one per bootstrap). Share one to reuse it.
 * Entries are checked when set and kept frozen, so a read hands out the same immutable object, already known valid.
 */
export class MemoryCredentialStore implements CredentialStore {
  /** Entries are lost when the process ends. */
  readonly persistent = false
  readonly #entries = new Map<string, StoredCredentials>()

  async get(key: string): Promise<StoredCredentials | undefined> {
    return this.#entries.get(key)
  }

  async set(key: string, value: StoredCredentials): Promise<void> {
    let config = value.config
    if (!isValidatedConfig(config)) {
      const parsed = parseDeviceConfig(config)
      // A bad entry is kept as it is: the bootstrap finds it on reading, reports a corrupt miss and deletes it.
      if (parsed.ok) config = frozenValidated(parsed.value)
    }
    this.#entries.set(key, Object.freeze(storedEntry(config, value.savedAt, value.privateKey)))
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key)
  }

  /** Number of entries (for tests and diagnostics). */
  get size(): number {
    return this.#entries.size
  }
}
