/**
 * FileMessageStore: mqtt.js's incoming and outgoing stores on disk, so that a QoS 1 (or 2) message survives a crash,
 * a power cut and a re-provisioning (issue 20). `dir/outgoing` and `dir/incoming` hold one slot file per message id
 * in use (packet-dir.ts), `dir/queued` what mqtt.js held in memory while it resent (queued-publishes.ts), moved into
 * `outgoing` when a store is made on the directory; `dir` is made 0700.
 *
 * The guarantee: a message is on disk once `publish()` has returned (a SIGKILL loses nothing from then on), and
 * durable against a power cut once the next sync has completed, at most `syncMs` later (or when `sync()` resolves).
 * The next client given the same store (after a restart, or the same client after a re-provisioning) sends what it
 * holds again on its CONNACK: duplicates are possible, losses are not.
 *
 * Our own files rather than classic-level or lmdb (7.5 MB and 21 MB installed, native code): a packet in flight is
 * written once and deleted once, never updated or searched, and the whole set is read only at boot; one small file
 * each is all the store that needs, with the project's own pieces (node:fs, node:crypto for the digest).
 * docs/durable-session.md has the measurements.
 */
import type { IStore, MqttClient } from 'mqtt'
import { brand } from '../brand.js'
import { InvalidOptionError, type MessageStoreError } from '../errors.js'
import { EventEmitter } from '../lazy.js'
import { checkInteger, checkKnown, fail, isPlainObject, typeName } from '../option-checks.js'
import { fsyncDirectory } from './atomic-file.js'
import { type MessageIdProvider, StoreMessageIds } from './message-ids.js'
import { PacketDir, type PacketDirOwner } from './packet-dir.js'
import type { Packet } from './packet-file.js'
import type { KeepQueued } from './queued-publishes.js'

const fs = process.getBuiltinModule('node:fs')
const { dirname, resolve, join } = process.getBuiltinModule('node:path')

/** How long after a change its sync starts, by default (ms). */
export const DEFAULT_SYNC_MS = 200
/** The longest `syncMs` accepted (ms). */
export const MAX_SYNC_MS = 1000
/** The wait before a sync that failed is tried again (ms): no tight loop of failures with `syncMs` 0. */
const SYNC_RETRY_MS = 1000

export interface FileMessageStoreOptions {
  /**
   * The longest a put packet waits for its fsync (ms): its durability against a power cut. 0 syncs at once after
   * every change (slower). Integer, 0 to 1000. @default 200
   */
  syncMs?: number
}

export interface MessageStoreEvents {
  /** A packet could not be kept (its publish failed with the same error), or a stored one was set aside. */
  error: (error: MessageStoreError) => void
}

/** What the bootstrap tells a store of the client using it (see bindMessageStore). */
interface Binding {
  client?: MqttClient | undefined
  report(error: MessageStoreError): void
}

/** The bootstrap's way to keep what mqtt.js queued in memory (queued-publishes.ts): not part of the public API. */
export const KEEP_QUEUED = Symbol('mqtt-bootstrap.FileMessageStore.keepQueued')

/** Where a store keeps its binding: a symbol of the registry, so that the ESM and CJS builds find each other's. */
const BINDING = Symbol.for('mqtt-bootstrap.FileMessageStore.binding')

function bindingOf(store: FileMessageStore): Binding | undefined {
  return (store as unknown as Record<symbol, Binding | undefined>)[BINDING]
}

export class FileMessageStore extends EventEmitter<MessageStoreEvents> {
  /** The store's directory, absolute. */
  readonly dir: string
  readonly syncMs: number
  /** mqtt.js's `outgoingStore`: publishes (QoS 1 and 2) and pubrels awaiting their acknowledgement. */
  readonly outgoing: IStore
  /** mqtt.js's `incomingStore`: QoS 2 publishes received, awaiting their pubrel. */
  readonly incoming: IStore
  /**
   * mqtt.js's `messageIdProvider` for the client using this store: it never hands out the id of a stored packet (the
   * default one can after a restart, and the new packet would replace the stored one).
   */
  readonly messageIdProvider: MessageIdProvider
  readonly #dirs: readonly PacketDir[]
  readonly #queued: PacketDir
  readonly #queuedKeys: StoreMessageIds
  #timer: NodeJS.Timeout | undefined
  /** Queued records whose packet is in the outgoing store now: removed once that is synced. */
  readonly #buryAfterSync: number[] = []
  /** The directories were made (or found) by this store: the first sync makes their names durable too. */
  #rootsUnsynced = true
  #chain: Promise<void> = Promise.resolve()

  constructor(dir: string, options?: FileMessageStoreOptions) {
    super()
    if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) fail('dir', 'a directory path', typeName(dir))
    if (options !== undefined && !isPlainObject(options)) fail('options', 'an object', typeName(options))
    checkKnown(options ?? {}, new Set(['syncMs']), '')
    if (options?.syncMs === null) fail('syncMs', 'left out for its default, or an integer', 'null')
    this.syncMs = checkInteger(options?.syncMs ?? DEFAULT_SYNC_MS, 'syncMs', 0, MAX_SYNC_MS)
    this.dir = resolve(dir)
    const owner: PacketDirOwner = {
      changed: () => this.#schedule(),
      report: (error) => this.#report(error),
      refuse: (packet, error) => this.#refuse(packet, error),
      flush: () => this.sync().catch((error: MessageStoreError) => this.#report(error)),
      // When mqtt.js (or the app) first uses the outgoing store: by then its listeners and bootstrap are there.
      opened: (kind) => {
        if (kind === 'outgoing') this.#adoptQueued()
      },
    }
    const outgoing = new PacketDir(join(this.dir, 'outgoing'), 'outgoing', owner)
    this.outgoing = outgoing
    this.incoming = new PacketDir(join(this.dir, 'incoming'), 'incoming', owner)
    this.#queued = new PacketDir(join(this.dir, 'queued'), 'queued', owner)
    this.#dirs = [outgoing, this.incoming as PacketDir, this.#queued]
    // Busy: held by the store, or by a packet in the client's offline queue (a subscribe made offline keeps its id).
    const queuedInClient = (id: number) =>
      (bindingOf(this)?.client as { queue?: Array<{ packet?: { messageId?: number } }> } | undefined)?.queue?.some(
        (entry) => entry.packet?.messageId === id,
      ) === true
    this.messageIdProvider = new StoreMessageIds((id) => outgoing.holds(id) || queuedInClient(id))
    this.#queuedKeys = new StoreMessageIds((key) => this.#queued.holds(key))
    try {
      for (const { path } of this.#dirs) fs.mkdirSync(path, { recursive: true, mode: 0o700 })
    } catch {
      // A directory that cannot be made: the first use reports it, and every put fails until it can.
    }
  }

  /** Outgoing packets held (published, not yet acknowledged by the broker). Reads the directory on first use. */
  get pending(): number {
    return (this.outgoing as PacketDir).size
  }

  /**
   * Make every packet put so far durable now (fsync), rather than within `syncMs`. Rejects with a MessageStoreError
   * (`ERR_MESSAGE_STORE_IO`) when the disk refuses; the packets stay due for the next sync.
   */
  sync(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const run = this.#chain.then(() => this.#syncAll())
    this.#chain = run.catch(() => undefined)
    return run
  }

  /** The options mqtt.js takes for this store: its two stores and its message-id provider. */
  clientOptions(): { incomingStore: IStore; outgoingStore: IStore; messageIdProvider: MessageIdProvider } {
    return { incomingStore: this.incoming, outgoingStore: this.outgoing, messageIdProvider: this.messageIdProvider }
  }

  /** Secrets never pass through here, but payloads do: inspect shows where the store is, not what it holds. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `FileMessageStore { dir: ${JSON.stringify(this.dir)}, syncMs: ${this.syncMs} }`
  }

  toJSON(): { dir: string; syncMs: number } {
    return { dir: this.dir, syncMs: this.syncMs }
  }

  /**
   * Write a publish mqtt.js holds in memory (queued-publishes.ts) where the next store on this directory finds it;
   * the function that removes it. A failed write is reported (the publish still goes, from memory).
   */
  [KEEP_QUEUED]: KeepQueued = (packet) => {
    const key = this.#queuedKeys.allocate()
    if (key === null) return () => {}
    this.#queued.put({ ...packet, messageId: key } as Packet, () => {})
    // Removed only after the next sync of the outgoing store: a power cut must not keep the removal and lose the copy.
    return () => {
      this.#buryAfterSync.push(key)
      this.#schedule()
    }
  }

  /**
   * When the outgoing store is first read: move what a killed process left queued into it, after what is there, each
   * with a free message id; the queued records go after the next sync (as above).
   */
  #adoptQueued(): void {
    const queued = this.#queued.packets()
    if (queued.length === 0) return
    const outgoing = this.outgoing as PacketDir
    for (const packet of queued) {
      const id = this.messageIdProvider.allocate()
      if (id === null) break
      let moved = false
      outgoing.put({ ...packet, messageId: id } as Packet, (error?: Error) => {
        moved = error === undefined
      })
      if (!moved) break
      if (packet.messageId !== undefined) this.#buryAfterSync.push(packet.messageId)
    }
    this.messageIdProvider.clear() // the ids are the store's now: held, not in use
  }

  async #syncAll(): Promise<void> {
    const buried = this.#buryAfterSync.splice(0)
    try {
      for (const dir of this.#dirs) await dir.sync()
    } catch (error) {
      this.#buryAfterSync.unshift(...buried) // kept till a sync succeeds: a duplicate at worst, never a loss
      throw error
    }
    for (const key of buried) {
      this.#queued.del({ messageId: key }, () => {})
      this.#queuedKeys.deallocate(key)
    }
    if (this.#rootsUnsynced) {
      // A power cut on the first boot must not take the directory, and the records in it, with it.
      await fsyncDirectory(this.dir)
      await fsyncDirectory(dirname(this.dir))
      this.#rootsUnsynced = false
    }
  }

  #schedule(delayMs = this.syncMs): void {
    if (this.#timer !== undefined) return
    // Unref'd: a pending sync does not keep the process alive (the files are written already; ending the client syncs).
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.sync().catch((error: MessageStoreError) => {
        this.#report(error)
        this.#schedule(SYNC_RETRY_MS) // the packets stay due: try again
      })
    }, delayMs)
    this.#timer.unref()
  }

  #report(error: MessageStoreError): void {
    this.emit('error', error)
    bindingOf(this)?.report(error)
  }

  /**
   * An outgoing publish the store could not write: fail its publish() with `error`. mqtt.js 5 drops a store error of
   * a connected client's QoS 1 publish (its callback is never called), so the bootstrap, which knows the client,
   * completes it; without one, `false` hands the error to mqtt.js's own callback.
   */
  #refuse(packet: Packet, error: MessageStoreError): boolean {
    const client = bindingOf(this)?.client
    const id = packet.messageId
    const waiting = id === undefined ? undefined : client?.outgoing[id]
    if (client === undefined || id === undefined || waiting === undefined) return false
    delete client.outgoing[id]
    client.messageIdProvider.deallocate(id)
    process.nextTick(() => waiting.cb?.(error))
    return true
  }
}

brand(FileMessageStore, 'FileMessageStore')

/**
 * The bootstrap's hold on a store: where its problems are reported (the bootstrap's `error` events), and the client
 * using it now, whose failed publishes it completes. A later binding replaces the earlier one.
 */
export function bindMessageStore(store: FileMessageStore, binding: Binding): void {
  Object.defineProperty(store, BINDING, { value: binding, configurable: true, enumerable: false, writable: false })
}

/** `client` has ended: the store no longer completes its publishes (unless another client took it meanwhile). */
export function releaseMessageStore(store: FileMessageStore, client: MqttClient): void {
  const binding = bindingOf(store)
  if (binding?.client === client) bindMessageStore(store, { report: binding.report })
}

/** The MQTT options a store brings itself: given beside it, the app's would defeat it. */
const STORE_OPTIONS = ['incomingStore', 'outgoingStore', 'messageIdProvider'] as const

/** The `messageStore` option, checked (`mqtt` is the app's mqtt.js options, unchecked yet). */
export function checkMessageStore(value: unknown, mqtt: unknown): FileMessageStore | undefined {
  if (value === undefined) return undefined
  if (!(value instanceof FileMessageStore)) fail('messageStore', 'a FileMessageStore', typeName(value))
  const given = STORE_OPTIONS.filter((key) => (mqtt as Record<string, unknown> | undefined)?.[key] !== undefined)
  if (given.length > 0) {
    const names = given.map((key) => `\`mqtt.${key}\``).join(', ')
    throw new InvalidOptionError(`mqtt.${given[0]}`, `${names}: the messageStore brings its own; remove them`)
  }
  return value
}
