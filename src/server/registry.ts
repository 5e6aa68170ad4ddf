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
import * as v from 'valibot'
import { parseDeviceConfig } from '../contract.js'
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

export class DeviceRegistry {
  readonly path: string
  #content: RegistryContent
  #mtimeMs: number

  /** Reads and checks the file now: a bad registry is an error at start-up, not at the first request. */
  constructor(path: string) {
    this.path = path
    this.#mtimeMs = statSync(path).mtimeMs
    this.#content = load(path)
  }

  /** The number of device entries. */
  get size(): number {
    return this.#content.devices.length
  }

  /** The configuration (or refusal) for a request's data; `undefined` for an unknown device. */
  resolve = (data: unknown): Resolution | undefined => {
    this.#reloadIfChanged()
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined
    const fields = data as Record<string, unknown>
    const entry = this.#content.devices.find((candidate) =>
      Object.entries(candidate.match).every(([key, value]) => Object.hasOwn(fields, key) && fields[key] === value),
    )
    if (entry === undefined) return undefined
    if (entry.refuse !== undefined) return { code: entry.refuse }
    return { device: entry.device ?? {}, connect: { ...this.#content.defaults?.connect, ...entry.connect } }
  }

  #reloadIfChanged(): void {
    const mtimeMs = statSync(this.path).mtimeMs
    if (mtimeMs === this.#mtimeMs) return
    this.#content = load(this.path) // throws on a bad edit: the handler answers "77777" and keeps running
    this.#mtimeMs = mtimeMs
  }
}

function load(path: string): RegistryContent {
  let json: unknown
  try {
    json = JSON.parse(readFileSync(path, 'utf8'))
  } catch (cause) {
    throw new TypeError(`device registry ${path} is not readable JSON`, { cause })
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
  return parsed.output
}
