/**
 * The peer address of a request, for the abuse limits (issue 15): the socket's, unless the socket is a proxy that
 * `trustProxy` names, whose `X-Forwarded-For` is then believed (its right-most address that is not a trusted proxy:
 * the part left of it is whatever the client wrote). And the key an address is counted under.
 */
import type { IncomingMessage } from 'node:http'
import { BlockList, isIP } from 'node:net'

/**
 * The `trustProxy` list (addresses or CIDRs, IPv4 or IPv6) as a BlockList; a TypeError naming `trustProxy` for an
 * entry that is neither.
 */
export function trustedProxies(list: readonly string[] | undefined): BlockList | undefined {
  if (list === undefined) return undefined
  if (!Array.isArray(list)) throw new TypeError('Expected `trustProxy` to be an array of addresses or CIDRs')
  const trusted = new BlockList()
  for (const entry of list) {
    const [address = '', prefix, more] = String(entry).split('/')
    const family = isIP(address)
    const bits = prefix === undefined ? (family === 4 ? 32 : 128) : Number(prefix)
    if (
      family === 0 ||
      more !== undefined ||
      (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) ||
      !(bits <= (family === 4 ? 32 : 128))
    ) {
      throw new TypeError(`Expected \`trustProxy\` entries to be addresses or CIDRs, got ${JSON.stringify(entry)}`)
    }
    trusted.addSubnet(address, bits, family === 4 ? 'ipv4' : 'ipv6')
  }
  return trusted
}

/**
 * The request's peer: the socket's address, unless that is a trusted proxy; then the right-most address of
 * `X-Forwarded-For` that is not a trusted proxy (the left part is whatever the client wrote).
 */
export function peerAddress(request: IncomingMessage, trusted: BlockList | undefined): string | undefined {
  const socket = request.socket?.remoteAddress
  if (socket === undefined || trusted === undefined || !isTrusted(trusted, socket)) return socket
  const header = request.headers['x-forwarded-for']
  const hops = (Array.isArray(header) ? header.join(',') : (header ?? '')).split(',').map((hop) => hop.trim())
  let peer = socket
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = addressOf(hops[i] as string)
    // Not an address (a name, garbage): nothing further left can be believed; the last proxy is the peer.
    if (hop === undefined) return peer
    peer = hop
    if (!isTrusted(trusted, peer)) break
  }
  return peer
}

/** A forwarded hop as a bare IP address (`1.2.3.4:5678` and `[::1]:80` without their ports), else `undefined`. */
function addressOf(hop: string): string | undefined {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop)
  const withPort = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(hop)
  const address = bracketed?.[1] ?? withPort?.[1] ?? hop
  return isIP(address) === 0 ? undefined : address
}

function isTrusted(trusted: BlockList, address: string): boolean {
  const plain = unmapped(address)
  const family = isIP(plain)
  return family !== 0 && trusted.check(plain, family === 4 ? 'ipv4' : 'ipv6')
}

/** `::ffff:1.2.3.4` (an IPv4 peer of a dual-stack socket) as `1.2.3.4`. */
const unmapped = (address: string) => address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')

/** The counter key of an address: IPv4 as it is, IPv6 by its prefix (`2001:db8:0:1::/64`-like, expanded). */
export function addressKey(address: string, prefixLength: number): string {
  const plain = unmapped(address)
  if (isIP(plain) !== 6) return plain
  const [head = '', tail] = plain.split('%')[0]?.split('::') ?? []
  const groups = (part: string) => (part === '' ? [] : part.split(':'))
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const all = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right].slice(0, 8)
  const kept = all.map((group, i) => {
    const value = Number.parseInt(group, 16) || 0
    const bits = Math.max(0, Math.min(16, prefixLength - 16 * i))
    return (bits === 0 ? 0 : value & (0xffff << (16 - bits)) & 0xffff).toString(16)
  })
  return `${kept.join(':')}/${prefixLength}`
}
