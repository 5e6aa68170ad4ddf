/**
 * A real PostgreSQL (Debian's `postgresql`, 15) for the tests: a throwaway cluster made by `initdb` in a temp dir,
 * started by `pg_ctl` on 127.0.0.1 and a free port, stopped and removed afterwards. PostgreSQL refuses to run as root:
 * as root, its tools run as the `postgres` user (`runuser`), and the data dir is handed to that user.
 *
 * One cluster serves a whole test file (initdb takes about a second); each test gets a database of its own from
 * {@link Postgres.database}. {@link Postgres.restart} stops and starts the same cluster on the same port: the
 * database going away and coming back, as a fault test needs.
 */
import { execFile } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { chown, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { freePort } from './ports.js'

const run = promisify(execFile)

const BIN_DIRS = ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin']

/** The directory of `initdb`, `pg_ctl` and `postgres`: Debian keeps them off PATH, under /usr/lib/postgresql/N/bin. */
function locateBin(): string | undefined {
  for (const dir of [...BIN_DIRS, ...(process.env.PATH ?? '').split(':')]) {
    if (dir === '') continue
    try {
      accessSync(join(dir, 'initdb'), constants.X_OK)
      accessSync(join(dir, 'pg_ctl'), constants.X_OK)
      return dir
    } catch {
      // not here
    }
  }
  return undefined
}

const BIN = locateBin()
const AS_ROOT = process.getuid?.() === 0
const INSTALL_HINT = 'apt-get install -y postgresql (Debian/Ubuntu; .ci/run does it)'

const inCi = (): boolean => {
  const ci = process.env.CI
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false'
}

/**
 * For `describe.skipIf(...)`: the reason to skip the PostgreSQL tests here (PostgreSQL missing, outside CI), or
 * `undefined` to run them. In CI a missing PostgreSQL is a failure, never a silent skip: this throws.
 */
export function postgresSkipReason(): string | undefined {
  if (BIN !== undefined) return undefined
  const missing = 'PostgreSQL is not installed (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH)'
  if (inCi()) throw new Error(`${missing}, and CI is set: a CI run must not skip these tests (${INSTALL_HINT})`)
  console.warn(`skipping the PostgreSQL tests: ${missing}; to run them: ${INSTALL_HINT}`)
  return missing
}

export interface Postgres {
  port: number
  /** `postgres://postgres@127.0.0.1:<port>/<name>` */
  url(name?: string): string
  /** A new, empty database (a unique name), and its URL. */
  database(): Promise<string>
  /** Stop the server (fast shutdown: clients are disconnected), as a database that goes away. */
  halt(): Promise<void>
  /** Start it again, same data, same port. */
  resume(): Promise<void>
  /** halt() then resume(). */
  restart(): Promise<void>
  /** Stop the server and remove its data dir. Safe to call twice. */
  stop(): Promise<void>
}

/** Run a PostgreSQL tool, as the postgres user when we are root. */
async function tool(name: string, args: string[]): Promise<string> {
  const binary = join(BIN as string, name)
  const [file, argv] = AS_ROOT ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, args]
  const { stdout } = await run(file, argv, { timeout: 60_000 })
  return stdout
}

/** Clusters of test workers killed before their exit hook ran: stop and remove those older than an hour. */
async function sweepStale(): Promise<void> {
  const names = await readdir(tmpdir()).catch(() => [] as string[])
  const stale = Date.now() - 60 * 60 * 1000
  for (const name of names.filter((n) => n.startsWith('mqtt-bootstrap-pg-')).slice(0, 20)) {
    const dir = join(tmpdir(), name)
    const info = await stat(dir).catch(() => undefined)
    if (info === undefined || info.mtimeMs >= stale) continue
    await tool('pg_ctl', ['-D', join(dir, 'data'), '-m', 'immediate', 'stop']).catch(() => {})
    await rm(dir, { recursive: true, force: true }).catch(() => {})
  }
}

let databases = 0

/** initdb + pg_ctl start on a free port (tried again on another port if the first is taken). */
export async function startPostgres(): Promise<Postgres> {
  if (BIN === undefined) throw new Error(`PostgreSQL is not installed: ${INSTALL_HINT}`)
  await sweepStale()
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-pg-'))
  const data = join(dir, 'data')
  const log = join(dir, 'postgres.log')
  if (AS_ROOT) {
    const { stdout } = await run('id', ['-u', 'postgres'])
    const { stdout: gid } = await run('id', ['-g', 'postgres'])
    await chown(dir, Number(stdout.trim()), Number(gid.trim()))
  }
  await tool('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'])
  let port = 0
  const start = async () => {
    // fsync stays on: a crash test must see what a real server keeps. The socket lives in the temp dir.
    const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`
    await tool('pg_ctl', ['-D', data, '-o', options, '-l', log, '-w', '-t', '30', 'start'])
  }
  const failures: string[] = []
  for (let attempt = 1; attempt <= 3 && port === 0; attempt++) {
    const candidate = await freePort()
    port = candidate
    try {
      await start()
    } catch (error) {
      port = 0
      failures.push(`port ${candidate}: ${(error as Error).message}\n${await readFile(log, 'utf8').catch(() => '')}`)
    }
  }
  if (port === 0) {
    await rm(dir, { recursive: true, force: true })
    throw new Error(`PostgreSQL did not start:\n${failures.join('\n')}`)
  }
  const url = (name = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${name}`
  let running = true
  const halt = async () => {
    if (!running) return
    await tool('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'])
    running = false
  }
  const resume = async () => {
    if (running) return
    await start()
    running = true
  }
  let stopped = false
  return {
    port,
    url,
    async database() {
      const name = `t${process.pid}_${++databases}`
      const client = new pg.Client({ connectionString: url() })
      await client.connect()
      try {
        await client.query(`CREATE DATABASE ${name}`)
      } finally {
        await client.end()
      }
      return url(name)
    },
    halt,
    resume,
    async restart() {
      await halt()
      await resume()
    },
    async stop() {
      if (stopped) return
      stopped = true
      await tool('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * For a test file's `describe.skipIf(postgresSkipReason())` block: one cluster for its tests (started before them,
 * stopped after them), and `closeLater(fn)`: what a test opened, closed after it in the reverse order.
 */
export function usePostgres(): { readonly db: Postgres; closeLater(close: () => Promise<unknown>): void } {
  let db: Postgres | undefined
  const closers: Array<() => Promise<unknown>> = []
  beforeAll(async () => {
    db = await startPostgres()
  }, 60_000)
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
  })
  afterAll(async () => {
    await db?.stop()
  })
  return {
    get db() {
      if (db === undefined) throw new Error('the PostgreSQL cluster is not started yet (use it inside a test)')
      return db
    },
    closeLater: (close) => {
      closers.push(close)
    },
  }
}
