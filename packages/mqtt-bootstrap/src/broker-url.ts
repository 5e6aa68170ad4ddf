/**
 * `connect.host` -> broker URL. A value with a scheme is used as given; a bare `host[:port]` gets `mqtts://` (or
 * `broker.protocol`) and a default port (`broker.port`, else the auth strategy's for mqtts, else the protocol's own).
 *
 * What a valid host is, is one regular expression: the contract's validation and the published JSON Schema both
 * use BROKER_HOST_PATTERN itself, so they cannot disagree.
 */
import type { IClientOptions, MqttProtocol } from 'mqtt'

export const BROKER_PROTOCOLS = ['mqtt', 'mqtts', 'ws', 'wss'] as const
export type BrokerProtocol = (typeof BROKER_PROTOCOLS)[number]

/** How to reach the broker when the provisioning server answers a bare host. */
export interface BrokerOptions {
  /** Scheme for a bare `connect.host`. @default 'mqtts' */
  protocol?: BrokerProtocol
  /** Port for a bare `connect.host` without one. @default the auth strategy's (aliyun 1883, baidu 1884, the others 8883) for mqtts, else 1883 / 8883 / 80 / 443 */
  port?: number
}

export const STANDARD_PORTS: Record<BrokerProtocol, number> = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 }

// A DNS name (labels of up to 63 characters; underscores occur in private names) or an IPv4 literal, or a bracketed
// IPv6 literal, strictly: RFC 3986's IPv6address, what net.isIPv6 accepts (without zone ids). No leading zero in an
// IPv4 octet (net.isIPv4 has none; some parsers read 010 as octal).
const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?'
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])'
const V4 = String.raw`(?:${OCTET}\.){3}${OCTET}`
const H = '[0-9A-Fa-f]{1,4}'
const LS32 = `(?:${H}:${H}|${V4})`
/** Up to `n` groups before a `::` (RFC 3986: `[ *(n-1)( h16 ":" ) h16 ]`). */
const before = (n: number) => `(?:(?:${H}:){0,${n - 1}}${H})?`
const V6 = [
  `(?:${H}:){6}${LS32}`,
  `::(?:${H}:){5}${LS32}`,
  `${before(1)}::(?:${H}:){4}${LS32}`,
  `${before(2)}::(?:${H}:){3}${LS32}`,
  `${before(3)}::(?:${H}:){2}${LS32}`,
  `${before(4)}::${H}:${LS32}`,
  `${before(5)}::${LS32}`,
  `${before(6)}::${H}`,
  `${before(7)}::`,
].join('|')
const HOST = String.raw`(\[(?:${V6})\]|${LABEL}(?:\.${LABEL})*)`
const PORT = `(?::(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?`

// What MQTT forbids in a UTF-8 string (MQTT 3.1.1 section 1.5.3, 5.0 section 1.5.4; mosquitto drops a CONNECT that
// has one, so a device would retry it forever): C0 controls, U+007F, C1 controls (U+0080-U+009F, CSI among them),
// lone surrogates (no UTF-8 encoding) and the 66 noncharacters (U+FDD0-U+FDEF, U+FFFE and U+FFFF of every plane).
//
// These patterns are also JSON Schema `pattern`s, which validators compile with the `u` flag (ajv does) while the
// library compiles them without: each piece below means the same under both. A negated class of BMP characters only
// does; `[\uD800-\uDBFF][\uDC00-\uDFFF]` matches a pair without `u` and can never match with it (a pair is then one
// code point, which the negated class takes); a lone surrogate is refused by both. An astral noncharacter is written
// as two adjacent escapes, which `u` reads as one code point and no `u` as the same two units.
const FORBIDDEN_BMP = String.raw`\u0000-\u001f\u007f-\u009f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff`
const ASTRAL_NONCHARACTERS = Array.from({ length: 16 }, (_, plane) => {
  const high = (0xd83f + plane * 0x40).toString(16)
  return `\\u${high}\\udffe|\\u${high}\\udfff`
}).join('|')

/**
 * One character MQTT allows in a string and `excluded` (class syntax, e.g. `?#`) does not contain, as pattern source
 * (a non-capturing group).
 */
export function mqttCharSource(excluded = ''): string {
  return String.raw`(?:(?!${ASTRAL_NONCHARACTERS})(?:[^${FORBIDDEN_BMP}${excluded}]|[\ud800-\udbff][\udc00-\udfff]))`
}

// A path (for WebSockets), with no query or fragment (mqtt.js reads options such as clientId from a URL's query), no
// space, and nothing MQTT forbids in a string.
const PATH = `(/${mqttCharSource(' ?#')}*)?`

/**
 * A broker address: `mqtt://`, `mqtts://`, `ws://` or `wss://` (any case) + host[:port][/path], or a bare
 * host[:port]. No credentials, query or fragment. Groups: 1 scheme, 2 host, 3 port, 4 path (with a scheme); 5 host,
 * 6 port (bare). No flags, so that it is also a valid JSON Schema `pattern`.
 */
export const BROKER_HOST_PATTERN = new RegExp(
  `^(?:([Mm][Qq][Tt][Tt][Ss]?|[Ww][Ss][Ss]?)://${HOST}${PORT}${PATH}|${HOST}${PORT})$`,
)

/** Longest broker address, in code points (as the contract and JSON Schema's maxLength count). */
export const MAX_HOST_LENGTH = 1024

/**
 * Whether `value` has more than `max` code points, counting no further than `max + 1`: JSON Schema's maxLength counts
 * code points, String.length UTF-16 units (an emoji counts twice).
 */
export function longerThan(value: string, max: number): boolean {
  let count = 0
  for (const _ of value) if (++count > max) return true
  return false
}

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
  if (longerThan(host, MAX_HOST_LENGTH)) return undefined
  const match = BROKER_HOST_PATTERN.exec(host)
  if (match === null) return undefined
  const [, protocol, schemeHost, schemePort, path, bareHost, barePort] = match
  const name = (schemeHost ?? bareHost) as string // one of the two alternatives matched
  const hostname = name.startsWith('[') ? name.slice(1, -1) : name
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
  if (longerThan(host, MAX_HOST_LENGTH)) return `is longer than ${MAX_HOST_LENGTH} characters`
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

/** Point an mqtt.js client (its `client.options`) at another broker: it reads these fields when it builds the next stream. */
export function retargetClient(options: IClientOptions, url: string, servername: string | undefined): void {
  const target = parseBrokerHost(url) // a URL from brokerUrl(): it has a scheme
  if (target?.protocol === undefined) return
  options.protocol = target.protocol as MqttProtocol
  options.defaultProtocol = target.protocol as MqttProtocol
  options.host = target.hostname
  options.hostname = target.hostname
  options.port = target.port ?? STANDARD_PORTS[target.protocol]
  if (target.protocol.startsWith('ws')) options.path = target.path ?? '/'
  // mqtt.js derives the TLS server name from the first host and keeps it: derive it again for the new one.
  if (servername === undefined) delete options.servername
}
