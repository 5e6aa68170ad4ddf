/**
 * superviseSession(): from a client's first CONNACK, a Session (session.ts) keeps it connected, told what happens
 * through listeners on the client, shared by every client: mqtt.js calls them with the client as `this`, and a
 * WeakMap finds its session (no closure kept per client).
 */
import type { MqttClient } from 'mqtt'
import type { ReconnectPolicy } from './reconnect.js'
import { Session } from './session.js'
import type { Provisioned, SessionHooks } from './session-hooks.js'

const sessions = new WeakMap<MqttClient, Session>() // mqtt.js calls the listeners below with the client as `this`

/**
 * Watch `client` from its first CONNACK until it is ended. One object per client, listeners shared by all clients (no
 * closures per client), and a connection's stability is a timestamp checked when it closes (no timer per connect).
 */
export function superviseSession(
  client: MqttClient,
  first: Provisioned,
  hooks: SessionHooks,
  policy: ReconnectPolicy,
): void {
  const session = new Session(client, first, hooks, policy, detach)
  sessions.set(client, session)
  client.options.reconnectPeriod = session.delay(1)
  for (const [event, listener] of LISTENERS) client.on(event, listener)
  session.renewal.arm(first.config)
}

/** The session's listeners off the client, once it has stopped. */
function detach(client: MqttClient): void {
  sessions.delete(client)
  for (const [event, listener] of LISTENERS) client.off(event, listener)
}

type SessionMethod = 'settle' | 'reconnecting' | 'connected' | 'closed' | 'failed' | 'stop'

/** A listener handing an event to the client's session: one function per event, shared by every client. */
function toSession(method: SessionMethod) {
  return function (this: MqttClient, error: Error & { code?: unknown }): void {
    sessions.get(this)?.[method](error)
  }
}

/**
 * What the session listens to, added by superviseSession() and removed by stop() from the one list. mqtt.js emits
 * 'offline' on the close of a connected client, just before it arms the reconnect with reconnectPeriod.
 */
const LISTENERS = [
  ['offline', toSession('settle')],
  ['reconnect', toSession('reconnecting')],
  ['connect', toSession('connected')],
  ['close', toSession('closed')],
  ['error', toSession('failed')],
  ['end', toSession('stop')],
] as const
