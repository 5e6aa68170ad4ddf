/**
 * `connect.host` -> broker URL. A value with a scheme is used as given; a bare `host[:port]` gets `mqtts://` (or
 * `broker.protocol`) and a default port (`broker.port`, else the auth strategy's for mqtts, else the protocol's own).
 */

export const BROKER_PROTOCOLS = ['mqtt', 'mqtts', 'ws', 'wss'] as const
export type BrokerProtocol = (typeof BROKER_PROTOCOLS)[number]

/** How to reach the broker when the provisioning server answers a bare host. */
export interface BrokerOptions {
  /** Scheme for a bare `connect.host`. @default 'mqtts' */
  protocol?: BrokerProtocol
  /** Port for a bare `connect.host` without one. @default the auth strategy's (aliyun 1883, plain 8883) for mqtts, else 1883 / 8883 / 80 / 443 */
  port?: number
}

export const STANDARD_PORTS: Record<BrokerProtocol, number> = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 }
const SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i
// A DNS name or IPv4 literal (underscores occur in private names); IPv6 comes bracketed.
const HOSTNAME = /^(?:\[[0-9a-f:.]+\]|[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?)$/i

export const MAX_HOST_LENGTH = 1024

/** Why `host` cannot be a broker address, or `undefined` when it can. Never echoes the value. */
export function brokerHostProblem(host: string): string | undefined {
  if (host.length === 0) return 'is empty'
  if (host.length > MAX_HOST_LENGTH) return `is longer than ${MAX_HOST_LENGTH} characters`
  const scheme = SCHEME.exec(host)?.[1]?.toLowerCase()
  if (scheme !== undefined && !(BROKER_PROTOCOLS as readonly string[]).includes(scheme)) {
    return `has an unsupported scheme (expected one of ${BROKER_PROTOCOLS.join(', ')})`
  }
  let url: URL
  try {
    url = new URL(scheme === undefined ? `mqtts://${host}` : host)
  } catch {
    return 'is not a valid host or URL'
  }
  if (!HOSTNAME.test(url.hostname)) return 'has an invalid host name'
  if (url.username !== '' || url.password !== '') return 'must not carry credentials'
  // mqtt.js reads options such as clientId from a URL's query, which would override the signed ones.
  if (url.search !== '' || url.hash !== '') return 'must not have a query or fragment'
  if (scheme === undefined && url.pathname !== '') return 'must be host[:port] when it has no scheme'
  return undefined
}

/**
 * The broker URL for a provisioned `connect.host` (already validated by the contract).
 * @param strategyPort the auth strategy's default port for a bare host over mqtts
 */
export function brokerUrl(host: string, broker: BrokerOptions, strategyPort: number): string {
  if (SCHEME.test(host)) return host
  const protocol = broker.protocol ?? 'mqtts'
  const url = new URL(`${protocol}://${host}`)
  const fallback = protocol === 'mqtts' ? strategyPort : STANDARD_PORTS[protocol]
  const port = url.port === '' ? (broker.port ?? fallback) : Number(url.port)
  return `${protocol}://${url.hostname}:${port}`
}

/** `mqtt://` -> `mqtts://`, `ws://` -> `wss://`; other URLs unchanged. */
export function upgradeToTls(url: string): string {
  return url.replace(/^mqtt:\/\//i, 'mqtts://').replace(/^ws:\/\//i, 'wss://')
}

/** Whether the connection to `url` runs over TLS (Alibaba's `securemode` depends on it). */
export function isSecureBrokerUrl(url: string): boolean {
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase()
  return scheme === 'mqtts' || scheme === 'wss' || scheme === 'ssl' || scheme === 'wxs' || scheme === 'alis'
}
