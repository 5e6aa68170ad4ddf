/** The credential file's format (file-store.ts): its content, how a read turns out, its integrity digest. */
import type { DeviceConfig } from '../contract.js'
import { CredentialStoreError, type CredentialStoreErrorCode } from '../errors.js'
import { nodeCrypto } from '../lazy.js'

export const FILE_FORMAT = 'mqtt-bootstrap/credentials'
export const FILE_VERSION = 1

export type Entries = Record<string, { savedAt: number; config: DeviceConfig }>

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
