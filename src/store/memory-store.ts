import { withRedaction } from '../contract.js'
import type { CredentialStore, StoredCredentials } from './credential-store.js'

/** Keeps credentials for the life of the process (the default: a new one per bootstrap). Share one to reuse it. */
export class MemoryCredentialStore implements CredentialStore {
  readonly #entries = new Map<string, StoredCredentials>()

  async get(key: string): Promise<StoredCredentials | undefined> {
    const entry = this.#entries.get(key)
    return entry === undefined ? undefined : copy(entry)
  }

  async set(key: string, value: StoredCredentials): Promise<void> {
    this.#entries.set(key, copy(value))
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key)
  }

  /** Number of entries (for tests and diagnostics). */
  get size(): number {
    return this.#entries.size
  }
}

function copy(entry: StoredCredentials): StoredCredentials {
  return { config: withRedaction(entry.config), savedAt: entry.savedAt }
}
