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
import type { CredentialStore, StoredCredentials } from './credential-store.js'
import { auditDirectory } from './directory-audit.js'
import {
  digest,
  type Entries,
  FILE_FORMAT,
  FILE_VERSION,
  type FileContent,
  isObject,
  plain,
  type ReadResult,
  unusable,
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

// Builtins come through process.getBuiltinModule rather than `import` (why: lazy.ts).
const { readFileSync } = process.getBuiltinModule('node:fs')
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
      const file = await this.#read()
      if (file.state === 'absent') return undefined
      if (file.state === 'unusable') throw file.error
      if (!Object.hasOwn(file.entries, key)) return undefined
      const entry: unknown = file.entries[key]
      const { config, savedAt } = isObject(entry) ? entry : {}
      const parsed = parseDeviceConfig(config)
      if (!parsed.ok || typeof savedAt !== 'number') {
        throw new CredentialStoreError('ERR_STORE_CORRUPT', `credential file entry is invalid: ${this.path}`)
      }
      // Checked here once: frozen and known valid, the bootstrap does not check it again.
      return { config: frozenValidated(parsed.value), savedAt }
    })
  }

  set(key: string, value: StoredCredentials): Promise<void> {
    return this.#mutate((entries) => {
      entries[key] = { savedAt: value.savedAt, config: plain(value.config) }
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
    let text: string
    try {
      // Synchronous on purpose: the file is a few kilobytes, read once at boot; an async read costs four round trips
      // through libuv's thread pool (open, stat, read, close), more than the read itself (docs/performance.md).
      text = readFileSync(this.path, 'utf8')
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'absent' }
      return unusable('ERR_STORE_IO', `cannot read credential file: ${this.path}`, cause)
    }
    let content: Partial<FileContent> | null
    try {
      content = JSON.parse(text) as Partial<FileContent> | null
    } catch {
      // No `cause`: V8's SyntaxError quotes the file's text, which holds secrets.
      return unusable('ERR_STORE_CORRUPT', `credential file is not JSON: ${this.path}`)
    }
    // Any JSON value but an object (null, a number, a string, an array) has no `format`.
    if (content?.format !== FILE_FORMAT) {
      return unusable('ERR_STORE_CORRUPT', `not an mqtt-bootstrap credential file: ${this.path}`)
    }
    const version = content.version as number // whatever JSON holds: isInteger() checks it (false for non-numbers)
    if (!Number.isInteger(version) || version < 1) {
      return unusable('ERR_STORE_CORRUPT', `credential file has no valid version: ${this.path}`)
    }
    if (version > FILE_VERSION) {
      const message = `credential file has format version ${version}, newer than ${FILE_VERSION}: ${this.path}`
      return unusable('ERR_STORE_VERSION', message)
    }
    if (content.sealed !== undefined) {
      const { sealed } = content
      // Malformed is corrupt (moved aside at the next write), not a wrong key (kept): no key can open it.
      if (!isObject(sealed) || [sealed.iv, sealed.tag, sealed.data].some((part) => typeof part !== 'string')) {
        return unusable('ERR_STORE_CORRUPT', `credential file has a malformed sealed part: ${this.path}`)
      }
      return this.#unseal(sealed as NonNullable<FileContent['sealed']>)
    }
    if (this.#key !== undefined) {
      // Anyone who can write the file can forge a checksum, not a GCM tag: with a key, only sealed files count. A
      // plain file is set aside at the next write (to <path>.corrupt), like any file that cannot be trusted.
      return unusable('ERR_STORE_CORRUPT', `credential file is not sealed, but an encryptionKey is set: ${this.path}`)
    }
    const { entries, checksum } = content
    if (!isObject(entries)) {
      return unusable('ERR_STORE_CORRUPT', `credential file has no entries: ${this.path}`)
    }
    if (checksum !== digest(entries)) {
      return unusable('ERR_STORE_CORRUPT', `credential file fails its integrity check: ${this.path}`)
    }
    return { state: 'ok', entries }
  }

  #unseal(sealed: NonNullable<FileContent['sealed']>): ReadResult {
    if (this.#key === undefined) {
      return unusable('ERR_STORE_KEY', `credential file is encrypted and no encryptionKey was given: ${this.path}`)
    }
    let plaintext: string
    try {
      const decipher = nodeCrypto().createDecipheriv('aes-256-gcm', this.#key, Buffer.from(sealed.iv, 'base64'))
      decipher.setAAD(Buffer.from(`${FILE_FORMAT}/${FILE_VERSION}`))
      decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'))
      plaintext = Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]).toString(
        'utf8',
      )
    } catch {
      // GCM cannot tell a wrong key from altered data: both fail the tag.
      return unusable('ERR_STORE_KEY', `cannot decrypt the credential file (wrong key, or altered): ${this.path}`)
    }
    let entries: unknown
    try {
      entries = JSON.parse(plaintext)
    } catch {
      // The tag held, so this key sealed it: broken content, not another key's data (moved aside, not kept).
      return unusable('ERR_STORE_CORRUPT', `credential file has sealed entries that are not JSON: ${this.path}`)
    }
    if (!isObject(entries)) {
      return unusable('ERR_STORE_CORRUPT', `credential file has no entries: ${this.path}`)
    }
    return { state: 'ok', entries: entries as Entries }
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
