/**
 * The database registry's settings (table `mqtt_bootstrap.settings`, set by `mqtt-bootstrap registry configure`):
 * how claims are authenticated, where devices connect, and who may claim. Secure by default like the JSON registry:
 * a registry that says nothing about attestation hands out nothing.
 *
 * - `attestation`: `{ groupKeyFile, identity? }` (claims signed with keys derived from the group key in that file:
 *   the key stays in the file, mode 0600, never in the database) or `"none"` (unsigned claims, knowingly);
 * - `connect`: `{ host, qos?, cleanSession? }`, the answer's `connect`;
 * - `claims`: `"allow-list"` (only identities allowed by `registry allow`) or `"any-signed"` (any identity whose claim
 *   is signed with its derived key; needs a group key).
 */
import { statSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import { parseDeviceConfig } from 'mqtt-bootstrap/contract'
import * as v from 'valibot'
import { type Attestation, DEFAULT_IDENTITY, loadAttestation } from '../claims/declaration.js'

export type ClaimPolicy = 'allow-list' | 'any-signed'

export interface RegistrySettings {
  /** How claims are authenticated; `undefined`: not said (nothing is handed out). */
  attestation?: { groupKeyFile: string; identity?: string } | 'none'
  /** Where devices connect (the answer's `connect`); `undefined`: not set (nothing can be answered). */
  connect?: { host: string; qos?: 0 | 1 | 2; cleanSession?: 0 | 1 }
  /** Who may claim. @default 'allow-list' */
  claims: ClaimPolicy
}

const Identity = v.pipe(v.string(), v.minLength(1), v.maxLength(256))
const AttestationSetting = v.union([
  v.literal('none'),
  v.strictObject({ groupKeyFile: v.pipe(v.string(), v.minLength(1)), identity: v.optional(Identity) }),
])
const ConnectSetting = v.strictObject({
  host: v.string(),
  qos: v.optional(v.picklist([0, 1, 2])),
  cleanSession: v.optional(v.picklist([0, 1])),
})
const Policy = v.picklist(['allow-list', 'any-signed'])

const SCHEMAS = { attestation: AttestationSetting, connect: ConnectSetting, claims: Policy } as const
export const SETTING_NAMES = Object.keys(SCHEMAS) as Array<keyof typeof SCHEMAS>

/** The settings in force: the database's, with the process's overrides, the group key loaded. */
export interface LoadedSettings {
  identity: string
  attestation: Attestation | undefined
  connect: RegistrySettings['connect']
  claims: ClaimPolicy
  /** What the settings and the key file were when loaded: a change reloads them. */
  stamp: string
}

/** One setting checked, or a TypeError naming it (never its value: a path is fine, a key is never here). */
export function checkSetting(name: string, value: unknown): unknown {
  const schema = SCHEMAS[name as keyof typeof SCHEMAS]
  if (schema === undefined) throw new TypeError(`unknown registry setting "${name}"`)
  const parsed = v.safeParse(schema, value)
  if (!parsed.success) {
    const issue = parsed.issues[0] as v.BaseIssue<unknown>
    throw new TypeError(`registry setting ${name}${pathOf(issue)} is invalid (${issue.expected ?? issue.type})`)
  }
  if (name === 'connect') {
    const device = { productKey: 'p', deviceName: 'd', deviceSecret: 's' } // any: the setting is checked on its own
    const config = parseDeviceConfig({ device, connect: parsed.output })
    if (!config.ok) throw new TypeError(`registry setting connect: ${config.problem}`)
  }
  if (name === 'attestation' && typeof parsed.output === 'object') {
    const file = (parsed.output as { groupKeyFile: string }).groupKeyFile
    if (!isAbsolute(file)) throw new TypeError('registry setting attestation.groupKeyFile must be an absolute path')
  }
  return parsed.output
}

function pathOf(issue: v.BaseIssue<unknown>): string {
  const path = v.getDotPath(issue)
  return path === null ? '' : `.${path}`
}

/** The settings as stored (rows of name, value), each checked. */
export function settingsOf(rows: ReadonlyArray<{ name: string; value: unknown }>): RegistrySettings {
  const settings: RegistrySettings = { claims: 'allow-list' }
  for (const { name, value } of rows) {
    if (!(SETTING_NAMES as string[]).includes(name)) continue // a newer version's setting: not ours to judge
    ;(settings as unknown as Record<string, unknown>)[name] = checkSetting(name, value)
  }
  return settings
}

/** What a process says over the database's settings (serve's options). */
export interface SettingsOverrides {
  identity?: string
  attestation?: { groupKeyFile: string } | { groupKey: string } | 'none'
  claims?: ClaimPolicy
}

/**
 * The settings in force: `overrides` over `stored`, the group key loaded (a TypeError for an unreadable key file or
 * one others can read). `label` names the registry in errors (a URL without its password). `previous` is kept when
 * nothing changed, so that the key file is not read again.
 */
export function loadSettings(
  label: string,
  stored: RegistrySettings,
  overrides: SettingsOverrides,
  previous: LoadedSettings | undefined,
): LoadedSettings {
  const declared = overrides.attestation ?? stored.attestation
  const storedIdentity = typeof stored.attestation === 'object' ? stored.attestation.identity : undefined
  const identity = overrides.identity ?? storedIdentity ?? DEFAULT_IDENTITY
  const keyFile =
    typeof declared === 'object' && 'groupKeyFile' in declared ? resolve(declared.groupKeyFile) : undefined
  const keyStamp = keyFile === undefined ? '' : String(statSync(keyFile, { throwIfNoEntry: false })?.mtimeMs)
  const claims = overrides.claims ?? stored.claims
  const stamp = JSON.stringify([stored, identity, claims, keyStamp, typeof declared === 'object' ? keyFile : declared])
  if (previous !== undefined && previous.stamp === stamp) return previous
  const field =
    declared === undefined || declared === 'none'
      ? declared
      : keyFile !== undefined
        ? { groupKeyFile: keyFile, identity }
        : { groupKey: (declared as { groupKey: string }).groupKey, identity }
  const attestation = loadAttestation(label, field)
  if (claims === 'any-signed' && attestation?.kind !== 'group-key') {
    throw new TypeError(`device registry ${label}: "any-signed" claims need a group key (attestation)`)
  }
  return { identity, attestation, connect: stored.connect, claims, stamp }
}
