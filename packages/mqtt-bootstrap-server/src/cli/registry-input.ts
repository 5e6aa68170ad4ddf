/**
 * What `registry import` and `registry allow` read: Alibaba's console export of triplets (CSV with a header,
 * `ProductKey,DeviceName,DeviceSecret`, in any order, other columns ignored) and lists of identities. Read whole and
 * checked whole before anything reaches the database, so that a bad line imports nothing. A message names the file,
 * the line and the column, never a value: in a file of secrets, a shifted column puts a secret anywhere.
 */
import { readFileSync } from 'node:fs'
import { contractSchemas } from 'mqtt-bootstrap/contract'
import * as v from 'valibot'
import type { Triplet } from '../postgres/registry.js'
import { parseCsv } from './csv.js'
import { UsageError } from './io.js'
import { readStdin } from './key-files.js'

/** The pool's columns, as the console names them (matched without regard to case or surrounding spaces). */
const COLUMNS = { productKey: 'ProductKey', deviceName: 'DeviceName', deviceSecret: 'DeviceSecret' } as const

/** The largest file read (an export of a million triplets is about 80 MB). */
const MAX_INPUT_BYTES = 256 * 1024 * 1024

/** The identities table's limit (its CHECK). */
export const MAX_IDENTITY_LENGTH = 256

/** The text of `path` (`-`: standard input), named `option` in errors. */
export async function readInput(path: string, option: string): Promise<{ text: string; source: string }> {
  if (path === '-') return { text: await readStdin(MAX_INPUT_BYTES), source: 'standard input' }
  try {
    return { text: readFileSync(path, 'utf8'), source: `${option} ${path}` }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new UsageError(`${option}: cannot read ${path} (${code === 'ENOENT' ? 'no such file' : code})`)
  }
}

/** The triplets of a console export; a UsageError naming the line for any that is not one the device accepts. */
export function tripletsOf(text: string, source: string): Triplet[] {
  const [header, ...rows] = parseCsv(text, source)
  if (header === undefined) throw new UsageError(`${source}: empty (no header, no triplets)`)
  const names = header.fields.map((name) => name.trim().toLowerCase())
  const index = Object.fromEntries(
    Object.entries(COLUMNS).map(([key, name]) => [key, names.indexOf(name.toLowerCase())]),
  ) as Record<keyof typeof COLUMNS, number>
  const missing = Object.entries(index).filter(([, at]) => at === -1)
  if (missing.length > 0) {
    // The header's own fields are not quoted: a file without a header has a secret there.
    const which = missing.map(([key]) => COLUMNS[key as keyof typeof COLUMNS]).join(', ')
    throw new UsageError(
      `${source} line ${header.line}: the header has no ${which} column (the console's export starts ` +
        `${Object.values(COLUMNS).join(',')})`,
    )
  }
  if (rows.length === 0) throw new UsageError(`${source}: no triplets after the header`)
  const { entries } = contractSchemas().Device.options[0]
  const seen = new Map<string, number>()
  return rows.map(({ line, fields }) => {
    const where = `${source} line ${line}`
    if (fields.length !== header.fields.length) {
      throw new UsageError(`${where}: ${fields.length} field(s), the header has ${header.fields.length}`)
    }
    const triplet = {} as Triplet
    for (const [key, at] of Object.entries(index) as [keyof typeof COLUMNS, number][]) {
      const value = fields[at] as string
      if (value === '') throw new UsageError(`${where}: ${COLUMNS[key]} is empty`)
      const checked = v.safeParse(entries[key], value)
      // The contract's own rules (what the device accepts): its messages quote no value.
      if (!checked.success) throw new UsageError(`${where}: ${COLUMNS[key]} ${checked.issues[0].message}`)
      if (value.trim() !== value) throw new UsageError(`${where}: ${COLUMNS[key]} has spaces at an end`)
      triplet[key] = value
    }
    const name = `${triplet.productKey}\n${triplet.deviceName}`
    const earlier = seen.get(name)
    if (earlier !== undefined) throw new UsageError(`${where}: the same ProductKey and DeviceName as line ${earlier}`)
    seen.set(name, line)
    return triplet
  })
}

/** An identity as a device claims it: printable ASCII (it is a signature's keyid), no space at either end. */
export function checkIdentity(id: string, where: string): string {
  if (id === '') throw new UsageError(`${where}: an empty identity`)
  if (!/^[\x20-\x7E]+$/.test(id))
    throw new UsageError(`${where}: an identity must be printable ASCII (it is the keyid)`)
  if (id.trim() !== id) throw new UsageError(`${where}: the identity ${JSON.stringify(id)} has spaces at an end`)
  if (id.length > MAX_IDENTITY_LENGTH) {
    throw new UsageError(`${where}: an identity of more than ${MAX_IDENTITY_LENGTH} characters`)
  }
  return id
}

/** One identity a line; blank lines and lines starting with `#` are skipped, spaces around an identity dropped. */
export function identitiesOf(text: string, source: string): string[] {
  const lines = (text.startsWith('\uFEFF') ? text.slice(1) : text).split('\n')
  const identities: string[] = []
  lines.forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    identities.push(checkIdentity(line, `${source} line ${i + 1}`))
  })
  return identities
}
