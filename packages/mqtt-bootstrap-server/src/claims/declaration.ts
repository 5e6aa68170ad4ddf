/**
 * The JSON registry's `"attestation"` declaration (DESIGN.md "Authenticated claims"), at the top level of the file:
 *
 * ```json
 * "attestation": { "groupKeyFile": "group.key", "identity": "imei" }
 * "attestation": { "groupKey": "<base64>", "identity": "imei" }
 * "attestation": "none"
 * ```
 * With a group key, every claim must be signed with `deriveDeviceKey(groupKey, data[identity])`; `"none"` accepts
 * unsigned claims knowingly (anyone who knows an identity gets its configuration). `groupKeyFile` is relative to the
 * registry file, holds the base64 key (`mqtt-bootstrap keys group` writes one) and is read again when it changes.
 * The key itself is kept in a closure only: no error, log or inspected object shows it.
 */
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { deriveDeviceKey } from 'mqtt-bootstrap/contract'
import * as v from 'valibot'

/** The default identity field: what the reference registry and the PostgreSQL one match devices on. */
export const DEFAULT_IDENTITY = 'imei'

export const AttestationField = v.optional(
  v.union([
    v.literal('none'),
    v.strictObject({
      groupKey: v.optional(v.string()),
      groupKeyFile: v.optional(v.pipe(v.string(), v.minLength(1))),
      identity: v.optional(v.pipe(v.string(), v.minLength(1))),
    }),
  ]),
)

type Field = v.InferOutput<typeof AttestationField>

/** What a loaded registry declares: nothing (`undefined`), `none`, or a group key. */
export type Attestation =
  | { kind: 'none' }
  | {
      kind: 'group-key'
      /** The field of the request's data that names the device, and must be the signature's keyid. */
      identity: string
      /** The key file's absolute path, when the key comes from one (watched for changes). */
      keyFile: string | undefined
      /** deriveDeviceKey(groupKey, id), the group key bound in. */
      keyFor(id: string): string
    }

/**
 * The declaration as loaded; throws a TypeError naming `path` and the field (never the key) for a declaration that
 * is not one of the forms above, an unreadable key file or a key that is not canonical base64 of 16+ bytes.
 */
export function loadAttestation(path: string, field: Field): Attestation | undefined {
  if (field === undefined) return undefined
  if (field === 'none') return { kind: 'none' }
  const { groupKey, groupKeyFile } = field
  if ((groupKey === undefined) === (groupKeyFile === undefined)) {
    throw new TypeError(`device registry ${path}: attestation needs either "groupKey" or "groupKeyFile" (one of them)`)
  }
  let key: string
  let keyFile: string | undefined
  let where: string
  if (groupKeyFile !== undefined) {
    keyFile = resolve(dirname(path), groupKeyFile)
    where = `attestation.groupKeyFile ${keyFile}`
    key = readGroupKeyFile(path, where, keyFile)
  } else {
    key = groupKey as string
    where = 'attestation.groupKey'
  }
  try {
    deriveDeviceKey(key, 'check')
  } catch {
    throw new TypeError(
      `device registry ${path}: ${where} must be canonical base64 of 16 bytes or more (\`mqtt-bootstrap keys group\` makes one)`,
    )
  }
  const bytes = Buffer.from(key, 'base64') // checked above: decoded once, not at every claim
  return {
    kind: 'group-key',
    identity: field.identity ?? DEFAULT_IDENTITY,
    keyFile,
    keyFor: (id) => deriveDeviceKey(bytes, id),
  }
}

/**
 * Why `match` cannot be bound to a signed identity, or `undefined`. A claim proves only the identity field: an entry
 * that does not match on it would go to any device with a key of its own (other fields may narrow it further).
 */
export function matchProblem(attestation: Attestation | undefined, match: Record<string, unknown>): string | undefined {
  if (attestation?.kind !== 'group-key') return undefined
  const value = match[attestation.identity]
  if (typeof value !== 'string' || value === '') {
    return `must match on "${attestation.identity}" (a string), the identity a signed claim proves`
  }
  return undefined
}

/**
 * The group key file's text: every device key derives from it, so a file others can read is refused (as `keys
 * derive` and `check` refuse one, and serve its CA key), asked of the file opened, not of its name.
 */
function readGroupKeyFile(path: string, where: string, keyFile: string): string {
  let fd: number
  try {
    fd = openSync(keyFile, 'r')
  } catch (error) {
    // An fs error says the path and errno only; nothing of the content.
    throw new TypeError(`device registry ${path}: ${where} is not readable (${(error as NodeJS.ErrnoException).code})`)
  }
  try {
    const mode = fstatSync(fd).mode & 0o777
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      const shown = mode.toString(8).padStart(4, '0')
      throw new TypeError(`device registry ${path}: ${where} is readable by others (mode ${shown}): chmod 600 it`)
    }
    return readFileSync(fd, 'utf8').trim()
  } finally {
    closeSync(fd)
  }
}
