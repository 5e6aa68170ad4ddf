/**
 * The provisioned QoS as the default of `publish` and `subscribe` (and so of their Async forms, which call them).
 * An explicit qos still wins; the object form of subscribe already names a qos per topic and is left alone.
 */
import type { IClientPublishOptions, IClientSubscribeOptions, MqttClient } from 'mqtt'
import type { Qos } from './contract.js'

export function applyDefaultQos(client: MqttClient, qos: Qos): void {
  const publish = client.publish
  const subscribe = client.subscribe
  client.publish = function (
    this: MqttClient,
    topic: string,
    message: string | Buffer,
    opts?: unknown,
    callback?: unknown,
  ) {
    if (typeof opts === 'function') return publish.call(this, topic, message, { qos }, opts as never)
    const given = (opts ?? {}) as IClientPublishOptions
    return publish.call(this, topic, message, { ...given, qos: given.qos ?? qos }, callback as never)
  } as MqttClient['publish']
  client.subscribe = function (this: MqttClient, topics: unknown, opts?: unknown, callback?: unknown) {
    if (typeof opts === 'function')
      return subscribe.call(this, topics as never, withQos(topics, undefined, qos), opts as never)
    return subscribe.call(
      this,
      topics as never,
      withQos(topics, opts as IClientSubscribeOptions, qos),
      callback as never,
    )
  } as MqttClient['subscribe']
}

function withQos(topics: unknown, opts: IClientSubscribeOptions | undefined, qos: Qos): IClientSubscribeOptions {
  if (typeof topics !== 'string' && !Array.isArray(topics)) return opts as IClientSubscribeOptions
  return { ...opts, qos: opts?.qos ?? qos }
}
