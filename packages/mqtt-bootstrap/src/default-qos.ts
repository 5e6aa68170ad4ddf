/**
 * The provisioned QoS as the default of `publish` and `subscribe` (and so of their Async forms, which call them).
 * An explicit qos still wins; the object form of subscribe already names a qos per topic and is left alone.
 *
 * A client whose methods are its class's (mqtt.connect()'s) gets the two functions shared by every client of its QoS
 * (there are three QoS): nothing kept per client (a fleet process keeps thousands). Any other client gets wrappers
 * of its own methods.
 */
import type { IClientPublishOptions, IClientSubscribeOptions, MqttClient } from 'mqtt'
import type { Qos } from './contract.js'

type Publish = MqttClient['publish']
type Subscribe = MqttClient['subscribe']

export function applyDefaultQos(client: MqttClient, qos: Qos): void {
  const inherited = Object.getPrototypeOf(client) as Partial<MqttClient> | null
  if (client.publish === inherited?.publish && client.subscribe === inherited?.subscribe) {
    client.publish = SHARED[qos].publish
    client.subscribe = SHARED[qos].subscribe
    return
  }
  const { publish, subscribe } = client
  client.publish = function (this: MqttClient, topic: string, message: string | Buffer, opts?: unknown, cb?: unknown) {
    return publishWith(this, publish, qos, topic, message, opts, cb)
  } as Publish
  client.subscribe = function (this: MqttClient, topics: unknown, opts?: unknown, cb?: unknown) {
    return subscribeWith(this, subscribe, qos, topics, opts, cb)
  } as Subscribe
}

/** The methods of the client's class, under a default QoS: one pair per QoS, for every client. */
function sharedFor(qos: Qos): { publish: Publish; subscribe: Subscribe } {
  return {
    publish: function (this: MqttClient, topic: string, message: string | Buffer, opts?: unknown, cb?: unknown) {
      const { publish } = Object.getPrototypeOf(this) as MqttClient
      return publishWith(this, publish, qos, topic, message, opts, cb)
    } as Publish,
    subscribe: function (this: MqttClient, topics: unknown, opts?: unknown, cb?: unknown) {
      const { subscribe } = Object.getPrototypeOf(this) as MqttClient
      return subscribeWith(this, subscribe, qos, topics, opts, cb)
    } as Subscribe,
  }
}

const SHARED = [sharedFor(0), sharedFor(1), sharedFor(2)] as const

function publishWith(
  client: MqttClient,
  publish: Publish,
  qos: Qos,
  topic: string,
  message: string | Buffer,
  opts: unknown,
  callback: unknown,
) {
  if (typeof opts === 'function') return publish.call(client, topic, message, { qos }, opts as never)
  const given = (opts ?? {}) as IClientPublishOptions
  return publish.call(client, topic, message, { ...given, qos: given.qos ?? qos }, callback as never)
}

function subscribeWith(
  client: MqttClient,
  subscribe: Subscribe,
  qos: Qos,
  topics: unknown,
  opts: unknown,
  callback: unknown,
) {
  if (typeof opts === 'function') {
    return subscribe.call(client, topics as never, withQos(topics, undefined, qos), opts as never)
  }
  return subscribe.call(
    client,
    topics as never,
    withQos(topics, opts as IClientSubscribeOptions, qos),
    callback as never,
  )
}

function withQos(topics: unknown, opts: IClientSubscribeOptions | undefined, qos: Qos): IClientSubscribeOptions {
  if (typeof topics !== 'string' && !Array.isArray(topics)) return opts as IClientSubscribeOptions
  return { ...opts, qos: opts?.qos ?? qos }
}
