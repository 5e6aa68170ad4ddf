/**
 * The provisioned QoS as the default of `publish` and `subscribe` (and so of their Async forms, which call them).
 * An explicit qos still wins; the object form of subscribe already names a qos per topic and is left alone.
 *
 * A client whose methods are its class's (mqtt.connect()'s) gets two functions shared by every client, its QoS in a
 * WeakMap: no closures kept per client (a fleet process keeps thousands). Any other gets wrappers of its own methods.
 */
import type { IClientPublishOptions, IClientSubscribeOptions, MqttClient } from 'mqtt'
import type { Qos } from './contract.js'

type Publish = MqttClient['publish']
type Subscribe = MqttClient['subscribe']

const qosOf = new WeakMap<MqttClient, Qos>()

export function applyDefaultQos(client: MqttClient, qos: Qos): void {
  const own = Object.getPrototypeOf(client) as Partial<MqttClient> | null
  if (client.publish === own?.publish && client.subscribe === own?.subscribe) {
    qosOf.set(client, qos)
    client.publish = sharedPublish as Publish
    client.subscribe = sharedSubscribe as Subscribe
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

function sharedPublish(this: MqttClient, topic: string, message: string | Buffer, opts?: unknown, cb?: unknown) {
  const publish = (Object.getPrototypeOf(this) as MqttClient).publish
  return publishWith(this, publish, qosOf.get(this), topic, message, opts, cb)
}

function sharedSubscribe(this: MqttClient, topics: unknown, opts?: unknown, cb?: unknown) {
  const subscribe = (Object.getPrototypeOf(this) as MqttClient).subscribe
  return subscribeWith(this, subscribe, qosOf.get(this), topics, opts, cb)
}

function publishWith(
  client: MqttClient,
  publish: Publish,
  qos: Qos | undefined,
  topic: string,
  message: string | Buffer,
  opts: unknown,
  callback: unknown,
) {
  if (qos === undefined) return publish.call(client, topic, message, opts as never, callback as never)
  if (typeof opts === 'function') return publish.call(client, topic, message, { qos }, opts as never)
  const given = (opts ?? {}) as IClientPublishOptions
  return publish.call(client, topic, message, { ...given, qos: given.qos ?? qos }, callback as never)
}

function subscribeWith(
  client: MqttClient,
  subscribe: Subscribe,
  qos: Qos | undefined,
  topics: unknown,
  opts: unknown,
  callback: unknown,
) {
  if (qos === undefined) return subscribe.call(client, topics as never, opts as never, callback as never)
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
