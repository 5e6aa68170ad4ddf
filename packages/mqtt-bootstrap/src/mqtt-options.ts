/**
 * The `mqtt` option: mqtt.js client options less what provisioning owns. Typed so that an editor rejects the owned
 * keys (issue 12: a migrated app kept its `clientId` and connected as someone else), and checked at run time for
 * JavaScript callers, every offending key named in one error rather than one per run.
 */
import type { IClientOptions } from 'mqtt'
import { InvalidOptionError } from './errors.js'

/**
 * mqtt.js options the library sets itself: as whom to connect (clientId, username, password, clean, and `auth`, from
 * which mqtt.js would take a username and password over ours), where (host, port, protocol, path, servers,
 * unixSocket, defaultProtocol: from `connect.host`), and `manualConnect` (the library opens the connection).
 */
export type ProvisionedMqttKey = (typeof PROVISIONED_MQTT_KEYS)[number]

export const PROVISIONED_MQTT_KEYS = Object.freeze([
  'clientId',
  'username',
  'password',
  'clean',
  'auth',
  'host',
  'hostname',
  'port',
  'protocol',
  'defaultProtocol',
  'path',
  'servers',
  'unixSocket',
  'manualConnect',
] as const satisfies ReadonlyArray<keyof IClientOptions>)

/**
 * mqtt.js client options for the broker (`ca`, `cert`, `key`, `keepalive`, `will`, stores, …), passed through.
 * Certificate verification stays on: `rejectUnauthorized` may only be `true`.
 */
export type MqttOptions = Omit<IClientOptions, ProvisionedMqttKey | 'rejectUnauthorized' | 'wsOptions'> & {
  /** Broker certificate verification is always on. @default true */
  rejectUnauthorized?: true
  /** mqtt.js's `wsOptions` (over `wss://` they have the last word on TLS): verification stays on there too. */
  wsOptions?: NonNullable<IClientOptions['wsOptions']> & { rejectUnauthorized?: true }
}

const OWNED: ReadonlySet<string> = new Set(PROVISIONED_MQTT_KEYS)

/** Refuse, in one InvalidOptionError, every owned key set in `value` and every switch that turns verification off. */
export function refuseOwnedMqttKeys(value: Record<string, unknown>): void {
  const owned = Object.keys(value).filter((key) => OWNED.has(key) && value[key] !== undefined)
  const unverified: string[] = []
  if (value.rejectUnauthorized === false) unverified.push('rejectUnauthorized')
  // Over wss:// mqtt.js lets `wsOptions` have the last word on TLS: the same rule there.
  const ws = value.wsOptions as { rejectUnauthorized?: unknown } | null | undefined
  if (typeof ws === 'object' && ws?.rejectUnauthorized === false) unverified.push('wsOptions.rejectUnauthorized')
  if (owned.length === 0 && unverified.length === 0) return
  const problems: string[] = []
  if (owned.length > 0) {
    const many = owned.length > 1
    problems.push(`${listed(owned)} ${many ? 'are' : 'is'} set by provisioning: remove ${many ? 'them' : 'it'}`)
  }
  if (unverified.length > 0) {
    problems.push(`${listed(unverified)} must be absent or true: certificate verification stays on`)
  }
  const options = [...owned, ...unverified].map((key) => `mqtt.${key}`)
  throw new InvalidOptionError(options[0] as string, problems.join('; '), options)
}

/** `a`, `a` and `b`, `a`, `b` and `c` (each as `mqtt.<key>`, in backticks). */
function listed(keys: readonly string[]): string {
  const names = keys.map((key) => `\`mqtt.${key}\``)
  return names.length === 1 ? (names[0] as string) : `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`
}
