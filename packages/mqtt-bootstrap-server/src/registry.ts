/**
 * A device registry in one JSON file, for the demo, `mqtt-bootstrap serve` and small fleets:
 *
 * ```json
 * { "version": 1,
 *   "defaults": { "connect": { "host": "mqtts://broker.example.com:8883", "qos": 1, "cleanSession": 1 } },
 *   "devices": [
 *     { "match": { "imei": "860000000000001" },
 *       "device": { "productKey": "a1PK", "deviceName": "meter-1", "deviceSecret": "…" } },
 *     { "match": { "imei": "860000000000666" }, "refuse": "10003" } ] }
 * ```
 * A request matches an entry when every field of `match` equals the same field of the request's data; the first
 * match wins. `refuse` answers that code instead. The file is checked when loaded and reloaded when it changes.
 */
import { readFileSync, statSync } from 'node:fs'
import { parseDeviceConfig } from 'mqtt-bootstrap/contract'
import * as v from 'valibot'
import { type Resolution, refusalCodeProblem } from './handler.js'

const Scalar = v.union([v.string(), v.number(), v.boolean()])
const Connect = v.object({
  host: v.optional(v.string()),
  qos: v.optional(v.number()),
  cleanSession: v.optional(v.union([v.number(), v.boolean()])),
})
const Entry = v.object({
  match: v.pipe(
    v.record(v.string(), Scalar),
    v.check((m) => Object.keys(m).length > 0, 'must name at least one field'),
  ),
  device: v.optional(v.record(v.string(), v.unknown())),
  connect: v.optional(Connect),
  refuse: v.optional(v.pipe(v.string(), v.minLength(1))),
})
const RegistryFile = v.object({
  version: v.literal(1),
  defaults: v.optional(v.object({ connect: v.optional(Connect) })),
  devices: v.array(Entry),
})

type RegistryContent = v.InferOutput<typeof RegistryFile>
type Entry = RegistryContent['devices'][number]

/** The entries whose `match` names the same fields, by their values: a lookup is one Map get per such group. */
interface Group {
  fields: readonly string[]
  /** The values of `fields`, typed (see tupleKey) -> the first entry with those values. */
  first: Map<string, number>
}

interface Loaded {
  content: RegistryContent
  groups: readonly Group[]
}

export class DeviceRegistry {
  readonly path: string
  #loaded: Loaded
  #mtimeMs: number

  /** Reads and checks the file now: a bad registry is an error at start-up, not at the first request. */
  constructor(path: string) {
    this.path = path
    this.#mtimeMs = statSync(path).mtimeMs
    this.#loaded = load(path)
  }

  /** The number of device entries. */
  get size(): number {
    return this.#loaded.content.devices.length
  }

  /** The request fields the entries match on (e.g. `imei`): what identifies a device, for logs. */
  get matchFields(): readonly string[] {
    return [...new Set(this.#loaded.groups.flatMap((group) => group.fields))]
  }

  /** The configuration (or refusal) for a request's data; `undefined` for an unknown device. */
  resolve = (data: unknown): Resolution | undefined => {
    this.#reloadIfChanged()
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined
    const { content, groups } = this.#loaded
    const entry = firstMatch(content.devices, groups, data as Record<string, unknown>)
    if (entry === undefined) return undefined
    if (entry.refuse !== undefined) return { code: entry.refuse }
    return { device: entry.device ?? {}, connect: { ...content.defaults?.connect, ...entry.connect } }
  }

  #reloadIfChanged(): void {
    const mtimeMs = statSync(this.path).mtimeMs
    if (mtimeMs === this.#mtimeMs) return
    this.#loaded = load(this.path) // throws on a bad edit: the handler answers "77777" and keeps running
    this.#mtimeMs = mtimeMs
  }
}

/**
 * The first entry (in file order) all of whose `match` fields equal (===) the request's own fields: per group, the
 * request's values for the group's fields make one key; the smallest entry index found wins.
 */
function firstMatch(devices: readonly Entry[], groups: readonly Group[], fields: Record<string, unknown>) {
  let best = Number.POSITIVE_INFINITY
  for (const group of groups) {
    const values: unknown[] = []
    for (const name of group.fields) {
      if (!Object.hasOwn(fields, name)) break
      values.push(fields[name])
    }
    if (values.length !== group.fields.length) continue
    const key = tupleKey(values)
    const index = key === undefined ? undefined : group.first.get(key)
    if (index !== undefined && index < best) best = index
  }
  return best === Number.POSITIVE_INFINITY ? undefined : devices[best]
}

/**
 * One string per tuple of scalars, equal exactly when the values are === pairwise: each value is tagged with its type
 * and its length (so `"1"` and `1`, or `["a,b"]` and `["a","b"]`, differ); `undefined` when a value is no scalar
 * (an object or null equals no value `match` can hold).
 */
function tupleKey(values: readonly unknown[]): string | undefined {
  let key = ''
  for (const value of values) {
    let text: string
    if (typeof value === 'string') text = `s${value}`
    else if (typeof value === 'number')
      text = `n${value}` // String(-0) is "0", and -0 === 0; NaN is not in JSON
    else if (typeof value === 'boolean') text = `b${value}`
    else return undefined
    key += `${text.length}:${text}`
  }
  return key
}

function indexOf(devices: readonly Entry[]): Group[] {
  const groups = new Map<string, Group>()
  devices.forEach((entry, index) => {
    const fields = Object.keys(entry.match).sort()
    const id = JSON.stringify(fields)
    let group = groups.get(id)
    if (group === undefined) {
      group = { fields, first: new Map() }
      groups.set(id, group)
    }
    const key = tupleKey(fields.map((name) => entry.match[name])) as string // match values are scalars (checked)
    if (!group.first.has(key)) group.first.set(key, index)
  })
  return [...groups.values()]
}

function load(path: string): Loaded {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (cause) {
    throw new TypeError(`device registry ${path} is not readable`, { cause }) // an fs error: path and errno only
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    // No `cause`, and not V8's message: both quote the text around the error, secrets included.
    const { line, column } = lineAndColumn(text, syntaxErrorOffset(text))
    throw new TypeError(`device registry ${path} is not readable JSON: syntax error at line ${line}, column ${column}`)
  }
  const parsed = v.safeParse(RegistryFile, json)
  if (!parsed.success) {
    const issue = parsed.issues[0]
    throw new TypeError(
      `device registry ${path}: ${v.getDotPath(issue) ?? '(root)'} is invalid (${issue.expected ?? issue.type})`,
    )
  }
  // Each entry that answers must make a valid configuration, with the defaults: found now, not by a device.
  parsed.output.devices.forEach((entry, index) => {
    const raw = (json as { devices: Array<{ match: object }> }).devices[index]
    // valibot's record drops keys such as __proto__: a match that lost a field would match more devices than written.
    if (Object.keys(raw?.match ?? {}).length !== Object.keys(entry.match).length) {
      throw new TypeError(
        `device registry ${path}: devices.${index}.match has a key that cannot be matched (__proto__, constructor, prototype)`,
      )
    }
    if (entry.refuse !== undefined) {
      const problem = refusalCodeProblem(entry.refuse)
      if (problem !== undefined) throw new TypeError(`device registry ${path}: devices.${index}.refuse ${problem}`)
      return
    }
    const config = parseDeviceConfig({
      device: entry.device,
      connect: { ...parsed.output.defaults?.connect, ...entry.connect },
    })
    if (!config.ok) throw new TypeError(`device registry ${path}: devices.${index} ${config.problem}`)
  })
  return { content: parsed.output, groups: indexOf(parsed.output.devices) }
}

/** 1-based line and column (in UTF-16 units) of `offset` in `text`. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let start = 0
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++
    start = i + 1
  }
  return { line, column: offset - start + 1 }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y

/**
 * Where the first syntax error of `text` is (its length when the text ends too early), by a scan of the JSON grammar
 * without recursion (a deeply nested file cannot overflow the stack). V8's messages give no position for most errors
 * (`Unexpected token`), and quote the text: the position is found here instead.
 */
export function syntaxErrorOffset(text: string): number {
  const open: string[] = [] // the closing bracket of each container the scan is in
  let i = 0
  const skipSpace = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
  }
  /** Past a string at i; false at an error (i is then where it is). */
  const string = (): boolean => {
    if (text[i] !== '"') return false
    i++
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c === 0x22) {
        i++
        return true
      }
      if (c < 0x20) return false
      if (c === 0x5c) {
        ESCAPE.lastIndex = i
        if (!ESCAPE.test(text)) return false
        i = ESCAPE.lastIndex
      } else i++
    }
    return false
  }
  /** Past a string, number or literal at i; false at an error. */
  const scalar = (): boolean => {
    if (text[i] === '"') return string()
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) {
        i += literal.length
        return true
      }
    }
    NUMBER.lastIndex = i
    if (!NUMBER.test(text)) return false
    i = NUMBER.lastIndex
    return true
  }
  let next: 'value' | 'member' | 'after' = 'value'
  for (;;) {
    if (next === 'after') {
      skipSpace()
      const close = open.at(-1)
      if (close === undefined) return i // a complete value, then more text (or the end: nothing was wrong)
      if (text[i] === close) {
        open.pop()
        i++
      } else if (text[i] === ',') {
        i++
        next = close === '}' ? 'member' : 'value'
      } else return i
      continue
    }
    skipSpace()
    if (next === 'member') {
      if (!string()) return i
      skipSpace()
      if (text[i] !== ':') return i
      i++
      skipSpace()
    }
    const c = text[i]
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']'
      i++
      skipSpace()
      if (text[i] === close) {
        i++
        next = 'after'
      } else {
        open.push(close)
        next = close === '}' ? 'member' : 'value'
      }
    } else if (scalar()) next = 'after'
    else return i
  }
}
