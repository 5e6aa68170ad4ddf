/**
 * Credentials in one JSON file, for devices that must boot while the provisioning server is down.
 *
 * - Atomic: a temp file, every byte written, fsynced, its size checked, renamed over the file, the directory fsynced
 *   (atomic-file.ts): a process killed, a power cut or a full disk mid-write leaves the old file or the new one, and
 *   a failed write rejects with ERR_STORE_IO. Temp files left by killed writers are removed by the next write.
 * - Private: mode 0600, directory 0700 when the store creates it; a directory open to other users is reported by
 *   `audit()` (never changed: the store did not make it).
 * - Checked: the entries carry a SHA-256 checksum (against accidents: bit rot, a bad edit); with `encryptionKey`
 *   they are sealed with AES-256-GCM instead, whose tag proves them intact against anyone without the key, and an
 *   unsealed file is then refused. A wrong key is an error and a cache miss, never garbage credentials.
 * - Shared safely: read-modify-write runs under a lock (file-lock.ts), so two processes sharing the file never lose
 *   each other's entries; a lock left by a killed process is taken over after `lockStaleMs`, even with its mtime in
 *   the future (a clock stepped back), and no write waits longer than `lockStaleMs` + 0.5 s.
 * - Never a crash: an unusable file is a `CredentialStoreError` (the bootstrap counts it as a miss). A corrupt or
 *   foreign file is moved aside to `<path>.corrupt` before the next write; a file from a newer version of this
 *   library, or sealed with another key, is left as it is.
 */
import { frozenValidated, parseDeviceConfig } from '../contract.js'
import { CredentialStoreError } from '../errors.js'
import { nodeCrypto } from '../lazy.js'
import { isLogger, type Logger, logFor, silentLogger } from '../logger.js'
import { removeTempFiles, replaceFile } from './atomic-file.js'
import { type CredentialStore, type StoredCredentials, storedEntry } from './credential-store.js'
import { auditDirectory } from './directory-audit.js'
import {
  digest,
  type Entries,
  FILE_FORMAT,
  FILE_VERSION,
  type FileContent,
  isObject,
  parseFile,
  plain,
  provenEntry,
  type ReadResult,
  readText,
  rememberEntry,
} from './file-format.js'
import { lockFile } from './file-lock.js'

export { FILE_FORMAT, FILE_VERSION } from './file-format.js'

export interface FileCredentialStoreOptions {
  /** File mode. @default 0o600 */
  mode?: number
  /** 32 bytes: seal the entries with AES-256-GCM. Keep the key out of the file's directory. @default none */
  encryptionKey?: Buffer | Uint8Array
  /**
   * A lock older than this (ms), or unchanged for this long, is considered left by a dead process and taken over; a
   * write waits at most this + 500 ms for the lock. @default 10000
   */
  lockStaleMs?: number
  /**
   * Where a wait for the lock is logged (longer than 1 s: at info). @default the `logger` of the first bootstrap it
   * is given to, silent until then
   */
  logger?: Logger
}

/** A private key as an entry holds it: absent, or PEM text of a sane size (the device made it). */
function isPrivateKeyField(value: unknown): value is string | undefined {
  return (
    value === undefined || (typeof value === 'string' && value.length <= 16 * 1024 && value.startsWith('-----BEGIN'))
  )
}

// Builtins come through process.getBuiltinModule rather than `import` (why: lazy.ts).
const { mkdir, rename } = process.getBuiltinModule('node:fs/promises')
const { dirname } = process.getBuiltinModule('node:path')

export class FileCredentialStore implements CredentialStore {
  readonly persistent = true
  readonly path: string
  readonly #mode: number
  readonly #key: Buffer | undefined
  readonly #lockStaleMs: number
  #log: Logger
  /** Whether #log came from the options or a bootstrap already (useLogger then leaves it). */
  #logged: boolean
  #queue: Promise<unknown> = Promise.resolve()

  constructor(path: string, options: FileCredentialStoreOptions = {}) {
    if (typeof path !== 'string' || path === '') throw new TypeError('Expected `path` to be a non-empty string')
    const key = options.encryptionKey
    if (key !== undefined && (!(key instanceof Uint8Array) || key.length !== 32)) {
      throw new TypeError('Expected `encryptionKey` to be 32 bytes (AES-256)')
    }
    this.path = path
    this.#mode = options.mode ?? 0o600
    this.#key = key === undefined ? undefined : Buffer.from(key)
    const stale = options.lockStaleMs ?? 10_000
    if (!Number.isFinite(stale) || stale <= 0) {
      throw new TypeError('Expected `lockStaleMs` to be a positive number of milliseconds')
    }
    this.#lockStaleMs = stale
    const { logger = silentLogger } = options
    if (!isLogger(logger)) throw new TypeError('Expected `logger` to be a Logger (debug, info, warn, error)')
    this.#log = logFor(logger, 'store')
    this.#logged = options.logger !== undefined
  }

  /** The bootstrap's logger, unless this store has one already (CredentialStore.useLogger). */
  useLogger(logger: Logger): void {
    if (this.#logged || !isLogger(logger)) return
    this.#log = logFor(logger, 'store')
    this.#logged = true
  }

  /** The store's directory, if group or others can list or change it (see directory-audit.ts). One stat. */
  async audit(): Promise<CredentialStoreError[]> {
    return auditDirectory(dirname(this.path))
  }

  get(key: string): Promise<StoredCredentials | undefined> {
    return this.#serial(async () => {
      const text = readText(this.path)
      if (typeof text !== 'string') {
        if (text.state === 'absent') return undefined
        throw (text as Extract<ReadResult, { state: 'unusable' }>).error
      }
      const known = this.#key === undefined ? provenEntry(this.path, text, key) : undefined
      if (known !== undefined) return storedEntry(known.config, known.savedAt, known.privateKey)
      const file = parseFile(text, this.#key, this.path)
      if (file.state === 'absent') return undefined
      if (file.state === 'unusable') throw file.error
      if (!Object.hasOwn(file.entries, key)) return undefined
      const entry: unknown = file.entries[key]
      const { config, savedAt, privateKey } = isObject(entry) ? entry : {}
      const parsed = parseDeviceConfig(config)
      if (!parsed.ok || typeof savedAt !== 'number' || !isPrivateKeyField(privateKey)) {
        throw new CredentialStoreError('ERR_STORE_CORRUPT', `credential file entry is invalid: ${this.path}`)
      }
      // Checked here once: frozen and known valid, the bootstrap does not check it again.
      const stored = {
        config: frozenValidated(parsed.value),
        savedAt,
        ...(privateKey === undefined ? {} : { privateKey }),
      }
      if (this.#key === undefined) rememberEntry(this.path, text, key, stored)
      return storedEntry(stored.config, savedAt, privateKey)
    })
  }

  set(key: string, value: StoredCredentials): Promise<void> {
    return this.#mutate((entries) => {
      const { savedAt, privateKey } = value
      // The key in the same entry, so in the same atomic write: never a certificate without its key, nor the reverse.
      entries[key] = { savedAt, config: plain(value.config), ...(privateKey === undefined ? {} : { privateKey }) }
      return true
    })
  }

  delete(key: string): Promise<void> {
    return this.#mutate((entries) => Object.hasOwn(entries, key) && delete entries[key])
  }

  /** Read, change and write the entries under the in-process queue and the cross-process lock. */
  #mutate(change: (entries: Entries) => boolean): Promise<void> {
    return this.#serial(async () => {
      const dir = dirname(this.path)
      await mkdir(dir, { recursive: true, mode: 0o700 }).catch((cause: unknown) => {
        throw new CredentialStoreError('ERR_STORE_IO', `cannot create the directory of ${this.path}`, { cause })
      })
      const release = await lockFile(this.path, this.#lockStaleMs, this.#log).catch((cause: unknown) => {
        throw new CredentialStoreError('ERR_STORE_IO', `cannot lock the credential file: ${this.path}`, { cause })
      })
      try {
        await removeTempFiles(this.path)
        const entries = await this.#writable()
        const changed = change(entries)
        if (changed) await this.#write(entries)
        const fields = { path: this.path, encrypted: this.#key !== undefined }
        this.#log.debug(fields, changed ? 'file written' : 'file unchanged')
      } finally {
        await release().catch(() => undefined)
      }
    })
  }

  /** One operation at a time per store: a read-modify-write must not interleave with another. */
  #serial<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(operation, operation)
    this.#queue = result.catch(() => undefined)
    return result
  }

  async #read(): Promise<ReadResult> {
    const text = readText(this.path)
    return typeof text === 'string' ? parseFile(text, this.#key, this.path) : text
  }

  /** The entries to change: the file's, or none after moving an unusable file aside. */
  async #writable(): Promise<Entries> {
    const file = await this.#read()
    if (file.state === 'ok') return file.entries
    if (file.state === 'unusable') {
      // Newer versions and other keys hold data someone may need: never overwrite them.
      if (file.error.code !== 'ERR_STORE_CORRUPT') throw file.error
      await rename(this.path, `${this.path}.corrupt`).catch((cause: unknown) => {
        throw new CredentialStoreError('ERR_STORE_IO', `cannot move corrupt credential file aside: ${this.path}`, {
          cause,
        })
      })
    }
    return {}
  }

  async #write(entries: Entries): Promise<void> {
    const content: FileContent = { format: FILE_FORMAT, version: FILE_VERSION }
    if (this.#key === undefined) {
      content.checksum = digest(entries)
      content.entries = entries
    } else {
      const { randomBytes, createCipheriv } = nodeCrypto()
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', this.#key, iv)
      cipher.setAAD(Buffer.from(`${FILE_FORMAT}/${FILE_VERSION}`))
      const data = Buffer.concat([cipher.update(JSON.stringify(entries), 'utf8'), cipher.final()])
      const tag = cipher.getAuthTag()
      content.sealed = {
        alg: 'aes-256-gcm',
        iv: iv.toString('base64'),
        tag: tag.toString('base64'),
        data: data.toString('base64'),
      }
    }
    try {
      await replaceFile(this.path, Buffer.from(`${JSON.stringify(content, null, 2)}\n`), this.#mode)
    } catch (cause) {
      throw new CredentialStoreError('ERR_STORE_IO', `cannot write credential file: ${this.path}`, { cause })
    }
  }
}
