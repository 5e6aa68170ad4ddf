/** The credential file's format (file-store.ts): its content, how a read turns out, its integrity digest. */
import type { DeviceConfig } from '../contract.js'
import { CredentialStoreError, type CredentialStoreErrorCode } from '../errors.js'
import { nodeCrypto } from '../lazy.js'

export const FILE_FORMAT = 'mqtt-bootstrap/credentials'
export const FILE_VERSION = 1

export type Entries = Record<string, { savedAt: number; config: DeviceConfig; privateKey?: string }>

/** The file: plain entries with their checksum, or the entries sealed with AES-256-GCM. */
export interface FileContent {
  format: typeof FILE_FORMAT
  version: number
  checksum?: string
  entries?: Entries
  sealed?: { alg: 'aes-256-gcm'; iv: string; tag: string; data: string }
}

export type ReadResult =
  | { state: 'absent' }
  | { state: 'ok'; entries: Entries }
  | { state: 'unusable'; error: CredentialStoreError }

/** SHA-256 of the entries as JSON: the integrity check of a plain file. */
export function digest(entries: object): string {
  return `sha256:${nodeCrypto().createHash('sha256').update(JSON.stringify(entries)).digest('hex')}`
}

/** The configuration without the inspect hook (it is data to store, not an object to print). */
export function plain({ device, connect }: DeviceConfig): DeviceConfig {
  return { device: { ...device }, connect: { ...connect } }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function unusable(code: CredentialStoreErrorCode, message: string, cause?: unknown): ReadResult {
  return { state: 'unusable', error: new CredentialStoreError(code, message, { cause }) }
}

const { readFileSync } = process.getBuiltinModule('node:fs') // why not `import`: lazy.ts

/** The file's text, or why there is none to read. */
export function readText(path: string): string | ReadResult {
  try {
    // Synchronous on purpose: the file is a few kilobytes, read once at boot; an async read costs four round trips
    // through libuv's thread pool (open, stat, read, close), more than the read itself (docs/performance.md).
    return readFileSync(path, 'utf8')
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'absent' }
    return unusable('ERR_STORE_IO', `cannot read credential file: ${path}`, cause)
  }
}

/**
 * What a file's text holds, checked: its format and version, then its checksum, or its seal with `key` (`path` is
 * for messages).
 */
export function parseFile(text: string, key: Buffer | undefined, path: string): ReadResult {
  let content: Partial<FileContent> | null
  try {
    content = JSON.parse(text) as Partial<FileContent> | null
  } catch {
    // No `cause`: V8's SyntaxError quotes the file's text, which holds secrets.
    return unusable('ERR_STORE_CORRUPT', `credential file is not JSON: ${path}`)
  }
  // Any JSON value but an object (null, a number, a string, an array) has no `format`.
  if (content?.format !== FILE_FORMAT) {
    return unusable('ERR_STORE_CORRUPT', `not an mqtt-bootstrap credential file: ${path}`)
  }
  const version = content.version as number // whatever JSON holds: isInteger() checks it (false for non-numbers)
  if (!Number.isInteger(version) || version < 1) {
    return unusable('ERR_STORE_CORRUPT', `credential file has no valid version: ${path}`)
  }
  if (version > FILE_VERSION) {
    const message = `credential file has format version ${version}, newer than ${FILE_VERSION}: ${path}`
    return unusable('ERR_STORE_VERSION', message)
  }
  if (content.sealed !== undefined) {
    const { sealed } = content
    // Malformed is corrupt (moved aside at the next write), not a wrong key (kept): no key can open it.
    if (!isObject(sealed) || [sealed.iv, sealed.tag, sealed.data].some((part) => typeof part !== 'string')) {
      return unusable('ERR_STORE_CORRUPT', `credential file has a malformed sealed part: ${path}`)
    }
    return unseal(sealed as NonNullable<FileContent['sealed']>, key, path)
  }
  if (key !== undefined) {
    // Anyone who can write the file can forge a checksum, not a GCM tag: with a key, only sealed files count. A
    // plain file is set aside at the next write (to <path>.corrupt), like any file that cannot be trusted.
    return unusable('ERR_STORE_CORRUPT', `credential file is not sealed, but an encryptionKey is set: ${path}`)
  }
  const { entries, checksum } = content
  if (!isObject(entries)) {
    return unusable('ERR_STORE_CORRUPT', `credential file has no entries: ${path}`)
  }
  if (checksum !== digest(entries)) {
    return unusable('ERR_STORE_CORRUPT', `credential file fails its integrity check: ${path}`)
  }
  return { state: 'ok', entries }
}

function unseal(sealed: NonNullable<FileContent['sealed']>, key: Buffer | undefined, path: string): ReadResult {
  if (key === undefined) {
    return unusable('ERR_STORE_KEY', `credential file is encrypted and no encryptionKey was given: ${path}`)
  }
  let plaintext: string
  try {
    const decipher = nodeCrypto().createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'))
    decipher.setAAD(Buffer.from(`${FILE_FORMAT}/${FILE_VERSION}`))
    decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'))
    plaintext = Buffer.concat([decipher.update(Buffer.from(sealed.data, 'base64')), decipher.final()]).toString('utf8')
  } catch {
    // GCM cannot tell a wrong key from altered data: both fail the tag.
    return unusable('ERR_STORE_KEY', `cannot decrypt the credential file (wrong key, or altered): ${path}`)
  }
  let entries: unknown
  try {
    entries = JSON.parse(plaintext)
  } catch {
    // The tag held, so this key sealed it: broken content, not another key's data (moved aside, not kept).
    return unusable('ERR_STORE_CORRUPT', `credential file has sealed entries that are not JSON: ${path}`)
  }
  if (!isObject(entries)) {
    return unusable('ERR_STORE_CORRUPT', `credential file has no entries: ${path}`)
  }
  return { state: 'ok', entries: entries as Entries }
}

/**
 * Per file path, the text of a plain file this process last checked in full (format, checksum, then each entry it
 * handed out, with parseDeviceConfig) and those entries, frozen. A read of the very same text is the same result, so
 * it is not checked again (a new store over the same file, as each bootstrap of a process may make); any other byte
 * and the text is checked in full again. Sealed files are not remembered: no key is kept beyond its store.
 */
const proven = new Map<string, { text: string; entries: Map<string, StoredEntry> }>()
type StoredEntry = { readonly config: DeviceConfig; readonly savedAt: number; readonly privateKey?: string }

export function provenEntry(path: string, text: string, name: string): StoredEntry | undefined {
  const known = proven.get(path)
  return known !== undefined && known.text === text ? known.entries.get(name) : undefined
}

export function rememberEntry(path: string, text: string, name: string, entry: StoredEntry): void {
  let known = proven.get(path)
  if (known === undefined || known.text !== text) {
    if (proven.size >= 16) proven.clear()
    known = { text, entries: new Map() }
    proven.set(path, known)
  }
  known.entries.set(name, entry)
}
