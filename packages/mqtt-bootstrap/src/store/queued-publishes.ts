/**
 * What mqtt.js keeps in memory however durable its stores: after each CONNACK it resends its outgoing store one
 * packet at a time, each awaiting its PUBACK, and every publish() made meanwhile (or while all 65,535 ids are taken)
 * waits in its `_storeProcessingQueue`, not in the store. A long outage leaves a long resend, and a kill during it
 * would lose what the app published then. The bootstrap's client is guarded here:
 *
 * - publish(): a QoS 1/2 publish that mqtt.js queued so is written to the store's `queued` directory before
 *   publish() returns; once mqtt.js has put it in the outgoing store (its `cbStorePut`), or failed it for good (the
 *   store refused it: the app is told), the record goes. A kill in between leaves the record, and the next
 *   FileMessageStore on the directory moves it into the outgoing store, after what was there (message-store.ts).
 *   When the connection closes during the resend mqtt.js drops what it queued (the app's callback gets "Connection
 *   closed", a callback-less publish is lost); here it is published again, now offline, into the store.
 * - reconnect(): mqtt.js's, called without options, swaps the stores for new in-memory ones; the guard passes the
 *   client's own instead.
 *
 * It reads two of mqtt.js's fields (`_storeProcessingQueue` and the queue entry's `cbStorePut`, mqtt.js 5): where they
 * are not what they were, nothing is guarded and mqtt.js behaves as it does without the store.
 */
import type { IClientPublishOptions, MqttClient } from 'mqtt'
import type { Packet } from './packet-file.js'

/** Write `packet` where a restart finds it; the function that removes it. */
export type KeepQueued = (packet: Packet) => () => void

interface QueueEntry {
  cbStorePut?: unknown
}

type PublishCallback = (error?: Error, packet?: unknown) => void

/** What mqtt.js fails a queued publish with when the connection closes during the resend. */
const CLOSED = 'Connection closed'

/** Guard `client` (see above). Once per client. */
export function guardQueuedPublishes(client: MqttClient, keep: KeepQueued): void {
  const publish = client.publish
  const reconnect = client.reconnect
  client.publish = function guarded(this: MqttClient, ...args: unknown[]): MqttClient {
    const [topic, message] = args as [string, string | Buffer]
    let [, , opts, callback] = args as [unknown, unknown, IClientPublishOptions | PublishCallback | undefined, unknown]
    if (typeof opts === 'function') {
      callback = opts
      opts = undefined
    }
    const given = (opts ?? {}) as IClientPublishOptions
    const appStorePut = given.cbStorePut as ((error?: Error) => void) | undefined
    const queue = (this as unknown as { _storeProcessingQueue?: QueueEntry[] })._storeProcessingQueue
    let removeRecord: (() => void) | undefined
    let settled = false
    let closed = false
    const cbStorePut = (error?: Error) => {
      settled = true
      // Failed because the connection closed during the resend: it is published again (below), record kept till then.
      if (removeRecord !== undefined && error?.message === CLOSED) {
        closed = true
        return
      }
      removeRecord?.()
      appStorePut?.(error)
    }
    // Always a callback of ours: a publish that fails for good (the store refused it) leaves no record behind.
    const done = (error?: Error, packet?: unknown) => {
      if (closed) {
        // mqtt.js drops what it queued when the connection closes; offline now (once its close handler has run),
        // the same publish goes to the store, and the app's callback waits for its PUBACK as if nothing happened.
        closed = false
        const again = removeRecord
        removeRecord = undefined
        setImmediate(() => {
          const retry = appStorePut === undefined ? given : { ...given, cbStorePut: appStorePut }
          guarded.call(this, topic, message, retry, callback)
          again?.()
        })
        return
      }
      if (error !== undefined && error !== null) removeRecord?.()
      if (typeof callback === 'function') (callback as PublishCallback)(error, packet)
    }
    const result = (publish as (...a: unknown[]) => MqttClient).call(
      this,
      topic,
      message,
      { ...given, cbStorePut },
      done,
    )
    const qos = given.qos ?? 0
    if (!settled && qos > 0 && topic !== '' && Array.isArray(queue) && queue.at(-1)?.cbStorePut === cbStorePut) {
      const remove = keep(queuedPacket(topic, message, qos, given))
      removeRecord = () => {
        removeRecord = undefined
        remove()
      }
    }
    return result
  } as MqttClient['publish']
  client.reconnect = function (this: MqttClient, opts?: Parameters<MqttClient['reconnect']>[0]): MqttClient {
    const stores = { incomingStore: this.incomingStore, outgoingStore: this.outgoingStore }
    return reconnect.call(this, opts ?? stores)
  }
}

/** The packet mqtt.js will store for this publish, as it stores it: without a topic alias (an alias is per connection). */
function queuedPacket(topic: string, payload: unknown, qos: number, given: IClientPublishOptions): Packet {
  const { retain = false, dup = false, properties } = given
  const packet: Record<string, unknown> = { cmd: 'publish', topic, payload, qos, retain, dup, messageId: 0 }
  if (properties !== undefined) {
    const { topicAlias: _alias, ...rest } = properties
    packet.properties = rest
  }
  return packet as unknown as Packet
}
