/**
 * `mqtt-bootstrap keys group` and `keys derive`: the factory side of signed claims (DESIGN.md "Authenticated claims").
 * One group key, kept by the factory and the provisioning server; each device gets deriveDeviceKey(groupKey, id) burned
 * in, and the server derives the same key from the identity the device claims. No secret is ever taken as an argument
 * (issue 14): the group key comes from a file, standard input or MQTT_BOOTSTRAP_GROUP_KEY; `keys group` prints nothing
 * that holds the key.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import type { Command } from 'commander'
import { deriveDeviceKey } from 'mqtt-bootstrap/contract'
import { type CsvRecord, csvLine, parseCsv } from './csv.js'
import { EXIT, UsageError } from './io.js'
import { checkOut, GROUP_KEY_ENV, readGroupKey, readStdin, writeSecretFile } from './key-files.js'

/** Bytes in a new group key: 512 bits, as Azure DPS makes them (what the HMAC-SHA256 block size takes whole). */
export const GROUP_KEY_BYTES = 64

/** The identity column's default names (the reference registry's own identity is `imei`), and the one added. */
const ID_COLUMNS = ['id', 'imei']
const KEY_COLUMN = 'key'

/** The largest --csv read from standard input. */
const MAX_CSV_BYTES = 256 * 1024 * 1024

export interface GroupFlags {
  out: string
  force?: boolean
}

export interface DeriveFlags {
  groupKeyFile?: string
  id?: string
  csv?: string
  out?: string
  force?: boolean
  column?: string
  /** commander's `--no-header`: false when given. */
  header: boolean
}

export function groupCommand(flags: GroupFlags): number {
  checkOut(flags.out, flags.force)
  if (flags.force && existsSync(flags.out)) {
    console.error(
      `warning: replacing the group key in ${flags.out}: every device key derived from the old one stops working ` +
        'with a server that uses the new one',
    )
  }
  const key = randomBytes(GROUP_KEY_BYTES).toString('base64')
  write(flags.out, `${key}\n`, flags.force)
  console.error(
    `wrote a new group key (${GROUP_KEY_BYTES} random bytes, base64) to ${flags.out}, mode 0600. Every device key ` +
      'derives from it: keep it with the provisioning server and the factory only.',
  )
  return EXIT.OK
}

export async function deriveCommand(flags: DeriveFlags): Promise<number> {
  if ((flags.id === undefined) === (flags.csv === undefined))
    throw new UsageError('give either --id <id> or --csv <file>')
  if (flags.id !== undefined && (flags.column !== undefined || !flags.header)) {
    throw new UsageError('--column and --no-header go with --csv')
  }
  if (flags.column !== undefined && !flags.header) {
    throw new UsageError('--column names a header column: not with --no-header (the identity is the first field)')
  }
  if (flags.csv === '-' && flags.groupKeyFile === '-') {
    throw new UsageError('standard input can be the group key or the CSV, not both')
  }
  if (flags.out !== undefined) checkOut(flags.out, flags.force)
  const groupKey = await readGroupKey(flags.groupKeyFile)
  if (flags.id !== undefined) {
    const key = `${deriveDeviceKey(groupKey, checkIdentity(flags.id, '--id'))}\n`
    if (flags.out === undefined) process.stdout.write(key)
    else {
      // A key file the device (and `check --key-file`) reads: mode 0600, as they require.
      write(flags.out, key, flags.force)
      console.error(`wrote the device key of ${flags.id} to ${flags.out}, mode 0600`)
    }
    return EXIT.OK
  }
  const csv = flags.csv as string
  const source = csv === '-' ? 'standard input' : `--csv ${csv}`
  const text = csv === '-' ? await readStdin(MAX_CSV_BYTES) : readText(csv)
  const output = deriveCsv(parseCsv(text, source), source, groupKey, flags)
  if (flags.out === undefined) process.stdout.write(output.text)
  else {
    write(flags.out, output.text, flags.force)
    console.error(`wrote ${output.devices} device key(s) to ${flags.out}, mode 0600`)
  }
  return EXIT.OK
}

/** The input's records with each device's key added as the last field (the header gains `key`). */
function deriveCsv(
  records: CsvRecord[],
  source: string,
  groupKey: Buffer,
  flags: DeriveFlags,
): { text: string; devices: number } {
  const [first, ...rest] = records
  if (first === undefined) throw new UsageError(`${source}: no identities`)
  let column = 0
  let rows = records
  let text = ''
  if (flags.header) {
    const names = first.fields
    const wanted = flags.column ?? (names.length === 1 ? names[0] : ID_COLUMNS.find((name) => names.includes(name)))
    column = wanted === undefined ? -1 : names.indexOf(wanted)
    if (column === -1) {
      const which =
        wanted === undefined ? `no ${ID_COLUMNS.join(' or ')} column` : `no column ${JSON.stringify(wanted)}`
      throw new UsageError(
        `${source} line ${first.line}: ${which} in the header (${names.join(', ')}): ` +
          'name the identity column with --column, or say --no-header',
      )
    }
    if (names.includes(KEY_COLUMN))
      throw new UsageError(`${source} line ${first.line}: the header has a key column already`)
    text += csvLine([...names, KEY_COLUMN])
    rows = rest
  }
  const width = first.fields.length
  const seen = new Map<string, number>()
  for (const { line, fields } of rows) {
    const where = `${source} line ${line}`
    if (fields.length !== width)
      throw new UsageError(`${where}: ${fields.length} field(s), the first line has ${width}`)
    const id = checkIdentity(fields[column] as string, where)
    const earlier = seen.get(id)
    // Two devices with one identity would share one key: the list is wrong somewhere.
    if (earlier !== undefined) throw new UsageError(`${where}: the identity ${id} is on line ${earlier} already`)
    seen.set(id, line)
    text += csvLine([...fields, deriveDeviceKey(groupKey, id)])
  }
  if (rows.length === 0) throw new UsageError(`${source}: no identities after the header`)
  return { text, devices: rows.length }
}

/**
 * An identity as the device sends it as its signature's `keyid`: printable ASCII (an RFC 8941 string), no space at
 * either end (a stray space in a spreadsheet would give a key for an identity no device claims).
 */
function checkIdentity(id: string, where: string): string {
  if (id === '') throw new UsageError(`${where}: an empty identity`)
  if (!/^[\x20-\x7E]+$/.test(id))
    throw new UsageError(`${where}: the identity must be printable ASCII (it is the keyid)`)
  if (id.trim() !== id) throw new UsageError(`${where}: the identity ${JSON.stringify(id)} has spaces at an end`)
  return id
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (error) {
    throw new UsageError(`--csv: cannot read ${path} (${(error as NodeJS.ErrnoException).code})`)
  }
}

/** A write that fails (a full disk, a directory not writable) is exit 1, not a usage error. */
function write(path: string, data: string, force: boolean | undefined): void {
  try {
    writeSecretFile(path, data, force)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw new UsageError(`${path} was created meanwhile: nothing written (--force replaces it)`)
    throw new Error(`cannot write ${path} (${code ?? (error as Error).message})`)
  }
}

/** `keys group` and `keys derive`, under `keys`. */
export function addKeysCommands(cli: Command): void {
  const keys = cli
    .command('keys')
    .description('group keys and the device keys derived from them, for signed claims (the factory side)')
  const exits = '\nExit codes: 0 done, 1 the output could not be written, 2 usage (bad arguments, a bad key or CSV).'
  keys
    .command('group')
    .description('write a new random group key (64 bytes, base64) to a file, mode 0600; prints nothing of it')
    .argument('[file]', 'where to write the key: the same as --out')
    .option('--out <file>', 'where to write the key (never over an existing file)')
    .option('--force', 'replace an existing --out')
    .addHelpText('after', exits)
    .action((file: string | undefined, flags: Partial<GroupFlags>) => {
      if ((file === undefined) === (flags.out === undefined)) {
        throw new UsageError('give the file to write the group key to: keys group <file> (or --out <file>), once')
      }
      process.exitCode = groupCommand({ ...flags, out: (file ?? flags.out) as string })
    })
  keys
    .command('derive')
    .description("print a device's key (--id), or add each device's key to a CSV of identities (--csv)")
    .option('--group-key-file <file>', `the group key (mode 0600; - reads standard input; default: $${GROUP_KEY_ENV})`)
    .option('--id <id>', "one device's identity (the keyid it signs with, e.g. its IMEI): prints its key alone")
    .option('--csv <file>', 'a CSV of identities (- reads standard input): prints it with a key column added')
    .option(
      '--column <name>',
      `the identity column of the CSV's header (default: ${ID_COLUMNS.join(' or ')}, or its only column)`,
    )
    .option('--no-header', "the CSV has no header: the identity is each line's first field; none is printed")
    .option('--out <file>', 'write the key or the CSV there (mode 0600, never over an existing file), not to stdout')
    .option('--force', 'replace an existing --out')
    .addHelpText(
      'after',
      [
        '',
        'The group key is never an argument (ps and the shell history would show it): --group-key-file, standard',
        `input, or ${GROUP_KEY_ENV}. A device key is base64(HMAC-SHA256(group key, id)), Azure DPS's scheme.`,
        'CSV: RFC 4180 (quoted fields, CRLF or LF, empty lines skipped); a bad line is an error naming it, and',
        'nothing is printed or written then.',
        exits,
      ].join('\n'),
    )
    .action(async (flags: DeriveFlags) => {
      process.exitCode = await deriveCommand(flags)
    })
}
