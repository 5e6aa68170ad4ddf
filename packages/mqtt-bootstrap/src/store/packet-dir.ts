/**
 * One of mqtt.js's two stores (incoming or outgoing) as a directory of slot files, one per messageId in use:
 * `<messageId>.mqp` holds the packet of that id (packet-file.ts), or nothing once it is deleted. A slot is made once
 * and written over in place from then on: creating a file costs 20 to 40 times what writing one that exists does
 * (docs/durable-session.md), and the message-id provider hands out the lowest free id, so a client keeps reusing the
 * same few slots.
 *
 * - put() writes the record before it answers (synchronously: a few µs into the page cache; a full disk or a
 *   read-only one is an error of this very put), so a SIGKILL after it loses nothing. fsync, which a power cut needs,
 *   comes in batches: the owner's sync (every `syncMs`) fdatasyncs the slots holding a packet put since the last one,
 *   and the directory when a slot was made.
 * - del() forgets the packet and writes a tombstone over its record (four bytes; emptying the file instead, to free
 *   its blocks, costs twice as much per message). A slot keeps its blocks, so a put into it fits on a full disk; a
 *   put that needs more room (a new slot, a larger record) fails. A power cut before the tombstone is synced sends
 *   the packet again at the next boot (a duplicate, which QoS 1 allows), never loses one.
 * - The directory is read once, synchronously, on first use. A slot that is not a whole record (torn by a power cut
 *   before its sync, damaged) is set aside as `<name>.corrupt` and reported.
 *
 * The files themselves are slot-files.ts's.
 */
import type { IStore } from 'mqtt'
import { MessageStoreError } from '../errors.js'
import { fsyncDirectory } from './atomic-file.js'
import { decodePacket, encodePacket, type Packet, TOMBSTONE } from './packet-file.js'
import { SlotFiles } from './slot-files.js'

/** Slots fsynced at once by a sync: libuv's thread pool has 4 threads by default. */
const SYNC_CONCURRENCY = 4

/** mqtt.js's two stores, and the publishes mqtt.js held in memory while it resent a store (queued-publishes.ts). */
export type StoreKind = 'incoming' | 'outgoing' | 'queued'

type PacketCallback = Parameters<IStore['get']>[1]
type DoneCallback = Parameters<IStore['put']>[1]

interface Entry {
  readonly packet: Packet
  /** Whether its record is in its slot (false: kept in memory only, its write having failed; see put). */
  readonly written: boolean
}

/** What a directory tells the store that owns it. */
export interface PacketDirOwner {
  /** A packet was written or removed: a sync is due within `syncMs`. */
  changed(): void
  /** A problem to report (an event), the store going on. */
  report(error: MessageStoreError): void
  /** The outgoing publish whose write failed: fail it loudly (true), or let `cb` take the error (false). */
  refuse(packet: Packet, error: MessageStoreError): boolean
  /** Sync both directories now (an error is reported, not thrown). */
  flush(): Promise<void>
  /** The directory was read, the first time: its packets are held. */
  opened(kind: StoreKind): void
}

export class PacketDir implements IStore {
  readonly path: string
  readonly #kind: StoreKind
  readonly #owner: PacketDirOwner
  /** The packets held, by messageId, in the order they were put. */
  readonly #entries = new Map<number, Entry>()
  readonly #files: SlotFiles
  /** Slots written with a packet since the last sync. */
  readonly #unsynced = new Set<number>()
  #opened = false
  #nextSeq = 1

  constructor(path: string, kind: StoreKind, owner: PacketDirOwner) {
    this.path = path
    this.#files = new SlotFiles(path)
    this.#kind = kind
    this.#owner = owner
  }

  /** How many packets it holds. */
  get size(): number {
    this.#use()
    return this.#entries.size
  }

  /** The packets held, in the order they were put. */
  packets(): Packet[] {
    this.#use()
    return [...this.#entries.values()].map((entry) => entry.packet)
  }

  /** Whether a packet of `messageId` is held (the message-id provider never hands such an id out). */
  holds(messageId: number): boolean {
    // Unreported: the put that follows an allocation reports a directory that cannot be read, once.
    if (!this.#opened && this.open() !== undefined) return false
    return this.#entries.has(messageId)
  }

  put(packet: Packet, cb: DoneCallback): this {
    const failure = this.open()
    if (failure !== undefined) return this.#refused(packet, failure, cb)
    const id = packet.messageId
    if (id === undefined) return this.#refused(packet, new Error('a packet without a messageId'), cb)
    let written = true
    try {
      this.#files.write(id, encodePacket(packet, this.#nextSeq++))
    } catch (cause) {
      const error = ioError(`cannot write a packet to the message store ${this.path}`, this.path, cause)
      // A new publish is refused (its publish() fails); a pubrel, or an incoming QoS 2 publish, is kept in memory so
      // that this process still completes its exchange, and the failure is reported.
      if (this.#kind === 'outgoing' && packet.cmd === 'publish') return this.#refused(packet, error, cb)
      this.#owner.report(error)
      written = false
    }
    this.#entries.set(id, { packet, written })
    if (written) this.#unsynced.add(id)
    this.#owner.changed()
    cb()
    return this
  }

  del(packet: Pick<Packet, 'messageId'>, cb: PacketCallback): this {
    this.#use()
    const id = packet.messageId
    const entry = id === undefined ? undefined : this.#entries.get(id)
    if (entry === undefined || id === undefined) {
      cb?.(new Error('missing packet'))
      return this
    }
    this.#entries.delete(id)
    this.#unsynced.delete(id)
    this.#files.bury(id)
    cb?.(undefined, entry.packet)
    return this
  }

  get(packet: Pick<Packet, 'messageId'>, cb: PacketCallback): this {
    this.#use()
    const entry = packet.messageId === undefined ? undefined : this.#entries.get(packet.messageId)
    if (entry === undefined) cb(new Error('missing packet'))
    else cb(undefined, entry.packet)
    return this
  }

  /** The packets held, in the order they were put (mqtt.js resends them so after each CONNACK). */
  createStream(): ReturnType<IStore['createStream']> {
    // A directory that cannot be read resends nothing: reported, and every put fails until it can.
    const packets = this.packets()
    const { Readable } = process.getBuiltinModule('node:stream')
    let next = 0
    const stream = new Readable({
      objectMode: true,
      read() {
        this.push(next < packets.length ? packets[next++] : null)
      },
    })
    return stream as unknown as ReturnType<IStore['createStream']>
  }

  /**
   * mqtt.js closes its stores when the client ends: what was put is synced, and the store stays usable (by the next
   * client, or by this one should the app reconnect it).
   */
  close(cb: DoneCallback): void {
    this.#owner.flush().then(() => {
      this.#files.closeAll()
      cb()
    })
  }

  /** fdatasync the slots holding a packet put since the last sync (and the directory if a slot was made). */
  async sync(): Promise<void> {
    const batch = [...this.#unsynced]
    const madeSlot = this.#files.takeMade()
    this.#unsynced.clear()
    // Only the slots that still hold their packet: one deleted since has nothing to make durable.
    const due = (id: number) => this.#entries.get(id)?.written === true
    try {
      for (let at = 0; at < batch.length; at += SYNC_CONCURRENCY) {
        const some = batch.slice(at, at + SYNC_CONCURRENCY).filter(due)
        await Promise.all(some.map((id) => this.#files.sync(id)))
      }
      if (madeSlot) await fsyncDirectory(this.path)
    } catch (cause) {
      for (const id of batch) if (due(id)) this.#unsynced.add(id)
      if (madeSlot) this.#files.madeAgain()
      throw ioError(`cannot sync the message store ${this.path}`, this.path, cause)
    }
  }

  /** Read the directory, once; the error when it cannot be (tried again on the next use). */
  open(): MessageStoreError | undefined {
    if (this.#opened) return undefined
    try {
      this.#load(this.#files.readAll())
    } catch (cause) {
      this.#entries.clear()
      this.#unsynced.clear()
      this.#files.reset()
      return ioError(`cannot read the message store ${this.path}`, this.path, cause)
    }
    this.#opened = true
    this.#owner.opened(this.#kind)
    return undefined
  }

  /** Open for a use that does not fail on its own (a put does): the failure is reported. */
  #use(): void {
    if (this.#opened) return
    const failure = this.open()
    if (failure !== undefined) this.#owner.report(failure)
  }

  #load(slots: Array<[number, Buffer]>): void {
    const found: Array<{ seq: number; id: number; packet: Packet }> = []
    for (const [id, bytes] of slots) {
      // An empty slot (made, then killed before its first write) or a deleted packet's.
      if (bytes.length === 0 || bytes.subarray(0, TOMBSTONE.length).equals(TOMBSTONE)) continue
      const decoded = decodePacket(bytes, id)
      if (decoded !== undefined) {
        found.push({ ...decoded, id })
        continue
      }
      const file = this.#files.setAside(id)
      const message = `a stored packet was not whole (torn or damaged) and is set aside: ${file}.corrupt`
      this.#owner.report(new MessageStoreError('ERR_MESSAGE_STORE_CORRUPT', message, file))
    }
    found.sort((a, b) => a.seq - b.seq)
    for (const { seq, id, packet } of found) {
      this.#nextSeq = Math.max(this.#nextSeq, seq + 1)
      this.#entries.set(id, { packet, written: true })
      this.#unsynced.add(id) // a kill leaves it in the page cache only: the first sync makes it durable
    }
    if (found.length > 0) this.#owner.changed()
  }

  #refused(packet: Packet, error: Error, cb: DoneCallback): this {
    if (error instanceof MessageStoreError) this.#owner.report(error)
    if (error instanceof MessageStoreError && this.#kind === 'outgoing' && this.#owner.refuse(packet, error)) {
      return this
    }
    ;(cb as (error?: Error) => void)(error)
    return this
  }
}

function ioError(what: string, path: string, cause: unknown): MessageStoreError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code
  return new MessageStoreError('ERR_MESSAGE_STORE_IO', code === undefined ? what : `${what}: ${code}`, path, cause)
}
