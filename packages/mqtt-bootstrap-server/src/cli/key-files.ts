/**
 * Where `keys` and `check` take a group key from, and how they write secrets. Never a command-line argument (it would
 * show in `ps` and in the shell's history, issue 14): a file (`-` for standard input) or MQTT_BOOTSTRAP_GROUP_KEY.
 * Messages name the source, never the key.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, fstatSync, openSync, readSync, renameSync, unlinkSync } from 'node:fs'
import { InvalidOptionError } from 'mqtt-bootstrap'
import { deriveDeviceKey } from 'mqtt-bootstrap/contract'
import { createExclusive, writeWhole } from './ca-store.js'
import { UsageError } from './io.js'

/** The environment variable a group key may come from when no --group-key-file is given. */
export const GROUP_KEY_ENV = 'MQTT_BOOTSTRAP_GROUP_KEY'

/** More than any key file holds (a 64-byte key is 88 base64 characters): a bigger file is another file. */
const MAX_KEY_FILE_BYTES = 4096

/**
 * The group key's bytes, from `file` (`-`: standard input) or else from the environment. Its text is the base64 of
 * the key (what `keys group` writes), surrounding white space ignored; it must be canonical base64 of at least 16
 * bytes (deriveDeviceKey's rule). A file readable by group or others is refused, as `serve` refuses such a CA key.
 */
export async function readGroupKey(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Buffer> {
  if (file === undefined && !env[GROUP_KEY_ENV]) {
    throw new UsageError(
      `no group key: give --group-key-file <file> (or - for standard input), or set ${GROUP_KEY_ENV}`,
    )
  }
  const source = file === undefined ? GROUP_KEY_ENV : file === '-' ? 'standard input' : `--group-key-file ${file}`
  const text =
    file === undefined ? (env[GROUP_KEY_ENV] as string) : file === '-' ? await readStdin() : readKeyFile(file)
  return groupKeyBytes(text, source)
}

/** A device key from a file (`check --key-file`): the base64 `keys derive` prints, kept as private as a group key. */
export async function readDeviceKey(file: string): Promise<Buffer> {
  const text = file === '-' ? await readStdin() : readKeyFile(file)
  return groupKeyBytes(text, file === '-' ? 'standard input' : `--key-file ${file}`, 'device key')
}

function groupKeyBytes(text: string, source: string, what = 'group key'): Buffer {
  const value = text.trim()
  try {
    // The same check the server and the device make (canonical base64, at least 16 bytes), said here once.
    deriveDeviceKey(value, 'check')
  } catch (error) {
    if (!(error instanceof InvalidOptionError)) throw error
    const why = error.message.replace('Expected `groupKey`', 'expected it')
    throw new UsageError(`${source}: not a ${what} (${why})`)
  }
  return Buffer.from(value, 'base64')
}

/**
 * A key file's text, checked as the file opened (not the name: what is read is what was checked): mode 0600 or
 * stricter, as ssh asks of a private key, and at most `maxBytes`. Messages start with `prefix` (the option, if any).
 */
export function readKeyFile(path: string, maxBytes = MAX_KEY_FILE_BYTES, prefix = ''): string {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new UsageError(`${prefix}cannot read ${path} (${code === 'ENOENT' ? 'no such file' : code})`)
  }
  try {
    const mode = fstatSync(fd).mode & 0o777
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      const shown = mode.toString(8).padStart(4, '0')
      throw new UsageError(`${prefix}the key file ${path} is readable by others (mode ${shown}): chmod 600 ${path}`)
    }
    const buffer = Buffer.alloc(maxBytes + 1)
    let length = 0
    for (let read = -1; read !== 0 && length < buffer.length; length += read) {
      read = readSync(fd, buffer, length, buffer.length - length, null)
    }
    if (length > maxBytes) throw new UsageError(`${prefix}${path} is not a key file (over ${maxBytes} bytes)`)
    return buffer.toString('utf8', 0, length)
  } finally {
    closeSync(fd)
  }
}

/** All of standard input, up to `maxBytes`. */
export async function readStdin(maxBytes = MAX_KEY_FILE_BYTES): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > maxBytes) throw new UsageError(`standard input: more than ${maxBytes} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Refuse an `--out` that exists, before any work is done (it is replaced only with --force). */
export function checkOut(path: string, force: boolean | undefined, option = '--out'): void {
  if (!force && existsSync(path))
    throw new UsageError(`${option} ${path} exists: nothing written (--force replaces it)`)
}

/**
 * Write a secret to `path`, mode 0600, whole or not at all: never over an existing file unless `force` (then the new
 * file replaces the old in one rename, so a reader sees one or the other).
 */
export function writeSecretFile(path: string, data: string, force: boolean | undefined): void {
  if (!force) {
    createExclusive(path, data, 0o600)
    return
  }
  const temp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`
  try {
    writeWhole(temp, data, 0o600)
    renameSync(temp, path)
  } catch (error) {
    try {
      unlinkSync(temp)
    } catch {
      // Never created, or already renamed.
    }
    throw error
  }
}
