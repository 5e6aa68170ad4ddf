/**
 * The bytes of one stored MQTT packet, as FileMessageStore writes it at the start of its messageId's slot file:
 *
 *   "MQBP" | version 1 (1 byte) | record length L (uint32 BE) | seq (uint32 BE, high) (uint32 BE, low) |
 *   header length H (uint32 BE) | header (H bytes of JSON) | payload | CRC-32 (uint32 BE) of the L - 4 bytes before it
 *
 * A slot file is written over in place (a QoS 2 pubrel over its publish), so it may hold the tail of a longer, older
 * record after L bytes: ignored. Deleting a packet writes {@link TOMBSTONE} over the magic (four bytes, within one
 * sector: written whole or not at all). `seq` orders the packets as they were put, across restarts.
 *
 * The header is the packet less its payload (cmd, messageId, qos, dup, retain, topic, properties), Buffers in the
 * properties (correlationData, authenticationData) as `{ "\u0000b64": "<base64>" }`, and `payload`: whether the
 * payload was a string, bytes or absent, so that it is handed back as it was given. The checksum is node:zlib's CRC-32
 * (what LevelDB and ext4's journal guard their records with: the errors to catch are torn and cut-short writes and
 * damaged sectors, not an adversary, who could rewrite any checksum): a record that is not whole is told from a whole
 * one and never handed to mqtt.js. It costs 0.3 µs a record where a SHA-256 costs 2.4 µs (the publish rate is the
 * store's figure of merit: docs/durable-session.md).
 */
import type { IStore } from 'mqtt'

const MAGIC = Buffer.from('MQBP', 'latin1')
/** What the slot of a deleted packet starts with. */
export const TOMBSTONE = Buffer.from('MQBX', 'latin1')
const VERSION = 1
const LENGTH_AT = MAGIC.length + 1
const SEQ_AT = LENGTH_AT + 4
const HEADER_LENGTH_AT = SEQ_AT + 8
const PREFIX = HEADER_LENGTH_AT + 4
const DIGEST = 4
const BUFFER_KEY = '\u0000b64'

/** A packet as mqtt.js hands it to a store (mqtt-packet's `Packet`, which mqtt does not re-export). */
export type Packet = Parameters<IStore['put']>[0]

/**
 * The packets mqtt.js keeps in its stores: outgoing publishes (QoS 1 and 2) and pubrels, incoming QoS 2 publishes.
 * Anything else (a pubrec, a QoS 0 publish) would be sent on a resend and wait for an acknowledgement that never
 * comes, stalling the resend: it is no record of ours.
 */
const STORED_COMMANDS: ReadonlySet<string> = new Set(['publish', 'pubrel'])

type PayloadKind = 'string' | 'bytes' | 'none'

/** The record of `packet`, put as number `seq`. */
export function encodePacket(packet: Packet, seq: number): Buffer {
  const { payload } = packet as { payload?: unknown }
  let kind: PayloadKind = 'none'
  let body: Buffer | undefined
  if (typeof payload === 'string') {
    kind = 'string'
    body = Buffer.from(payload, 'utf8')
  } else if (payload instanceof Uint8Array) {
    kind = 'bytes'
    body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  }
  const header = Buffer.from(JSON.stringify(headerOf(packet, kind)), 'utf8')
  const bodyLength = body?.length ?? 0
  const record = Buffer.allocUnsafe(PREFIX + header.length + bodyLength + DIGEST)
  MAGIC.copy(record)
  record.writeUInt8(VERSION, MAGIC.length)
  record.writeUInt32BE(record.length, LENGTH_AT)
  record.writeUInt32BE(Math.floor(seq / 2 ** 32), SEQ_AT)
  record.writeUInt32BE(seq % 2 ** 32, SEQ_AT + 4)
  record.writeUInt32BE(header.length, HEADER_LENGTH_AT)
  header.copy(record, PREFIX)
  body?.copy(record, PREFIX + header.length)
  const end = record.length - DIGEST
  record.writeUInt32BE(crc32(record.subarray(0, end)), end)
  return record
}

/**
 * The packet's fields but its payload, and what its payload was. Buffers are found only among the MQTT 5 properties
 * (correlationData, authenticationData): they alone are looked at, so that the common packet is stringified without
 * a replacer (twice as fast).
 */
function headerOf(packet: Packet, kind: PayloadKind): Record<string, unknown> {
  const header: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(packet)) {
    if (key === 'payload') continue
    header[key] = key === 'properties' && typeof value === 'object' && value !== null ? withBase64(value) : value
  }
  header.payload = kind
  return header
}

function withBase64(properties: object): Record<string, unknown> {
  const copy: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(properties)) {
    copy[key] = value instanceof Uint8Array ? { [BUFFER_KEY]: Buffer.from(value).toString('base64') } : value
  }
  return copy
}

const crc32 = (bytes: Buffer): number => process.getBuiltinModule('node:zlib').crc32(bytes)

/**
 * The packet in a slot file's (non-empty) bytes, or `undefined` when they are not a whole record of this format for
 * `messageId` (cut short, torn, damaged, another version, another packet's): the caller sets the file aside.
 */
export function decodePacket(bytes: Buffer, messageId: number): { packet: Packet; seq: number } | undefined {
  if (bytes.length < PREFIX + DIGEST || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) return undefined
  if (bytes.readUInt8(MAGIC.length) !== VERSION) return undefined
  const length = bytes.readUInt32BE(LENGTH_AT)
  if (length < PREFIX + DIGEST || length > bytes.length) return undefined
  const end = length - DIGEST
  if (crc32(bytes.subarray(0, end)) !== bytes.readUInt32BE(end)) return undefined
  const seq = bytes.readUInt32BE(SEQ_AT) * 2 ** 32 + bytes.readUInt32BE(SEQ_AT + 4)
  const headerLength = bytes.readUInt32BE(HEADER_LENGTH_AT)
  if (PREFIX + headerLength > end) return undefined
  let header: unknown
  try {
    header = JSON.parse(bytes.subarray(PREFIX, PREFIX + headerLength).toString('utf8'), base64AsBytes)
  } catch {
    return undefined
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return undefined
  const { payload: kind, ...packet } = header as Record<string, unknown>
  if (typeof packet.cmd !== 'string' || !STORED_COMMANDS.has(packet.cmd) || packet.messageId !== messageId) {
    return undefined
  }
  const body = bytes.subarray(PREFIX + headerLength, end)
  if (kind === 'string') packet.payload = body.toString('utf8')
  else if (kind === 'bytes')
    packet.payload = Buffer.from(body) // a copy: the file's buffer is not kept alive
  else if (kind !== 'none' || body.length > 0) return undefined
  if (packet.cmd === 'publish' && (typeof packet.topic !== 'string' || (packet.qos !== 1 && packet.qos !== 2))) {
    return undefined
  }
  return { packet: packet as unknown as Packet, seq }
}

function base64AsBytes(_key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  const text = (value as Record<string, unknown>)[BUFFER_KEY]
  return typeof text === 'string' && Object.keys(value).length === 1 ? Buffer.from(text, 'base64') : value
}
