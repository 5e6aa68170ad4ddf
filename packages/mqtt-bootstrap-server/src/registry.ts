/**
 * A device registry in one JSON file, for the demo, `mqtt-bootstrap serve` and small fleets:
 *
 * ```json
 * { "version": 1,
 *   "attestation": { "groupKeyFile": "group.key", "identity": "imei" },
 *   "defaults": { "connect": { "host": "mqtts://broker.example.com:8883", "qos": 1, "cleanSession": 1 } },
 *   "devices": [
 *     { "match": { "imei": "860000000000001" },
 *       "device": { "productKey": "a1PK", "deviceName": "meter-1", "deviceSecret": "…" } },
 *     { "match": { "imei": "860000000000666" }, "refuse": "10003" } ] }
 * ```
 * A request matches an entry when every field of `match` equals the same field of the request's data; the first
 * match wins. `refuse` answers that code instead. The file is checked when loaded and reloaded when it changes.
 * `attestation` (claims/declaration.ts) says how claims are authenticated: `serve` refuses a registry without it.
 */
import { readFileSync, statSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { parseDeviceConfig } from 'mqtt-bootstrap/contract'
import * as v from 'valibot'
import { renewedDeviceName } from './certificates/renewal.js'
import { type Attestation, AttestationField, loadAttestation, matchProblem } from './claims/declaration.js'
import { type ClaimVerifier, type SignedClaimsOptions, signedClaims, verifiedKeyId } from './claims/verify.js'
import { type Resolution, SERVER_CODES } from './handler.js'
import { lineAndColumn, syntaxErrorOffset } from './json-syntax.js'
import { refusalCodeProblem } from './refusal-codes.js'

export { lineAndColumn, syntaxErrorOffset }

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
  attestation: AttestationField,
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
  attestation: Attestation | undefined
}

/** The options of {@link DeviceRegistry.verifier}: the registry gives the keys and the identity. */
export type RegistryVerifierOptions = Omit<SignedClaimsOptions, 'keyFor' | 'identity'>

export class DeviceRegistry {
  readonly path: string
  #loaded: Loaded
  /** What the files' modification times were when last loaded. */
  #stamp = ''

  /** Reads and checks the file now: a bad registry is an error at start-up, not at the first request. */
  constructor(path: string) {
    this.path = path
    const own = statSync(path).mtimeMs
    this.#loaded = load(path)
    this.#stamp = this.#stampOf(own)
  }

  /**
   * How the file says claims are authenticated: `'group-key'` (signed with keys derived from its group key),
   * `'none'` (unsigned claims accepted knowingly), or `undefined` when it says nothing (`serve` refuses to run).
   */
  get attestation(): 'group-key' | 'none' | undefined {
    return this.#loaded.attestation?.kind
  }

  /**
   * The claim verifier for `createProvisioningHandler({ resolve: registry.resolve, verify })`, following the file as
   * it is reloaded: with a group key, `signedClaims` with the keys derived from it and the declared identity; with
   * `"none"`, every claim passes. A TypeError for a registry that declares no attestation.
   */
  verifier(options: RegistryVerifierOptions = {}): ClaimVerifier {
    if (this.#loaded.attestation === undefined)
      throw new TypeError(`device registry ${this.path} declares no attestation`)
    const current = () => this.#loaded.attestation
    const signed = signedClaims({
      ...options,
      keyFor: (id) => {
        const declared = current()
        return declared?.kind === 'group-key' ? declared.keyFor(id) : undefined
      },
      identity: (data) => {
        const declared = current()
        return declared?.kind === 'group-key' ? ownField(data, declared.identity) : undefined
      },
    })
    return async (claim) => {
      this.#reloadFor(claim.request)
      const declared = current()
      if (declared === undefined) throw new TypeError(`device registry ${this.path} no longer declares attestation`)
      return declared.kind === 'none' ? { ok: true } : signed(claim)
    }
  }

  /** The number of device entries. */
  get size(): number {
    return this.#loaded.content.devices.length
  }

  /** The request fields the entries match on (e.g. `imei`): what identifies a device, for logs. */
  get matchFields(): readonly string[] {
    return [...new Set(this.#loaded.groups.flatMap((group) => group.fields))]
  }

  /**
   * The configuration (or refusal) for a request's data; `undefined` for an unknown device. With a group key declared,
   * a request whose claim the handler did not verify for the data's identity is refused (`"10004"`): a handler made
   * without `verify` does not hand out configurations. A renewal (renewedDeviceName) is proven by its certificate
   * instead, and the handler answers it only a configuration of the certificate's deviceName.
   */
  resolve = (data: unknown, request?: IncomingMessage): Resolution | undefined => {
    this.#reloadFor(request)
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined
    const { content, groups, attestation } = this.#loaded
    if (attestation?.kind === 'group-key') {
      const claimed = ownField(data, attestation.identity)
      const proven = verifiedKeyId(request) === claimed || renewedDeviceName(request) !== undefined
      if (claimed === undefined || !proven) return { code: SERVER_CODES.INVALID_SIGNATURE }
    }
    const entry = firstMatch(content.devices, groups, data as Record<string, unknown>)
    if (entry === undefined) return undefined
    if (entry.refuse !== undefined) return { code: entry.refuse }
    return { device: entry.device ?? {}, connect: { ...content.defaults?.connect, ...entry.connect } }
  }

  /** The registry's modification time `own`, and its key file's (now). */
  #stampOf(own: number): string {
    const declared = this.#loaded.attestation
    const keyFile = declared?.kind === 'group-key' ? declared.keyFile : undefined
    return keyFile === undefined ? String(own) : `${own} ${statSync(keyFile, { throwIfNoEntry: false })?.mtimeMs}`
  }

  /** The requests whose files were checked already: verify and then resolve stat them once per request, not twice. */
  readonly #checked = new WeakSet<IncomingMessage>()

  #reloadFor(request: IncomingMessage | undefined): void {
    if (request !== undefined && this.#checked.has(request)) return
    this.#reloadIfChanged()
    if (request !== undefined) this.#checked.add(request)
  }

  #reloadIfChanged(): void {
    // Read before loading: a change made while loading is seen by the next request. A key file that moved makes
    // one more reload, harmless.
    const stamp = this.#stampOf(statSync(this.path).mtimeMs)
    if (stamp === this.#stamp) return
    this.#loaded = load(this.path) // throws on a bad edit: the handler answers "77777" and keeps running
    this.#stamp = stamp
  }
}

function ownField(data: unknown, name: string): unknown {
  return typeof data === 'object' && data !== null && Object.hasOwn(data, name)
    ? (data as Record<string, unknown>)[name]
    : undefined
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
  const attestation = loadAttestation(path, parsed.output.attestation)
  // Each entry that answers must make a valid configuration, with the defaults: found now, not by a device.
  parsed.output.devices.forEach((entry, index) => {
    const unbound = matchProblem(attestation, entry.match)
    if (unbound !== undefined) throw new TypeError(`device registry ${path}: devices.${index}.match ${unbound}`)
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
  return { content: parsed.output, groups: indexOf(parsed.output.devices), attestation }
}
