/**
 * Replace a file so that a crash, a power cut or a full disk leaves the old file or the new one, whole.
 *
 * Our own rather than write-file-atomic: its version 7 issues a single `fs.write` and ignores `bytesWritten`, so on a
 * disk with less room than the data a short write (the file cut at a page boundary) is fsynced and renamed into place,
 * and the write resolves. Here every byte is written (a loop), the size on disk is checked before the rename, and any
 * failure removes the temp file and rejects, with the old file untouched.
 *
 * The fs calls go through the `node:fs` module object at call time (`fs.open`, not a destructured `open`): the one
 * seam the tests use to check that the file and its directory are fsynced, and that a crash fixture can hook.
 */
import type { Stats } from 'node:fs'
import { nodeCrypto } from '../lazy.js'

const fs = process.getBuiltinModule('node:fs')
const { basename, dirname, join } = process.getBuiltinModule('node:path')

/** Temp files of `base`: ours (`<base>.tmp-<pid>-<hex>`), and write-file-atomic's (`<base>.<uint32>`) of earlier versions. */
export function isTempName(base: string, name: string): boolean {
  // write-file-atomic's suffix is a uint32 in decimal: at most 10 digits (a dated backup, `.20240101120000`, is kept).
  return name.startsWith(`${base}.`) && /^(?:tmp-\d+-[0-9a-f]+|\d{1,10})$/.test(name.slice(base.length + 1))
}

/**
 * Write `data` to a temp file next to `path` (created exclusively, with `mode`, owned like the file it replaces),
 * fsync it, check its size, rename it over `path` and fsync the directory. Rejects with the system error.
 */
export async function replaceFile(path: string, data: Buffer, mode: number): Promise<void> {
  const temp = `${path}.tmp-${process.pid}-${nodeCrypto().randomBytes(6).toString('hex')}`
  const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants
  // lstat: a symlink planted in the file's place must not lend its target's owner to the credentials.
  const found = await settle<Stats>((done) => fs.lstat(path, done)).catch(() => undefined)
  const owner = found?.isFile() ? found : undefined
  const fd = await settle<number>((done) => fs.open(temp, O_WRONLY | O_CREAT | O_EXCL, mode, done))
  let open = true
  try {
    await settle((done) => fs.fchmod(fd, mode, done)) // exactly `mode`, whatever the umask
    // As root (a service's admin tool), keep the owner of the file replaced, or its service can no longer read it.
    if (owner !== undefined && process.getuid?.() === 0)
      await settle((done) => fs.fchown(fd, owner.uid, owner.gid, done))
    await writeAll(fd, data)
    await settle((done) => fs.fsync(fd, done))
    const { size } = await settle<Stats>((done) => fs.fstat(fd, done))
    if (size !== data.length) throw new Error(`short write: ${size} of ${data.length} bytes on disk`)
    open = false
    await settle((done) => fs.close(fd, done))
    await settle((done) => fs.rename(temp, path, done))
  } catch (error) {
    if (open) await settle((done) => fs.close(fd, done)).catch(() => undefined)
    await settle((done) => fs.unlink(temp, done)).catch(() => undefined)
    throw error
  }
  await fsyncDirectory(dirname(path))
}

/**
 * Remove the temp files a killed writer left next to `path` (each may be a full copy of the credentials). Call it
 * only under the file's lock: then no writer of this file is between its open and its rename. Best effort.
 */
export async function removeTempFiles(path: string): Promise<void> {
  const base = basename(path)
  const dir = dirname(path)
  const names = await settle<string[]>((done) => fs.readdir(dir, done)).catch(() => [])
  for (const name of names) {
    if (isTempName(base, name)) await settle((done) => fs.unlink(join(dir, name), done)).catch(() => undefined)
  }
}

/** `fs.write` may write less than asked (a full disk, a signal): write the rest until all is written or it fails. */
async function writeAll(fd: number, data: Buffer): Promise<void> {
  let offset = 0
  while (offset < data.length) {
    const written = await settle<number>((done) => fs.write(fd, data, offset, data.length - offset, offset, done))
    // Progress or an error on every round: the loop ends within data.length rounds.
    if (written <= 0) throw Object.assign(new Error('no space left to write'), { code: 'ENOSPC' })
    offset += written
  }
}

/** Make the rename durable. Some platforms cannot open a directory (Windows) or fsync one: the rename is still atomic. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const fd = await settle<number>((done) => fs.open(dir, 'r', done)).catch(() => undefined)
  if (fd === undefined) return
  try {
    await settle((done) => fs.fsync(fd, done)).catch((error: NodeJS.ErrnoException) => {
      // What fsync of a directory answers where directories cannot be fsynced: not a failed write.
      if (!['EINVAL', 'ENOTSUP', 'EISDIR'].includes(error.code as string)) throw error
    })
  } finally {
    await settle((done) => fs.close(fd, done)).catch(() => undefined)
  }
}

function settle<T = void>(start: (done: (error: Error | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => start((error, value) => (error ? reject(error) : resolve(value as T))))
}
