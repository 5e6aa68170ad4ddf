/**
 * `serve`'s CA on disk: the certificate at --ca-out (what devices trust) and its private key at --ca-key (default
 * `<ca-out>.key`, mode 0600). A restart with the same arguments reuses both, so the devices that trust the first start
 * keep working; nothing is ever overwritten: a new CA is written only where neither file exists, and only once the
 * server listens (a start that fails, on a busy port say, leaves the files as they were).
 */
import { randomBytes, X509Certificate } from 'node:crypto'
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { dirname } from 'node:path'
import type { CertificateAuthority } from './certificates.js'
import { UsageError } from './io.js'
import { parsePrivateKey } from './pem.js'

/** Where the key goes when --ca-key is not given. */
export const defaultCaKeyPath = (caOut: string) => `${caOut}.key`

/**
 * The CA kept by an earlier start, or `undefined` when neither file exists. Half a CA (one file without the other), a
 * key that is not the certificate's, or a certificate that is no CA or has expired is a UsageError: generating a new
 * CA over it would break every device that trusts the old one, so that is the operator's decision.
 */
export function loadCa(caOut: string, keyPath: string, now = Date.now()): CertificateAuthority | undefined {
  const hasCert = existsSync(caOut)
  const hasKey = existsSync(keyPath)
  if (!hasCert && !hasKey) {
    for (const path of new Set([dirname(caOut), dirname(keyPath)])) {
      try {
        accessSync(path, constants.W_OK)
      } catch {
        throw new UsageError(`cannot write the CA into ${path} (--ca-out ${caOut}, --ca-key ${keyPath})`)
      }
    }
    return undefined
  }
  const restart = 'delete both files to start over with a new CA (devices must then trust the new one)'
  if (!hasKey) {
    throw new UsageError(`--ca-out ${caOut} exists but its key ${keyPath} does not (--ca-key names it); or ${restart}`)
  }
  if (!hasCert) throw new UsageError(`the CA key ${keyPath} exists but its certificate ${caOut} does not; ${restart}`)
  const read = (path: string) => {
    try {
      return readFileSync(path, 'utf8')
    } catch {
      throw new UsageError(`cannot read ${path}`)
    }
  }
  // As ssh does with an unprotected private key: refuse it rather than go on signing with a key others may have read.
  const mode = statSync(keyPath).mode & 0o777
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    const shown = mode.toString(8).padStart(4, '0')
    throw new UsageError(`the CA key ${keyPath} is readable by others (mode ${shown}): chmod 600 ${keyPath}`)
  }
  const cert = read(caOut)
  const key = read(keyPath)
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(cert)
  } catch {
    throw new UsageError(`--ca-out ${caOut} is not a PEM certificate; ${restart}`)
  }
  const privateKey = parsePrivateKey(key, `--ca-key ${keyPath}`)
  if (!x509.ca) throw new UsageError(`--ca-out ${caOut} is not a CA certificate; ${restart}`)
  if (!x509.checkPrivateKey(privateKey)) {
    throw new UsageError(`--ca-key ${keyPath} is not the key of the CA in ${caOut}; ${restart}`)
  }
  if (new Date(x509.validTo).getTime() <= now) {
    throw new UsageError(`the CA in ${caOut} expired on ${x509.validTo}; ${restart}`)
  }
  return { cert, key }
}

/** Write a new CA: the key first (0600), then the certificate (0644), each whole or not at all, neither replacing a file. */
export function saveCa(ca: CertificateAuthority, caOut: string, keyPath: string): void {
  createExclusive(keyPath, ca.key, 0o600)
  try {
    createExclusive(caOut, ca.cert, 0o644)
  } catch (error) {
    unlinkSync(keyPath) // ours, just made: a key without its certificate would block the next start
    throw error
  }
}

/**
 * Create `path` with `data`, atomically and only if it does not exist: a temp file beside it, fsynced, then hard-linked
 * into place (EEXIST if another process made `path` meanwhile). Where hard links are not supported, an exclusive
 * create and write.
 */
export function createExclusive(path: string, data: string, mode: number): void {
  const temp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`
  try {
    writeWhole(temp, data, mode)
    linkSync(temp, path)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw error
    writeWhole(path, data, mode)
  } finally {
    try {
      unlinkSync(temp)
    } catch {
      // Never created (the write failed first).
    }
  }
  try {
    const directory = openSync(dirname(path), 'r')
    try {
      fsyncSync(directory)
    } finally {
      closeSync(directory)
    }
  } catch {
    // Not every platform can fsync a directory (Windows): the file itself is synced.
  }
}

export function writeWhole(path: string, data: string, mode: number): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode)
  try {
    const bytes = Buffer.from(data)
    for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}
