/**
 * Whether a credential directory is open to other users: group or others can list it (names leak) or change it (the
 * file can be replaced) when mode & 0o066 is set; execute alone only lets them reach files by name, which are 0600.
 * Reported, never changed: the library does not chmod a directory it did not create.
 */
import type { Stats } from 'node:fs'
import { CredentialStoreError } from '../errors.js'

const { statSync } = process.getBuiltinModule('node:fs')

export function auditDirectory(dir: string): CredentialStoreError[] {
  if (process.platform === 'win32') return [] // mode bits there do not show the ACLs that decide access
  let stats: Stats
  try {
    // Synchronous, as the store's read is: on the cached boot's path a thread-pool round trip costs more.
    stats = statSync(dir)
  } catch {
    return [] // no directory yet (a first boot): the store will make it, 0700
  }
  if ((stats.mode & 0o066) === 0) return []
  const mode = (stats.mode & 0o777).toString(8).padStart(4, '0')
  const message = `the directory of the credential file is open to other users (mode ${mode}, 0700 advised): ${dir}`
  return [new CredentialStoreError('ERR_STORE_PERMISSIONS', message)]
}
