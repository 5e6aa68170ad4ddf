/**
 * `mqtt-bootstrap registry configure`: the settings kept in the database, that every `serve --database` reads at its
 * start (its own options win). The group key is kept by reference: its file's absolute path, checked here as serve
 * will read it (mode 0600, a key). Options change only what they name; without any, the settings are printed. No key
 * is ever printed.
 */
import { resolve } from 'node:path'
import { contractSchemas } from 'mqtt-bootstrap/contract'
import * as v from 'valibot'
import { DEFAULT_IDENTITY } from '../claims/declaration.js'
import type { RegistrySettings } from '../postgres/registry.js'
import { EXIT, table, UsageError } from './io.js'
import { readGroupKey } from './key-files.js'
import { withRegistry } from './registry-database.js'

export interface ConfigureFlags {
  database?: string
  host?: string
  qos?: string
  cleanSession?: string
  groupKeyFile?: string
  identity?: string
  attestation?: string
  claims?: string
}

const SET_ATTESTATION = 'mqtt-bootstrap registry configure --group-key-file <file>, or --attestation none'
export const SET_HOST = 'mqtt-bootstrap registry configure --host mqtts://<broker>:8883'

export async function configureCommand(flags: ConfigureFlags): Promise<number> {
  if (flags.attestation !== undefined && flags.groupKeyFile !== undefined) {
    throw new UsageError(
      '--attestation none and --group-key-file exclude each other: claims are signed or they are not',
    )
  }
  if (flags.attestation !== undefined && flags.identity !== undefined) {
    throw new UsageError('--identity names the field a signed claim proves: it goes with a group key, not with none')
  }
  if (flags.identity !== undefined) checkField(flags.identity, '--identity')
  const keyFile = flags.groupKeyFile === undefined ? undefined : await checkedKeyFile(flags.groupKeyFile)
  return withRegistry(flags.database, async (registry) => {
    // Made of the settings as they are while held: a concurrent change (a key rotated) is never undone here.
    const changes = await registry.configure((current) => {
      const wanted = changesOf(flags, current, keyFile)
      const next = { ...current, ...wanted }
      if (next.claims === 'any-signed' && !hasGroupKey(next)) {
        throw new UsageError(
          'claims any-signed give a triplet to every device whose claim is signed: they need a group key ' +
            '(--group-key-file <file>; or --claims allow-list to go without one)',
        )
      }
      return wanted
    })
    if (Object.keys(changes).length === 0) {
      console.log(describeSettings(await registry.settings()))
      return EXIT.OK
    }
    console.log(`configured ${Object.keys(changes).join(', ')}:`)
    console.log(describeSettings(await registry.settings()))
    return EXIT.OK
  })
}

/** The group key file's absolute path, once it holds a key only its owner can read (as serve requires). */
export async function checkedKeyFile(file: string): Promise<string> {
  if (file === '-') {
    throw new UsageError('--group-key-file: the server reads the key from its file at every start: give a file, not -')
  }
  await readKeyFile(file, '--group-key-file')
  return resolve(file)
}

/** Read as serve will read it; the key is not kept (only the path is stored), the message names `option`. */
export async function readKeyFile(file: string, option: string): Promise<void> {
  try {
    await readGroupKey(file)
  } catch (error) {
    if (!(error instanceof UsageError) || error.message.startsWith(option)) throw error
    throw new UsageError(`${option}: ${error.message}`)
  }
}

/** A field name of the request's data: not empty, no control characters. */
export function checkField(field: string, option: string): string {
  if (!/^[^\p{Cc}]{1,64}$/u.test(field)) throw new UsageError(`${option} must be a field name (1 to 64 characters)`)
  return field
}

function hasGroupKey(settings: Partial<RegistrySettings>): boolean {
  return typeof settings.attestation === 'object'
}

function changesOf(flags: ConfigureFlags, current: RegistrySettings, keyFile: string | undefined) {
  const changes: Partial<RegistrySettings> = {}
  const signed = typeof current.attestation === 'object' ? current.attestation : undefined
  if (keyFile !== undefined) {
    const identity = flags.identity ?? signed?.identity
    changes.attestation = { groupKeyFile: keyFile, ...(identity === undefined ? {} : { identity }) }
  } else if (flags.identity !== undefined) {
    if (signed === undefined) {
      throw new UsageError('--identity names the field a signed claim proves: give --group-key-file <file> with it')
    }
    changes.attestation = { ...signed, identity: flags.identity }
  } else if (flags.attestation !== undefined) changes.attestation = 'none'
  const connect = connectOf(flags, current.connect)
  if (connect !== undefined) changes.connect = connect
  if (flags.claims !== undefined) changes.claims = flags.claims as RegistrySettings['claims']
  return changes
}

function connectOf(flags: ConfigureFlags, current: RegistrySettings['connect']): RegistrySettings['connect'] {
  if (flags.host === undefined && flags.qos === undefined && flags.cleanSession === undefined) return undefined
  const host = flags.host ?? current?.host
  if (host === undefined) throw new UsageError('--qos and --clean-session go with a broker: give --host <url> too')
  const qos = flags.qos === undefined ? current?.qos : (Number(flags.qos) as 0 | 1)
  const cleanSession = flags.cleanSession === undefined ? current?.cleanSession : (Number(flags.cleanSession) as 0 | 1)
  const connect = {
    host,
    ...(qos === undefined ? {} : { qos }),
    ...(cleanSession === undefined ? {} : { cleanSession }),
  }
  // What the device will accept, checked now rather than answered "99999" to every device later.
  const checked = v.safeParse(contractSchemas().Connect, connect)
  if (!checked.success) throw new UsageError(`--host ${checked.issues[0].message}`)
  return connect
}

/** The settings as a table; nothing secret is in them (the key is a path). */
export function describeSettings(settings: RegistrySettings): string {
  const { attestation, connect, claims } = settings
  const signedBy =
    attestation === undefined
      ? `not configured, serve refuses to start: ${SET_ATTESTATION}`
      : attestation === 'none'
        ? 'none: claims are NOT authenticated'
        : `group key in ${attestation.groupKeyFile}, identity field ${attestation.identity ?? DEFAULT_IDENTITY}`
  const broker =
    connect === undefined
      ? `not configured, serve refuses to start: ${SET_HOST}`
      : `${connect.host}, qos ${connect.qos ?? 1}, clean session ${connect.cleanSession ?? 1}`
  const who =
    claims === 'any-signed'
      ? 'any-signed: every device whose claim is signed gets a triplet'
      : 'allow-list: only identities added by `registry allow` get a triplet'
  return table([
    ['attestation', signedBy],
    ['connect', broker],
    ['claims', who],
  ])
}
