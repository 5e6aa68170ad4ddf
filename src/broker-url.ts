/**
 * `connect.host` -> broker URL. A value with a scheme is used as given; a bare `host[:port]` gets `mqtts://` (or
 * `broker.protocol`) and a default port (`broker.port`, else the auth strategy's for mqtts, else the protocol's own).
 *
 * What a valid host is, is one regular expression: the contract's validation and the published JSON Schema both
 * use BROKER_HOST_PATTERN itself, so they cannot disagree.
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

// A DNS name (labels of up to 63 characters; underscores occur in private names) or an IPv4 literal, or a bracketed
// IPv6 literal, strictly (what net.isIPv6 accepts, without zone ids).
const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?'
const V4 = String.raw`(?:(?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9])\.){3}(?:25[0-5]|(?:2[0-4]|1?[0-9])?[0-9])`
const H = '[0-9A-Fa-f]{1,4}'
const V6 = [
  `(?:${H}:){7}${H}`,
  `(?:${H}:){1,7}:`,
  `(?:${H}:){1,6}:${H}`,
  `(?:${H}:){1,5}(?::${H}){1,2}`,
  `(?:${H}:){1,4}(?::${H}){1,3}`,
  `(?:${H}:){1,3}(?::${H}){1,4}`,
  `(?:${H}:){1,2}(?::${H}){1,5}`,
  `${H}:(?::${H}){1,6}`,
  `:(?:(?::${H}){1,7}|:)`,
  `(?:${H}:){6}${V4}`,
  `::(?:[Ff]{4}(?::0{1,4})?:)?${V4}`,
  `(?:${H}:){1,5}:${V4}`,
].join('|')
const HOST = String.raw`(\[(?:${V6})\]|${LABEL}(?:\.${LABEL})*)`
const PORT = `(?::(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?`
// A path (for WebSockets), with no query or fragment: mqtt.js reads options such as clientId from a URL's query.
const PATH = String.raw`(/[^\u0000-\u0020?#\u007f]*)?`

/**
 * A broker address: `mqtt://`, `mqtts://`, `ws://` or `wss://` (any case) + host[:port][/path], or a bare
 * host[:port]. No credentials, query or fragment. Groups: 1 scheme, 2 host, 3 port, 4 path (with a scheme); 5 host,
 * 6 port (bare). No flags, so that it is also a valid JSON Schema `pattern`.
 */
export const BROKER_HOST_PATTERN = new RegExp(
  `^(?:([Mm][Qq][Tt][Tt][Ss]?|[Ww][Ss][Ss]?)://${HOST}${PORT}${PATH}|${HOST}${PORT})$`,
)

export const MAX_HOST_LENGTH = 1024

export interface BrokerAddress {
  /** Absent for a bare host. */
  protocol: BrokerProtocol | undefined
  /** Brackets removed from an IPv6 literal. */
  hostname: string
  port: number | undefined
  path: string | undefined
}

/** The parts of a valid broker address, or `undefined`. */
export function parseBrokerHost(host: string): BrokerAddress | undefined {
  const known = recentHosts.get(host)
  if (known !== undefined) return known
  const parsed = parse(host)
  if (parsed !== undefined) {
    if (recentHosts.size >= 64) recentHosts.clear()
    recentHosts.set(host, parsed)
  }
  return parsed
}

/** A pure function's memo (the pattern is long; a device asks about the same host on every boot and reconnect). */
const recentHosts = new Map<string, BrokerAddress>()

function parse(host: string): BrokerAddress | undefined {
  if (host.length > MAX_HOST_LENGTH) return undefined
  const match = BROKER_HOST_PATTERN.exec(host)
  if (match === null) return undefined
  const [, protocol, schemeHost, schemePort, path, bareHost, barePort] = match
  const hostname = (schemeHost ?? bareHost ?? '').replace(/^\[(.*)\]$/, '$1')
  const port = schemePort ?? barePort
  return Object.freeze({
    protocol: protocol?.toLowerCase() as BrokerProtocol | undefined,
    hostname,
    port: port === undefined ? undefined : Number(port),
    path,
  })
}

/** Why `host` cannot be a broker address, or `undefined` when it can. Never echoes the value. */
export function brokerHostProblem(host: string): string | undefined {
  if (host.length === 0) return 'is empty'
  if (host.length > MAX_HOST_LENGTH) return `is longer than ${MAX_HOST_LENGTH} characters`
  return parseBrokerHost(host) === undefined ? 'is not an mqtt(s)/ws(s) URL or host[:port]' : undefined
}

/**
 * The broker URL for a provisioned `connect.host` (already validated by the contract).
 * @param strategyPort the auth strategy's default port for a bare host over mqtts
 */
export function brokerUrl(host: string, broker: BrokerOptions, strategyPort: number): string {
  const address = parseBrokerHost(host)
  if (address === undefined) throw new TypeError('connect.host is not a broker address')
  if (address.protocol !== undefined) return host
  const protocol = broker.protocol ?? 'mqtts'
  const fallback = protocol === 'mqtts' ? strategyPort : STANDARD_PORTS[protocol]
  const hostname = address.hostname.includes(':') ? `[${address.hostname}]` : address.hostname
  return `${protocol}://${hostname}:${address.port ?? broker.port ?? fallback}`
}

/** `mqtt://` -> `mqtts://`, `ws://` -> `wss://`; other URLs unchanged. */
export function upgradeToTls(url: string): string {
  return url.replace(/^mqtt:\/\//i, 'mqtts://').replace(/^ws:\/\//i, 'wss://')
}

/** Whether the connection to `url` runs over TLS (Alibaba's `securemode` depends on it). */
export function isSecureBrokerUrl(url: string): boolean {
  return /^(mqtts|wss|ssl|wxs|alis):\/\//i.test(url)
}
