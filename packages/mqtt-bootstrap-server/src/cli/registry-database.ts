/**
 * How the `registry` commands and `serve --database` reach the PostgreSQL registry: `--database postgres://…`, or
 * without it the standard `PG*` environment variables (pg reads them itself). The database is named as
 * `postgres://host:port/database` in every message: never with its user's password, whether it came in the URL or in
 * PGPASSWORD, and a failure names the address it tried.
 */
import { PostgresRegistry, type PostgresRegistryOptions } from '../postgres/registry.js'
import { UsageError } from './io.js'

export interface DatabaseTarget {
  /** What pg is given; `undefined`: the PG* environment variables. */
  connectionString: string | undefined
  /** `postgres://host:port/database`, for messages. */
  shown: string
  /** Kept only to take it out of messages. */
  password: string | undefined
}

const URL_FORM = 'postgres://user@host:port/database'

/** Where pg will connect for `url` (or the environment), as pg itself fills in what is missing. */
export function databaseTarget(url: string | undefined, env: NodeJS.ProcessEnv = process.env): DatabaseTarget {
  let parsed: URL | undefined
  if (url !== undefined) {
    try {
      parsed = new URL(url)
    } catch {
      // Not quoted back: it may hold a password.
      throw new UsageError(`--database must be a URL, ${URL_FORM}`)
    }
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
      throw new UsageError(`--database must be a ${URL_FORM} URL, not ${parsed.protocol}//…`)
    }
  }
  const part = (value: string | undefined) => (value ? decodeURIComponent(value) : undefined)
  const host = part(parsed?.hostname) || parsed?.searchParams.get('host') || env.PGHOST || 'localhost'
  const port = parsed?.port || env.PGPORT || '5432'
  const user = part(parsed?.username) || env.PGUSER || env.USER
  const database = part(parsed?.pathname.slice(1)) || env.PGDATABASE || user || ''
  return {
    connectionString: url,
    shown: `postgres://${host}:${port}/${database}`,
    password: part(parsed?.password) || env.PGPASSWORD || undefined,
  }
}

/** `text` without the password (as given, and URL-encoded), whatever a library put in it. */
export function withoutPassword(text: string, target: DatabaseTarget): string {
  const { password } = target
  if (password === undefined || password === '') return text
  return text.replaceAll(password, '***').replaceAll(encodeURIComponent(password), '***')
}

/** What to do about a failure, from the codes pg and the network give (in the error or in its message). */
function hint(message: string): string {
  if (/ECONNREFUSED/.test(message))
    return ' (nothing accepts connections there: is PostgreSQL running? --database, or PGHOST and PGPORT)'
  if (/ENOTFOUND|EAI_AGAIN/.test(message)) return ' (no such host)'
  if (/ETIMEDOUT|timeout/i.test(message)) return ' (no answer in time: a firewall, or the wrong address?)'
  if (/28P01|28000/.test(message))
    return ' (the user or its password was refused: --database, or PGUSER and PGPASSWORD)'
  if (/3D000/.test(message)) return ' (no such database: create it first, e.g. createdb)'
  if (/42P01|3F000/.test(message)) return ' (no registry tables there: run `mqtt-bootstrap registry migrate` first)'
  return ''
}

/** A failure told as `<database>: <why>` with what to do, for exit 1; usage errors pass through as they are. */
export function databaseFailure(error: unknown, target: DatabaseTarget): Error {
  if (error instanceof UsageError) return error
  const code = (error as { code?: unknown })?.code
  const inner = error instanceof AggregateError ? error.errors.map((e) => (e as Error).message).join('; ') : ''
  const message = [(error as Error)?.message || String(error), typeof code === 'string' ? code : '', inner]
    .filter((part) => part !== '')
    .join(' ')
  const said = withoutPassword((error as Error)?.message || inner || String(error), target)
  return new Error(`${target.shown}: ${said}${hint(message)}`)
}

/** The registry on `target`, open (the database answered); a failure is told as {@link databaseFailure}. */
export async function openRegistry(
  target: DatabaseTarget,
  options: Omit<PostgresRegistryOptions, 'connectionString' | 'pool'> = {},
): Promise<PostgresRegistry> {
  try {
    const where = target.connectionString === undefined ? {} : { connectionString: target.connectionString }
    return await PostgresRegistry.open({ ...options, ...where })
  } catch (error) {
    throw databaseFailure(error, target)
  }
}

/** Open the registry `--database` names, do `work`, close it: a command's whole life. */
export async function withRegistry<T>(
  database: string | undefined,
  work: (registry: PostgresRegistry, target: DatabaseTarget) => Promise<T>,
): Promise<T> {
  const target = databaseTarget(database)
  const registry = await openRegistry(target)
  try {
    return await work(registry, target)
  } catch (error) {
    throw databaseFailure(error, target)
  } finally {
    await registry.close().catch(() => {})
  }
}
