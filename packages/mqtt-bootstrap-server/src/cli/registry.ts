/**
 * `mqtt-bootstrap registry …`: the PostgreSQL registry's administration (DESIGN.md "The registry at fleet scale").
 * `migrate` makes or updates its tables; `configure` its settings; `import` fills the pool of triplets from the cloud
 * console's CSV; `allow` and `revoke` keep the allow-list; `list` shows the pool and who holds what. No secret is ever
 * printed: a triplet is shown by its productKey and deviceName.
 */
import { type Command, Option } from 'commander'
import { isIdentity } from '../postgres/admin.js'
import type { RegistryListing } from '../postgres/registry.js'
import { EXIT, table, UsageError } from './io.js'
import { withRegistry } from './registry-database.js'
import { checkIdentity, identitiesOf, readInput, tripletsOf } from './registry-input.js'
import { type ConfigureFlags, configureCommand } from './registry-settings.js'

interface DatabaseFlags {
  database?: string
}

export async function migrateCommand(flags: DatabaseFlags): Promise<number> {
  return withRegistry(flags.database, async (registry, target) => {
    const applied = await registry.migrate()
    if (applied.length === 0) console.log(`${target.shown}: up to date`)
    for (const name of applied) console.log(`${target.shown}: applied ${name}`)
    return EXIT.OK
  })
}

export async function importCommand(flags: DatabaseFlags & { csv: string }): Promise<number> {
  const { text, source } = await readInput(flags.csv, '--csv')
  // Checked whole before the database sees any of it: a bad line imports nothing.
  const triplets = tripletsOf(text, source)
  return withRegistry(flags.database, async (registry) => {
    let counts: { added: number; existing: number }
    try {
      counts = await registry.importTriplets(triplets)
    } catch (error) {
      // The registry's own checks of the rows (a device in the pool with another secret): the file is wrong.
      if (error instanceof TypeError) throw new UsageError(`${source}: ${error.message}`)
      throw error
    }
    const { added, existing } = counts
    console.log(`imported ${triplets.length} triplet(s): ${added} added to the pool, ${existing} already there`)
    return EXIT.OK
  })
}

/** The identities of --identity and --file, each once. */
async function identitiesFrom(
  flags: { identity?: string[]; file?: string },
  check: (id: string, where: string) => string = checkIdentity,
): Promise<string[]> {
  const given = (flags.identity ?? []).map((id) => check(id, '--identity'))
  if (flags.file !== undefined) {
    const { text, source } = await readInput(flags.file, '--file')
    given.push(...identitiesOf(text, source))
  }
  if (given.length === 0) throw new UsageError('no identities: give --identity <id…> or --file <file>')
  return [...new Set(given)]
}

export async function allowCommand(flags: DatabaseFlags & { identity?: string[]; file?: string }): Promise<number> {
  const identities = await identitiesFrom(flags)
  return withRegistry(flags.database, async (registry) => {
    const { added, restored } = await registry.allow(identities)
    const already = identities.length - added - restored
    console.log(
      `allowed ${identities.length} identit${identities.length === 1 ? 'y' : 'ies'}: ${added} added, ` +
        `${restored} restored (were revoked), ${already} already allowed`,
    )
    return EXIT.OK
  })
}

export async function revokeCommand(flags: DatabaseFlags & { identity: string[] }): Promise<number> {
  // Any identity the registry can hold can be revoked, also one the library allowed that is no keyid (not ASCII).
  const identities = await identitiesFrom({ identity: flags.identity }, (id, where) => {
    if (!isIdentity(id)) throw new UsageError(`${where}: 1 to 256 characters of valid Unicode, no control characters`)
    return id
  })
  return withRegistry(flags.database, async (registry) => {
    const { revoked } = await registry.revoke(identities)
    const others = identities.length - revoked
    // An identity never allowed is revoked all the same: its first claim is refused too.
    console.log(`revoked ${revoked}${others === 0 ? '' : `, ${others} already revoked`}`)
    return EXIT.OK
  })
}

export async function listCommand(flags: DatabaseFlags & { json?: boolean }): Promise<number> {
  return withRegistry(flags.database, async (registry) => {
    const listing = await registry.list()
    console.log(flags.json ? JSON.stringify(listingJson(listing), null, 2) : listingText(listing))
    return EXIT.OK
  })
}

/** The listing as JSON: dates as ISO 8601, absent fields left out; a triplet by its names only. */
function listingJson({ triplets, identities }: RegistryListing) {
  return {
    triplets: { total: triplets.total, free: triplets.free, assigned: triplets.assigned },
    identities: identities.map(({ identity, allowedAt, revokedAt, device, assignedAt }) => ({
      identity,
      allowedAt: allowedAt.toISOString(),
      ...(revokedAt === undefined ? {} : { revokedAt: revokedAt.toISOString() }),
      ...(device === undefined ? {} : { device: { productKey: device.productKey, deviceName: device.deviceName } }),
      ...(assignedAt === undefined ? {} : { assignedAt: assignedAt.toISOString() }),
    })),
  }
}

function listingText({ triplets, identities }: RegistryListing): string {
  const pool = `triplets: ${triplets.total} in the pool, ${triplets.free} free, ${triplets.assigned} assigned`
  if (identities.length === 0) return `${pool}\nidentities: none (registry allow --identity <id…>)`
  const rows = identities.map(({ identity, allowedAt, revokedAt, device, assignedAt }) => [
    identity,
    revokedAt === undefined ? 'allowed' : 'revoked',
    (revokedAt ?? allowedAt).toISOString(),
    device === undefined ? '-' : `${device.productKey}/${device.deviceName}`,
    assignedAt?.toISOString() ?? '-',
  ])
  return `${pool}\n${table([['identity', 'state', 'since', 'device', 'assigned'], ...rows])}`
}

const DATABASE_HELP = [
  '',
  'The database: --database postgres://user@host:port/database, or without it the standard PG* environment',
  'variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE). A password is better in PGPASSWORD or ~/.pgpass',
  'than in the URL (ps shows arguments); no message shows it.',
].join('\n')
const EXITS = '\nExit codes: 0 done, 1 the database unreachable (or another failure), 2 usage (bad arguments'

function database(command: Command): Command {
  return command
    .option('--database <url>', 'the registry database, postgres://… (default: the PG* environment variables)')
    .addHelpText('after', DATABASE_HELP)
}

/** `registry migrate | configure | import | allow | revoke | list`, under `registry`. */
export function addRegistryCommands(cli: Command): void {
  const registry = cli
    .command('registry')
    .description('the PostgreSQL registry (serve --database): its pool of triplets, allow-list and settings')
  database(registry.command('migrate'))
    .description("create or update the registry's tables (serve --database does it too); prints what it applied")
    .addHelpText('after', `${EXITS}).`)
    .action(async (flags: DatabaseFlags) => {
      process.exitCode = await migrateCommand(flags)
    })
  database(registry.command('configure'))
    .description('set what every serve --database reads at its start; with no option, print it (never a key)')
    .option('--host <url>', "the broker devices connect to, mqtts://host:8883 (the answer's connect.host)")
    .addOption(new Option('--qos <qos>', 'the QoS devices publish with').choices(['0', '1']))
    .addOption(new Option('--clean-session <flag>', "the devices' MQTT clean session").choices(['0', '1']))
    .option('--group-key-file <file>', 'claims signed with keys derived from this group key (mode 0600; its path kept)')
    .option('--identity <field>', 'the field of the request that names the device, its keyid (default: imei)')
    .addOption(
      new Option('--attestation <none>', 'claims NOT authenticated (anyone knowing an identity)').choices(['none']),
    )
    .addOption(
      new Option('--claims <who>', 'who gets a triplet: the allow-list, or any device that signs its claim').choices([
        'allow-list',
        'any-signed',
      ]),
    )
    .addHelpText(
      'after',
      [
        '',
        'serve --database refuses to start until an attestation (--group-key-file, or --attestation none) and a',
        'broker (--host) are set; its own --group-key-file, --identity, --attestation and --claims win over these.',
        `${EXITS}, a bad or loose key file).`,
      ].join('\n'),
    )
    .action(async (flags: ConfigureFlags) => {
      process.exitCode = await configureCommand(flags)
    })
  database(registry.command('import'))
    .description("add the cloud console's triplets (CSV: ProductKey,DeviceName,DeviceSecret) to the pool")
    .requiredOption('--csv <file>', "the console's export, with its header row (- reads standard input)")
    .addHelpText(
      'after',
      [
        '',
        'CSV: RFC 4180 (quoted fields, CRLF or LF, a byte order mark), the header naming the columns in any order;',
        'a triplet already in the pool is left as it is. A bad line is an error naming it (never its secret), and',
        'then nothing is imported.',
        `${EXITS}, a bad CSV).`,
      ].join('\n'),
    )
    .action(async (flags: DatabaseFlags & { csv: string }) => {
      process.exitCode = await importCommand(flags)
    })
  database(registry.command('allow'))
    .description('let identities claim a triplet (and restore revoked ones)')
    .option('--identity <id...>', 'identities, as devices claim them (e.g. IMEIs); repeatable')
    .option('--file <file>', 'one identity a line; blank lines and # comments skipped (- reads standard input)')
    .addHelpText('after', `${EXITS}, a bad identity).`)
    .action(async (flags: DatabaseFlags & { identity?: string[]; file?: string }) => {
      process.exitCode = await allowCommand(flags)
    })
  database(registry.command('revoke'))
    .description('refuse identities from now on: their next claim is answered "10007"')
    .requiredOption('--identity <id...>', 'identities to revoke; repeatable')
    .addHelpText('after', `${EXITS}, a bad identity).`)
    .action(async (flags: DatabaseFlags & { identity: string[] }) => {
      process.exitCode = await revokeCommand(flags)
    })
  database(registry.command('list'))
    .description('the pool (total, free, assigned) and each identity with the triplet it holds (no secret)')
    .option('--json', 'print JSON: { triplets: { total, free, assigned }, identities: [{ identity, allowedAt, … }] }')
    .addHelpText('after', `${EXITS}).`)
    .action(async (flags: DatabaseFlags & { json?: boolean }) => {
      process.exitCode = await listCommand(flags)
    })
}
