/**
 * The slot files of one store directory (packet-dir.ts): `<messageId>.mqp`, made 0600 once and written over in place
 * from then on, the 64 most recently used kept open. Every call but sync() is synchronous: a put's record is in the
 * page cache before mqtt.js is answered, and a failure is that put's own.
 *
 * A symlink planted in a slot's place (a directory others can write to) is never followed: not read at boot (it
 * reads as not whole, and is set aside), not written through (the put fails). Windows has no O_NOFOLLOW. Nor does
 * anything but a regular file pass for a slot: a FIFO would block the open (O_NONBLOCK), a directory the read; at
 * boot such a thing, or a file this process may not read, is set aside like a torn record, and a put into it fails.
 */
import { TOMBSTONE } from './packet-file.js'

const fs = process.getBuiltinModule('node:fs')
const { join } = process.getBuiltinModule('node:path')

const NAME = /^(\d{1,5})\.mqp$/
/** Slot files kept open between writes (the least recently used is closed beyond it). */
const OPEN_SLOTS = 64
const NO_FOLLOW = (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0)
/** What readAll() gives for a slot that is no regular file, or cannot be read: bytes that are no record. */
const NOT_A_RECORD = Buffer.from('not a record')

export class SlotFiles {
  readonly path: string
  /** Slot files that exist, and those of them open (least recently used first). */
  readonly #slots = new Set<number>()
  readonly #open = new Map<number, number>()
  /** Whether a slot file was made since the last takeMade(): the directory then needs its fsync. */
  #made = false

  constructor(path: string) {
    this.path = path
  }

  /** Make the directory (0700) and read every slot: `[messageId, bytes]`, bytes empty for an empty slot. Throws. */
  readAll(): Array<[number, Buffer]> {
    fs.mkdirSync(this.path, { recursive: true, mode: 0o700 })
    const slots: Array<[number, Buffer]> = []
    for (const name of fs.readdirSync(this.path)) {
      const id = Number(NAME.exec(name)?.[1])
      if (!(id >= 1 && id <= 65_535)) continue
      const bytes = readIfThere(this.#file(id))
      if (bytes === undefined) continue // deleted just now
      this.#slots.add(id)
      slots.push([id, bytes])
    }
    return slots
  }

  /** Forget what readAll() found (it failed half-way). */
  reset(): void {
    this.closeAll()
    this.#slots.clear()
  }

  /** Write `record` at the start of `id`'s slot (made if need be); on failure the slot is marked deleted. Throws. */
  write(id: number, record: Buffer): void {
    const fd = this.#slot(id)
    try {
      for (let offset = 0; offset < record.length; ) {
        const written = fs.writeSync(fd, record, offset, record.length - offset, offset)
        if (written <= 0) throw Object.assign(new Error('no space left to write'), { code: 'ENOSPC' })
        offset += written
      }
    } catch (error) {
      this.bury(id) // a part written is not a record: it must not pass for one
      throw error
    }
  }

  /**
   * Mark `id`'s slot deleted (its packet acknowledged, or a failed write's part), best effort: a leftover is sent
   * again at the next boot (a duplicate), or set aside there if it is not whole.
   */
  bury(id: number): void {
    if (!this.#slots.has(id)) return
    try {
      fs.writeSync(this.#slot(id), TOMBSTONE, 0, TOMBSTONE.length, 0)
    } catch {
      // See above: read back at the next boot.
    }
  }

  /** Set the slot of `id` aside as `<name>.corrupt`; its path. */
  setAside(id: number): string {
    const file = this.#file(id)
    try {
      fs.renameSync(file, `${file}.corrupt`)
      this.#closeSlot(id)
      this.#slots.delete(id)
    } catch {
      // Left in place: it is written over by the next packet of its id.
    }
    return file
  }

  /** fdatasync `id`'s slot, on a file of its own (the open one may be closed meanwhile, least recently used). */
  async sync(id: number): Promise<void> {
    const handle = await fs.promises.open(this.#file(id), 'r+').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined
      throw error
    })
    if (handle === undefined) return
    try {
      await handle.datasync()
    } finally {
      await handle.close()
    }
  }

  /** Whether a slot file was made since the last call. */
  takeMade(): boolean {
    const made = this.#made
    this.#made = false
    return made
  }

  /** Mark the directory as needing its fsync again (a sync that failed). */
  madeAgain(): void {
    this.#made = true
  }

  closeAll(): void {
    for (const fd of this.#open.values()) closeQuietly(fd)
    this.#open.clear()
  }

  #file(id: number): string {
    return join(this.path, `${id}.mqp`)
  }

  /** The open file of `id`'s slot, made (0600) when it has none; the least recently used one closed beyond 64. */
  #slot(id: number): number {
    const open = this.#open.get(id)
    if (open !== undefined) {
      this.#open.delete(id)
      this.#open.set(id, open)
      return open
    }
    const { O_RDWR, O_CREAT } = fs.constants
    const fd = fs.openSync(this.#file(id), O_RDWR | O_CREAT | NO_FOLLOW, 0o600)
    if (!fs.fstatSync(fd).isFile()) {
      closeQuietly(fd)
      throw Object.assign(new Error(`not a regular file: ${this.#file(id)}`), { code: 'EFTYPE' })
    }
    if (!this.#slots.has(id)) {
      this.#slots.add(id)
      this.#made = true
    }
    this.#open.set(id, fd)
    if (this.#open.size > OPEN_SLOTS) {
      const [oldest] = this.#open.keys()
      if (oldest !== undefined) this.#closeSlot(oldest)
    }
    return fd
  }

  #closeSlot(id: number): void {
    const fd = this.#open.get(id)
    this.#open.delete(id)
    if (fd !== undefined) closeQuietly(fd)
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // Closed already, or the disk gone: nothing held any more either way.
  }
}

/**
 * The bytes of `file`, `undefined` when it is gone. What cannot be a record of ours reads as bytes that are no record
 * (set aside): a symlink, a file of another user, anything but a regular file. Any other failure (EMFILE, EIO) throws:
 * the store's open fails, and is tried again at the next use, the record kept.
 */
function readIfThere(file: string): Buffer | undefined {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | NO_FOLLOW)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    if (code === 'ELOOP' || code === 'EACCES' || code === 'EPERM') return NOT_A_RECORD
    throw error
  }
  try {
    return fs.fstatSync(fd).isFile() ? fs.readFileSync(fd) : NOT_A_RECORD
  } finally {
    closeQuietly(fd)
  }
}
