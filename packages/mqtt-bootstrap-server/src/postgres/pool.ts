/**
 * The PostgreSQL connection pool of the registry and its stores (`pg`), and how its failures are told: a database
 * that cannot be reached, went away or is overloaded is a {@link RegistryUnavailableError} (the device gets `"77777"`,
 * HTTP 503 and Retry-After, and comes back), never a wrong answer. pg's Pool replaces a broken connection by itself,
 * so a database that comes back is used again without a restart.
 */
import type pg from 'pg'
import { RegistryUnavailableError } from '../unavailable.js'

export interface PoolOptions {
  /** `postgres://user:password@host:port/database`; without it, pg reads the standard `PG*` environment variables. */
  connectionString?: string
  /** The longest a claim waits for a connection or a query, in ms. @default 5000 */
  queryTimeoutMs?: number
  /** The most connections this process opens. @default 10 */
  maxConnections?: number
  /** Told when an idle connection fails (the database restarted): nothing to answer, the pool replaces it. */
  onError?(error: Error): void
}

export const POOL_DEFAULTS = Object.freeze({ queryTimeoutMs: 5000, maxConnections: 10 })

/** The Retry-After given while the database is unreachable, in seconds. */
export const UNAVAILABLE_RETRY_SECONDS = 5

/**
 * A pool for `options`. pg is loaded here, on first use: a server on the JSON registry, and every other command, never
 * load it (about 60 ms at start-up here).
 */
export async function createPool(options: PoolOptions): Promise<pg.Pool> {
  const { queryTimeoutMs = POOL_DEFAULTS.queryTimeoutMs, maxConnections = POOL_DEFAULTS.maxConnections } = options
  for (const [name, value] of [
    ['queryTimeoutMs', queryTimeoutMs],
    ['maxConnections', maxConnections],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new TypeError(`Expected \`${name}\` to be a positive integer, got ${String(value)}`)
    }
  }
  const { default: postgres } = await import('pg')
  const pool = new postgres.Pool({
    ...(options.connectionString === undefined ? {} : { connectionString: options.connectionString }),
    max: maxConnections,
    connectionTimeoutMillis: queryTimeoutMs,
    // The server ends a statement that runs too long, and the client stops waiting for one that never answers.
    statement_timeout: queryTimeoutMs,
    query_timeout: queryTimeoutMs + 1000,
    // A server process that froze (or lost power) mid-claim must not hold its row locks for hours: the database ends
    // its transaction once it has been idle in it that long. TCP keepalives find a database host that is gone.
    idle_in_transaction_session_timeout: queryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    idleTimeoutMillis: 30_000,
    application_name: 'mqtt-bootstrap',
  })
  listen(pool, options.onError)
  return pool
}

/** The pools listened to already (a pool of the caller's, given to more than one registry). */
const listened = new WeakSet<pg.Pool>()

/**
 * The listeners a pool needs not to take the process down when its database goes away; also given to a pool of the
 * caller's. Its idle connections' failures go to `onError`. And pg-pool hands a released connection straight to a
 * waiting caller, dropping its own listener before the caller adds one: a shutdown message read in between would be
 * an 'error' nobody hears. So every connection has a listener of its own for its whole life (each query still fails
 * with the error itself).
 */
export function listen(pool: pg.Pool, onError: ((error: Error) => void) | undefined): void {
  if (listened.has(pool)) return
  listened.add(pool)
  pool.on('error', (error) => onError?.(error))
  pool.on('connect', (client) => client.on('error', () => {}))
}

/**
 * Text as PostgreSQL can store it, the same text always the same way, and no two texts alike: a backslash doubled,
 * each control character (NUL is refused by PostgreSQL) and lone surrogate (it would become U+FFFD) as `\uXXXX`.
 */
export function storable(text: string): string {
  return text.replace(/[\\\p{Cc}\p{Cs}]/gu, (c) =>
    c === '\\' ? '\\\\' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}

/** SQLSTATE classes and codes that mean "not now": connection, resources, shutdown, a lost serialization race. */
const TRANSIENT_STATES = /^(?:08|53|57P0[1-4]|40001|40P01|55P03|57014)/

/** Network errors of the socket under a connection. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
])

/** pg's own messages for a connection that ended or never came (they carry no code). */
const LOST =
  /connection terminated|timeout exceeded when trying to connect|query read timeout|connection.*(?:ended|closed)|client has encountered a connection error|cannot use a pool after calling end/i

/** Whether `error` (from pg) says the database is unreachable or busy rather than that the query is wrong. */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string' && (TRANSIENT_STATES.test(code) || NETWORK_CODES.has(code))) return true
  if (error instanceof AggregateError) return error.errors.some(isTransient)
  return LOST.test(error.message)
}

/**
 * The error to throw for a failed `doing` ("assign a triplet"): a RegistryUnavailableError for a database that is
 * not there, else an Error. Only pg's code and message are kept: a `detail` can quote a row's values.
 */
export function databaseError(error: unknown, doing: string): Error {
  const code = (error as { code?: unknown })?.code
  const why = `${typeof code === 'string' ? `${code}: ` : ''}${(error as Error)?.message ?? String(error)}`
  return isTransient(error)
    ? new RegistryUnavailableError(`the database could not ${doing}: ${why}`, UNAVAILABLE_RETRY_SECONDS)
    : new Error(`the database could not ${doing}: ${why}`)
}

/** `pool.query`, its failure told as {@link databaseError}. */
export async function query<R extends pg.QueryResultRow = pg.QueryResultRow>(
  pool: pg.Pool | pg.PoolClient,
  doing: string,
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(text, values)
  } catch (error) {
    throw databaseError(error, doing)
  }
}

/**
 * `work` inside one transaction on one connection: committed when it returns, rolled back when it throws (or the
 * connection is lost: PostgreSQL rolls back what was not committed, so nothing is ever half-written). A connection
 * whose rollback failed is dropped, not reused.
 */
export async function transaction<T>(pool: pg.Pool, doing: string, work: (client: pg.PoolClient) => Promise<T>) {
  let client: pg.PoolClient
  try {
    client = await pool.connect()
  } catch (error) {
    throw databaseError(error, doing)
  }
  let broken: Error | undefined
  // A connection lost mid-transaction is not given back to the pool (the 'connect' listener only keeps its 'error'
  // from being unheard).
  const lost = (error: Error) => {
    broken ??= error
  }
  client.on('error', lost)
  try {
    await client.query('BEGIN')
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (error) {
    try {
      await client.query('ROLLBACK')
    } catch (rollback) {
      broken = rollback as Error
    }
    throw error instanceof RegistryUnavailableError || !(error instanceof Error) || !isPgError(error)
      ? error
      : databaseError(error, doing)
  } finally {
    client.off('error', lost)
    client.release(broken)
  }
}

/** An error from pg or its socket (a SQLSTATE, a network code, or one of pg's connection messages). */
function isPgError(error: Error): boolean {
  return isTransient(error) || typeof (error as { code?: unknown }).code === 'string' || LOST.test(error.message)
}
