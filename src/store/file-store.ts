/**
 * Credentials in one JSON file, for devices that must boot while the provisioning server is down.
 *
 * Writes go through write-file-atomic (npm's own: temp file, fsync, chmod, rename), so a process killed mid-write
 * leaves the old file or the new one, never a torn one; the directory is fsynced after the rename so the rename
 * itself survives a power cut. The file is mode 0600 and versioned. A file that cannot be used is never a crash:
 * reads report it as a `CredentialStoreError` (a cache miss for the bootstrap); a corrupt or foreign file is moved
 * aside to `<path>.corrupt` before the next write, and a file from a newer version of this library is left as it is.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import writeFileAtomic from 'write-file-atomic'
import { type DeviceConfig, parseDeviceConfig } from '../contract.js'
import { CredentialStoreError } from '../errors.js'
import type { CredentialStore, StoredCredentials } from './credential-store.js'

export const FILE_FORMAT = 'mqtt-bootstrap/credentials'
export const FILE_VERSION = 1

interface FileContent {
  format: typeof FILE_FORMAT
  version: number
  entries: Record<string, { savedAt: number; config: DeviceConfig }>
}

export interface FileCredentialStoreOptions {
  /** File mode. @default 0o600 */
  mode?: number
}

type ReadResult =
  | { state: 'absent' }
  | { state: 'ok'; content: FileContent }
  | { state: 'unusable'; error: CredentialStoreError }

export class FileCredentialStore implements CredentialStore {
  readonly path: string
  readonly #mode: number
  #queue: Promise<unknown> = Promise.resolve()

  constructor(path: string, options: FileCredentialStoreOptions = {}) {
    if (typeof path !== 'string' || path === '') throw new TypeError('Expected `path` to be a non-empty string')
    this.path = path
    this.#mode = options.mode ?? 0o600
  }

  get(key: string): Promise<StoredCredentials | undefined> {
    return this.#serial(async () => {
      const file = await this.#read()
      if (file.state === 'absent') return undefined
      if (file.state === 'unusable') throw file.error
      const entry = file.content.entries[key]
      if (entry === undefined) return undefined
      const config = parseDeviceConfig(entry.config)
      if (!config.ok || typeof entry.savedAt !== 'number') {
        throw new CredentialStoreError('ERR_STORE_CORRUPT', `credential file entry is invalid: ${this.path}`)
      }
      return { config: config.value, savedAt: entry.savedAt }
    })
  }

  set(key: string, value: StoredCredentials): Promise<void> {
    return this.#serial(async () => {
      const content = await this.#writable()
      content.entries[key] = { savedAt: value.savedAt, config: value.config }
      await this.#write(content)
    })
  }

  delete(key: string): Promise<void> {
    return this.#serial(async () => {
      const file = await this.#read()
      if (file.state !== 'ok' || !Object.hasOwn(file.content.entries, key)) return
      delete file.content.entries[key]
      await this.#write(file.content)
    })
  }

  /** One operation at a time per store: a read-modify-write must not interleave with another. */
  #serial<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(operation, operation)
    this.#queue = result.catch(() => undefined)
    return result
  }

  async #read(): Promise<ReadResult> {
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'absent' }
      const error = new CredentialStoreError('ERR_STORE_IO', `cannot read credential file: ${this.path}`, { cause })
      return { state: 'unusable', error }
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      // No `cause`: V8's SyntaxError quotes the file's text, which holds secrets.
      return unusable('ERR_STORE_CORRUPT', `credential file is not JSON: ${this.path}`)
    }
    const content = json as Partial<FileContent> | null
    if (typeof content !== 'object' || content === null || content.format !== FILE_FORMAT) {
      return unusable('ERR_STORE_CORRUPT', `not an mqtt-bootstrap credential file: ${this.path}`)
    }
    if (typeof content.version !== 'number' || !Number.isInteger(content.version) || content.version < 1) {
      return unusable('ERR_STORE_CORRUPT', `credential file has no valid version: ${this.path}`)
    }
    if (content.version > FILE_VERSION) {
      return unusable(
        'ERR_STORE_VERSION',
        `credential file has format version ${content.version}, newer than ${FILE_VERSION}: ${this.path}`,
      )
    }
    if (typeof content.entries !== 'object' || content.entries === null || Array.isArray(content.entries)) {
      return unusable('ERR_STORE_CORRUPT', `credential file has no entries: ${this.path}`)
    }
    return { state: 'ok', content: content as FileContent }
  }

  /** The content to add to: the file's, or a fresh one after moving an unusable file aside. */
  async #writable(): Promise<FileContent> {
    const file = await this.#read()
    if (file.state === 'ok') return file.content
    if (file.state === 'unusable') {
      if (file.error.code !== 'ERR_STORE_CORRUPT') throw file.error
      await rename(this.path, `${this.path}.corrupt`).catch((cause: unknown) => {
        throw new CredentialStoreError('ERR_STORE_IO', `cannot move corrupt credential file aside: ${this.path}`, {
          cause,
        })
      })
    }
    return { format: FILE_FORMAT, version: FILE_VERSION, entries: Object.create(null) }
  }

  async #write(content: FileContent): Promise<void> {
    const dir = dirname(this.path)
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      await writeFileAtomic(this.path, `${JSON.stringify(content, null, 2)}\n`, { mode: this.#mode, fsync: true })
      await fsyncDirectory(dir)
    } catch (cause) {
      throw new CredentialStoreError('ERR_STORE_IO', `cannot write credential file: ${this.path}`, { cause })
    }
  }
}

function unusable(code: 'ERR_STORE_CORRUPT' | 'ERR_STORE_VERSION', message: string): ReadResult {
  return { state: 'unusable', error: new CredentialStoreError(code, message) }
}

/** Make a rename durable. Some platforms cannot open a directory for fsync; the rename is still atomic there. */
async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined)
  if (handle === undefined) return
  try {
    await handle.sync().catch(() => undefined)
  } finally {
    await handle.close()
  }
}
