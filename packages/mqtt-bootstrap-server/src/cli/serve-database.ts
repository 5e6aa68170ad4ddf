/**
 * What `serve` serves from: the JSON registry file (`--registry`) or the PostgreSQL registry (`--database`). Secure
 * by default on both: no attestation configured anywhere is a usage error telling how to configure one, `none` only
 * when said so (and warned about). With the database, the nonces, the abuse limits' counters and the re-claims live
 * there too, so that several serve processes on one database judge claims as one would; its tables are made or
 * updated at the start (migrate() is safe from two processes at once).
 */
import { resolve } from 'node:path'
import { DEFAULT_IDENTITY } from '../claims/declaration.js'
import type { ClaimLimiter, ClaimLimitsOptions } from '../claims/limits.js'
import { MemoryNonceStore } from '../claims/nonces.js'
import { trustedProxies } from '../claims/peer.js'
import type { ClaimLog } from '../claims/reclaims.js'
import type { ClaimVerifier } from '../claims/verify.js'
import type { ProvisioningHandlerOptions, RequestOutcome } from '../handler.js'
import type { PostgresRegistry, PostgresRegistryOptions } from '../postgres/registry.js'
import { DeviceRegistry, type RegistryVerifierOptions } from '../registry.js'
import { identityOf } from './access-log.js'
import { logError } from './error-log.js'
import { UsageError } from './io.js'
import { type DatabaseTarget, databaseFailure, databaseTarget, openRegistry } from './registry-database.js'
import { checkField, readKeyFile, SET_HOST } from './registry-settings.js'

/** A registry as serve uses it, whichever it is. */
export interface ServedRegistry {
  /** How claims are authenticated (a registry without any never gets this far). */
  attestation: 'group-key' | 'none'
  /** `devices.json (3 entries)`, for the start-up line. */
  summary: string
  /** Where `attestation` says `none`, for a refusal of --client-ca. */
  unsigned: string
  /** The start-up lines about claims, `hosts` the ones signed claims may name. */
  claimLines(hosts: string, limits: boolean): string[]
  verifier(options: RegistryVerifierOptions): ClaimVerifier
  resolve: ProvisioningHandlerOptions['resolve']
  /** The identity the access log shows (and the limits count). */
  identityOf(data: unknown): string | undefined
  limits(): ClaimLimitsOptions | ClaimLimiter
  claims?: ClaimLog
  audit?(outcome: RequestOutcome): void
  close(): Promise<void>
}

/** serve's options that choose the registry (and, with the database, its overrides). */
export interface RegistryFlags extends Omit<DatabaseFlags, 'database'> {
  /** The JSON registry file; or `database`, one of them. */
  registry?: string
  /** The PostgreSQL registry, `postgres://…`. */
  database?: string
}

export interface DatabaseFlags {
  database: string
  groupKeyFile?: string
  identity?: string
  attestation?: string
  claims?: string
  trustProxy?: string[]
}

/** The options only `--database` takes: a registry file declares its own. */
export const DATABASE_ONLY = ['groupKeyFile', 'identity', 'attestation', 'claims'] as const

export const SIGNED = 'claims: signed (RFC 9421, keys derived from the group key), for'

export const UNSIGNED_RISK =
  "claims are not authenticated, and anyone who knows or guesses a device's identity (an IMEI is printed on its " +
  "box, and sequential) gets that device's secret."

const NO_DATABASE_ATTESTATION = (shown: string) =>
  `--database: ${shown} does not say how claims are authenticated, and serve does not hand out secrets to whoever ` +
  'asks for them. Configure either a group key\n' +
  '  mqtt-bootstrap registry configure --group-key-file group.key --identity imei\n' +
  '(claims signed with keys derived from it: `mqtt-bootstrap keys group --out group.key` makes one, ' +
  '`mqtt-bootstrap keys derive` the device keys), or unsigned claims\n' +
  '  mqtt-bootstrap registry configure --attestation none\n' +
  "(anyone who knows or guesses a device's identity gets a triplet); or give serve --group-key-file <file>."

const NO_HOST = (shown: string) => `--database: ${shown} names no broker for the devices to connect to: ${SET_HOST}`

const NO_ATTESTATION = (path: string) =>
  `--registry: ${path} does not say how claims are authenticated, and serve does not hand out secrets to whoever ` +
  'asks for them. Add at its top level either\n' +
  '  "attestation": { "groupKeyFile": "group.key", "identity": "imei" }\n' +
  '(claims signed with keys derived from the group key: `mqtt-bootstrap keys group --out group.key` makes one, ' +
  '`mqtt-bootstrap keys derive` the device keys), or\n' +
  '  "attestation": "none"\n' +
  "(unsigned claims: anyone who knows or guesses a device's identity gets its secret)."

const UNSIGNED_WARNING = (path: string) =>
  `warning: ${path} declares "attestation": "none": ${UNSIGNED_RISK} Declare a group key instead ` +
  '("attestation": { "groupKeyFile": …, "identity": "imei" }) before devices are in the field.'

/** The JSON registry file, as serve needs it: declaring its attestation. */
function fileRegistry(path: string): ServedRegistry {
  let registry: DeviceRegistry
  try {
    registry = new DeviceRegistry(path)
  } catch (error) {
    throw new UsageError(`--registry: ${(error as Error).message}`)
  }
  // Secure by default (issue 14): a registry must say how claims are authenticated, or nothing is served.
  const { attestation } = registry
  if (attestation === undefined) throw new UsageError(NO_ATTESTATION(path))
  if (attestation === 'none') console.error(UNSIGNED_WARNING(path))
  const nonces = new MemoryNonceStore()
  // The registry's match fields: what the access log shows and the limits count.
  const identity = (data: unknown) => identityOf(data, registry.matchFields)
  return {
    attestation,
    summary: `${path} (${registry.size} entries)`,
    unsigned: `${path} declares "attestation": "none"`,
    claimLines: (hosts) => [
      attestation === 'group-key'
        ? `${SIGNED} ${hosts}; nonces kept in memory`
        : 'claims: NOT authenticated ("attestation": "none")',
    ],
    verifier: (options) => registry.verifier({ ...options, nonces }),
    resolve: registry.resolve,
    identityOf: identity,
    limits: () => ({ identity }),
    close: async () => {},
  }
}

/** `--registry` or `--database`, exactly one. */
export async function servedRegistry(flags: RegistryFlags): Promise<ServedRegistry> {
  if ((flags.registry === undefined) === (flags.database === undefined)) {
    throw new UsageError('give either --registry <file> (a JSON registry) or --database <url> (PostgreSQL), one')
  }
  if (flags.database !== undefined) return databaseRegistry({ ...flags, database: flags.database })
  const given = DATABASE_ONLY.find((name) => flags[name] !== undefined)
  if (given !== undefined) {
    const option = `--${given.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
    throw new UsageError(`${option} goes with --database: a registry file declares its own "attestation"`)
  }
  return fileRegistry(flags.registry as string)
}

/** The registry on `--database`, open and migrated, its settings and serve's options checked. */
async function databaseRegistry(flags: DatabaseFlags): Promise<ServedRegistry> {
  const target = databaseTarget(flags.database)
  const options = await registryOptions(flags)
  const registry = await openRegistry(target, {
    ...options,
    trustProxy: flags.trustProxy ?? [],
    // Idle connections lost (the database restarted), audit rows not written: nothing a device is answered.
    onError: (error) => logError(databaseFailure(error, target).message),
  })
  try {
    return await served(registry, target, flags)
  } catch (error) {
    await registry.close().catch(() => {})
    throw databaseFailure(error, target)
  }
}

async function registryOptions(flags: DatabaseFlags) {
  if (flags.attestation !== undefined && flags.groupKeyFile !== undefined) {
    throw new UsageError(
      '--attestation none and --group-key-file exclude each other: claims are signed or they are not',
    )
  }
  if (flags.claims === 'any-signed' && flags.attestation === 'none') {
    throw new UsageError('--claims any-signed needs signed claims: not with --attestation none')
  }
  try {
    trustedProxies(flags.trustProxy ?? []) // the registry's audit believes them too: checked before it is made
  } catch (error) {
    throw new UsageError(`--trust-proxy: ${(error as Error).message}`)
  }
  const options: Omit<PostgresRegistryOptions, 'connectionString'> = {}
  if (flags.identity !== undefined) options.identity = checkField(flags.identity, '--identity')
  if (flags.attestation === 'none') options.attestation = 'none'
  if (flags.groupKeyFile !== undefined) {
    if (flags.groupKeyFile === '-') throw new UsageError('--group-key-file: give a file (it is read again), not -')
    await readKeyFile(flags.groupKeyFile, '--group-key-file')
    options.attestation = { groupKeyFile: resolve(flags.groupKeyFile) }
  }
  if (flags.claims !== undefined) options.claims = flags.claims as NonNullable<PostgresRegistryOptions['claims']>
  return options
}

async function served(registry: PostgresRegistry, target: DatabaseTarget, flags: DatabaseFlags) {
  for (const name of await registry.migrate()) console.log(`${target.shown}: applied ${name}`)
  const settings = await registry.settings()
  const configured = typeof settings.attestation === 'object' ? settings.attestation : undefined
  // Checked as the registry will read it, before it does: a usage error naming the file, not a failure.
  if (flags.groupKeyFile === undefined && flags.attestation === undefined && configured !== undefined) {
    await readKeyFile(configured.groupKeyFile, `${target.shown}'s attestation.groupKeyFile`)
  }
  const claims = flags.claims ?? settings.claims
  const signed = flags.groupKeyFile !== undefined || (flags.attestation === undefined && configured !== undefined)
  if (claims === 'any-signed' && !signed) {
    throw new UsageError(`${target.shown}: claims any-signed need a group key (serve --group-key-file <file>)`)
  }
  const attestation = await registry.attestation()
  if (attestation === undefined) throw new UsageError(NO_DATABASE_ATTESTATION(target.shown))
  if (settings.connect?.host === undefined) throw new UsageError(NO_HOST(target.shown))
  if (attestation === 'none') {
    const source = flags.attestation === 'none' ? '--attestation none' : `${target.shown} says "attestation": "none"`
    console.error(
      `warning: ${source}: ${UNSIGNED_RISK} Configure a group key instead (registry configure --group-key-file, ` +
        'or serve --group-key-file) before devices are in the field.',
    )
  }
  const field = flags.identity ?? configured?.identity ?? DEFAULT_IDENTITY
  const { total, free } = await registry.counts()
  return {
    attestation,
    summary: `${target.shown} (${total} triplets, ${free} free)`,
    unsigned: `${target.shown} has "attestation": "none"`,
    claimLines: (hosts: string, limits: boolean) => [
      `${attestation === 'none' ? 'claims: NOT authenticated (attestation "none")' : `${SIGNED} ${hosts}`}; ${
        claims === 'any-signed'
          ? 'any device whose claim is signed gets a triplet (claims any-signed)'
          : 'a triplet for the identities on the allow-list only (registry allow)'
      }`,
      `${limits ? 'nonces, limits and re-claims' : 'nonces and re-claims'} shared in PostgreSQL`,
    ],
    verifier: (options: RegistryVerifierOptions) => registry.verifier({ ...options, nonces: registry.nonces }),
    resolve: (data, request) => registry.resolve(data, request),
    identityOf: (data: unknown) => identityOf(data, [field]),
    limits: () => registry.limiter(), // per the settings' identity field, as it changes
    claims: registry.claims,
    audit: (outcome: RequestOutcome) => registry.audit(outcome),
    close: () => registry.close(),
  } satisfies ServedRegistry
}
