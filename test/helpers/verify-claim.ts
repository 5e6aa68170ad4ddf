/**
 * An implementation of RFC 9421 verification (hmac-sha256) independent of the one the product signs with: no
 * http-message-signatures, no structured-headers. Signature-Input and Signature are parsed here as RFC 8941 says (as
 * far as signatures need: dictionaries of inner lists and byte sequences, parameters of strings, tokens, integers and
 * booleans), the signature base is rebuilt per RFC 9421 §2.5 from the request as the server received it, and the HMAC
 * is node:crypto's. Content-Digest (RFC 9530) is checked against the body's bytes as they arrived.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

export type BareItem = string | number | boolean | Uint8Array | { token: string }
export type Params = Map<string, BareItem>
export interface Item {
  value: BareItem
  params: Params
}
export interface InnerList {
  items: Item[]
  params: Params
}
export type Member = Item | InnerList

/** An RFC 8941 Dictionary (§4.2.2), in order. Throws on anything that is not one. */
export function parseDictionary(input: string): Map<string, Member> {
  const p = new Parser(input)
  const members = new Map<string, Member>()
  p.skip(' ')
  while (!p.done()) {
    const key = p.key()
    if (p.peek() === '=') {
      p.pos++
      members.set(key, p.peek() === '(' ? p.innerList() : p.item())
    } else {
      members.set(key, { value: true, params: p.params() })
    }
    p.skip(' \t')
    if (p.done()) break
    p.expect(',')
    p.skip(' \t')
    if (p.done()) throw new SyntaxError('a trailing comma')
  }
  return members
}

class Parser {
  pos = 0
  constructor(readonly text: string) {}

  done = () => this.pos >= this.text.length
  peek = () => this.text[this.pos] ?? ''

  skip(chars: string): void {
    while (!this.done() && chars.includes(this.peek())) this.pos++
  }

  expect(char: string): void {
    if (this.peek() !== char) throw new SyntaxError(`expected ${char} at ${this.pos} in ${this.text}`)
    this.pos++
  }

  key(): string {
    const match = /^[a-z*][a-z0-9_\-.*]*/.exec(this.text.slice(this.pos))
    if (match === null) throw new SyntaxError(`a key expected at ${this.pos}`)
    this.pos += match[0].length
    return match[0]
  }

  innerList(): InnerList {
    this.expect('(')
    const items: Item[] = []
    for (;;) {
      this.skip(' ')
      if (this.peek() === ')') break
      items.push(this.item())
      if (this.peek() !== ' ' && this.peek() !== ')')
        throw new SyntaxError('items of an inner list are space-separated')
    }
    this.expect(')')
    return { items, params: this.params() }
  }

  item(): Item {
    return { value: this.bareItem(), params: this.params() }
  }

  params(): Params {
    const params: Params = new Map()
    while (this.peek() === ';') {
      this.pos++
      this.skip(' ')
      const key = this.key()
      let value: BareItem = true
      if (this.peek() === '=') {
        this.pos++
        value = this.bareItem()
      }
      params.set(key, value)
    }
    return params
  }

  bareItem(): BareItem {
    const c = this.peek()
    const rest = this.text.slice(this.pos)
    if (c === '"') return this.string()
    if (c === ':') {
      const match = /^:([A-Za-z0-9+/=]*):/.exec(rest)
      if (match === null) throw new SyntaxError('a byte sequence expected')
      this.pos += match[0].length
      return new Uint8Array(Buffer.from(match[1] ?? '', 'base64'))
    }
    if (c === '?') {
      const match = /^\?[01]/.exec(rest)
      if (match === null) throw new SyntaxError('a boolean expected')
      this.pos += 2
      return match[0] === '?1'
    }
    const integer = /^-?[0-9]{1,15}(?![0-9.])/.exec(rest)
    if (integer !== null) {
      this.pos += integer[0].length
      return Number(integer[0])
    }
    const token = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(rest)
    if (token !== null) {
      this.pos += token[0].length
      return { token: token[0] }
    }
    throw new SyntaxError(`an item expected at ${this.pos} in ${this.text}`)
  }

  string(): string {
    this.expect('"')
    let out = ''
    for (;;) {
      if (this.done()) throw new SyntaxError('an unterminated string')
      const c = this.text[this.pos++] as string
      if (c === '"') return out
      if (c === '\\') {
        const next = this.text[this.pos++]
        if (next !== '"' && next !== '\\') throw new SyntaxError('a bad escape in a string')
        out += next
      } else if (c < ' ' || c > '~') {
        throw new SyntaxError('a string holds only printable ASCII')
      } else {
        out += c
      }
    }
  }
}

/** RFC 8941 §4.1 serialisation of what the parser gives (for the `@signature-params` line of the base). */
export function serializeInnerList(list: InnerList): string {
  return `(${list.items.map((item) => bare(item.value) + serializeParams(item.params)).join(' ')})${serializeParams(list.params)}`
}

function serializeParams(params: Params): string {
  let out = ''
  for (const [key, value] of params) out += value === true ? `;${key}` : `;${key}=${bare(value)}`
  return out
}

function bare(value: BareItem): string {
  if (typeof value === 'string') return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`
  if (typeof value === 'number') return String(value)
  if (typeof value === 'boolean') return value ? '?1' : '?0'
  if (value instanceof Uint8Array) return `:${Buffer.from(value).toString('base64')}:`
  return value.token
}

/** A request as a server received it: the target URI it rebuilds, the fields as they came, the body's bytes. */
export interface ReceivedRequest {
  method: string
  /** The target URI as the server knows it: `https://` + Host + request target (RFC 9421 §2.2.2). */
  targetUri: string
  headers: IncomingHttpHeaders | Record<string, string>
  body: string | Buffer
}

export interface VerifiedSignature {
  label: string
  /** The covered component identifiers, in order (their names, without quotes). */
  components: string[]
  params: Record<string, BareItem>
  /** The signature base this verifier rebuilt and checked. */
  base: string
}

/** A field's value as RFC 9421 §2.1 takes it: its values trimmed and joined with ", ". Throws when absent. */
function field(headers: ReceivedRequest['headers'], name: string): string {
  const value = (headers as Record<string, string | string[] | undefined>)[name]
  if (value === undefined) throw new Error(`the request has no ${name} field`)
  return (Array.isArray(value) ? value : [value]).map((v) => v.trim()).join(', ')
}

function componentValue(request: ReceivedRequest, name: string): string {
  const url = new URL(request.targetUri)
  switch (name) {
    case '@method':
      return request.method
    case '@target-uri':
      return request.targetUri
    case '@authority':
      return url.host
    case '@scheme':
      return url.protocol.slice(0, -1)
    case '@path':
      return url.pathname
    case '@query':
      return url.search === '' ? '?' : url.search
    default:
      if (name.startsWith('@')) throw new Error(`derived component ${name} is not supported here`)
      return field(request.headers, name)
  }
}

/**
 * Verify the signature labelled `label` (the only one, when not given) with HMAC-SHA256 under `key`: rebuilds the
 * base, compares in constant time. Throws an Error saying why when it does not verify.
 */
export function verifyHmacSignature(request: ReceivedRequest, key: Uint8Array, label?: string): VerifiedSignature {
  const inputs = parseDictionary(field(request.headers, 'signature-input'))
  const signatures = parseDictionary(field(request.headers, 'signature'))
  const name = label ?? (inputs.size === 1 ? [...inputs.keys()][0] : undefined)
  if (name === undefined) throw new Error(`expected one signature, got ${inputs.size}`)
  const input = inputs.get(name)
  const signature = signatures.get(name)
  if (input === undefined || !('items' in input)) throw new Error(`no inner list ${name} in Signature-Input`)
  if (signature === undefined || !('value' in signature) || !(signature.value instanceof Uint8Array)) {
    throw new Error(`no byte sequence ${name} in Signature`)
  }
  const components: string[] = []
  const lines: string[] = []
  for (const item of input.items) {
    if (typeof item.value !== 'string') throw new Error('a component identifier is a string')
    if (item.params.size > 0) throw new Error('component parameters are not supported here')
    if (components.includes(item.value)) throw new Error(`component ${item.value} covered twice`)
    components.push(item.value)
    lines.push(`"${item.value}": ${componentValue(request, item.value)}`)
  }
  lines.push(`"@signature-params": ${serializeInnerList(input)}`)
  const base = lines.join('\n')
  const expected = createHmac('sha256', key).update(base, 'utf8').digest()
  const got = Buffer.from(signature.value)
  if (got.length !== expected.length || !timingSafeEqual(got, expected))
    throw new Error('the signature does not verify')
  return { label: name, components, params: Object.fromEntries(input.params), base }
}

/** Check Content-Digest (RFC 9530) against the body's bytes: its sha-256 member. Throws when it does not match. */
export function verifyContentDigest(request: ReceivedRequest): void {
  const digests = parseDictionary(field(request.headers, 'content-digest'))
  const sha256 = digests.get('sha-256')
  if (sha256 === undefined || !('value' in sha256) || !(sha256.value instanceof Uint8Array)) {
    throw new Error('no sha-256 byte sequence in Content-Digest')
  }
  const actual = createHash('sha256').update(request.body).digest()
  if (!actual.equals(Buffer.from(sha256.value))) throw new Error('Content-Digest does not match the body')
}

/** Both checks, the request as a test HTTPS server recorded it (`path` and Host give the target URI). */
export function verifyClaim(
  recorded: { method: string; path: string; headers: IncomingHttpHeaders; body: string },
  key: Uint8Array,
): VerifiedSignature {
  const request = {
    method: recorded.method,
    targetUri: `https://${recorded.headers.host}${recorded.path}`,
    headers: recorded.headers,
    body: recorded.body,
  }
  verifyContentDigest(request)
  return verifyHmacSignature(request, key)
}
