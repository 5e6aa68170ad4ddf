/**
 * The message ids of a client whose outgoing store outlives it. mqtt.js's default provider starts from a random id
 * and counts up without looking at the store; after a restart it can hand out the id of a packet the store still
 * holds from the run before, and the store's put of the new packet replaces the old one: a message lost. This one
 * never allocates an id the store holds, or one in use: `held` asks the store. It hands out the lowest free id (as
 * mqtt.js's UniqueMessageIdProvider does), so that a client reuses the same few slot files of the store.
 */
import type { IClientOptions } from 'mqtt'

export type MessageIdProvider = NonNullable<IClientOptions['messageIdProvider']>

const MAX_ID = 65_535

export class StoreMessageIds implements MessageIdProvider {
  readonly #held: (id: number) => boolean
  readonly #inUse = new Set<number>()
  /** No id below it is free: where the search for a free one starts. */
  #lowest = 1
  #last: number | null = null

  constructor(held: (id: number) => boolean) {
    this.#held = held
  }

  /** The lowest id neither in use nor in the store, or `null` when all 65,535 are (mqtt.js then queues the publish). */
  allocate(): number | null {
    for (let id = this.#lowest; id <= MAX_ID; id++) {
      if (!this.#inUse.has(id) && !this.#held(id)) {
        this.#inUse.add(id)
        this.#lowest = id + 1
        this.#last = id
        return id
      }
    }
    return null
  }

  getLastAllocated(): number | null {
    return this.#last
  }

  /** A stored packet's id, taken again as mqtt.js resends it after a connect (`false`: already in use). */
  register(id: number): boolean {
    if (this.#inUse.has(id)) return false
    this.#inUse.add(id)
    return true
  }

  deallocate(id: number): void {
    this.#inUse.delete(id)
    if (id < this.#lowest) this.#lowest = id
  }

  /** mqtt.js calls it on every CONNACK, before it resends the store: the store's ids stay held all the same. */
  clear(): void {
    this.#inUse.clear()
    this.#lowest = 1
  }
}
