/**
 * What mqtt.js keeps in memory however durable its stores: after each CONNACK it resends its outgoing store one
 * packet at a time, each awaiting its PUBACK, and every publish() made meanwhile (or while all 65,535 ids are taken)
 * waits in its `_storeProcessingQueue`, not in the store. A long outage leaves a long resend, and a kill during it
 * would lose what the app published then. The bootstrap's client is guarded here:
 *
 * - publish(): a QoS 1/2 publish that mqtt.js queued so is written to the store's `queued` directory before
 *   publish() returns; once mqtt.js has put it in the outgoing store (its `cbStorePut`), or failed it (the connection
 *   closed: the app is told), the record goes. A kill in between leaves the record, and the next FileMessageStore on
 *   the directory moves it into the outgoing store, after what was there (message-store.ts).
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

/** Guard `client` (see above). Once per client. */
export function guardQueuedPublishes(client: MqttClient, keep: KeepQueued): void {
  const publish = client.publish
  const reconnect = client.reconnect
  client.publish = function (this: MqttClient, ...args: unknown[]): MqttClient {
    const [topic, message] = args as [string, string | Buffer]
    let [, , opts, callback] = args as [unknown, unknown, IClientPublishOptions | PublishCallback | undefined, unknown]
    if (typeof opts === 'function') {
      callback = opts
      opts = undefined
    }
    const given = (opts ?? {}) as IClientPublishOptions
    const queue = (this as unknown as { _storeProcessingQueue?: QueueEntry[] })._storeProcessingQueue
    let removeRecord: (() => void) | undefined
    let settled = false
    const cbStorePut = (error?: Error) => {
      settled = true
      removeRecord?.()
      removeRecord = undefined
      ;(given.cbStorePut as ((error?: Error) => void) | undefined)?.(error)
    }
    // A publish that fails (the store refused it, the connection closed during the resend) is the app's to retry:
    // its record must not send it again at the next boot.
    const done =
      typeof callback === 'function'
        ? (error?: Error, packet?: unknown) => {
            if (error !== undefined && error !== null) removeRecord?.()
            ;(callback as PublishCallback)(error, packet)
          }
        : callback
    const result = (publish as (...a: unknown[]) => MqttClient).call(
      this,
      topic,
      message,
      { ...given, cbStorePut },
      done,
    )
    const qos = given.qos ?? 0
    if (!settled && qos > 0 && Array.isArray(queue) && queue.at(-1)?.cbStorePut === cbStorePut) {
      const { retain = false, dup = false, properties } = given
      const packet = { cmd: 'publish', topic, payload: message, qos, retain, dup, messageId: 0, properties }
      if (properties === undefined) delete (packet as { properties?: unknown }).properties
      const remove = keep(packet as Packet)
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
