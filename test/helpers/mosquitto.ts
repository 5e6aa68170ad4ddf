/**
 * A real mosquitto broker (Debian's 2.0.x: MQTT 5, 3.1.1 and 3.1) as a child process, for the reason codes aedes
 * cannot give: on 127.0.0.1, with a generated config in a temp dir, `allow_anonymous false` and a password file
 * written by `mosquitto_passwd`, optionally a TLS listener too.
 *
 * mosquitto cannot listen on port 0: a free port is found by binding a server on port 0 and closing it, and the start
 * is tried again on other ports (a few times) if mosquitto cannot bind. It logs everything to stderr (unbuffered;
 * its stdout is block-buffered in a pipe), which the helper keeps and parses: the CONNACKs it sent and the clients it
 * accepted are what the broker itself says happened.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants } from 'node:fs'
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { suite } from './exposure.js'
import { freePort } from './ports.js'

const run = promisify(execFile)

/** `name` on PATH, else in the sbin directories Debian installs mosquitto to (often not on a user's PATH). */
function locate(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/bin']
  for (const dir of dirs) {
    if (dir === '') continue
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

export const MOSQUITTO = locate('mosquitto')
export const MOSQUITTO_PASSWD = locate('mosquitto_passwd')

const INSTALL_HINT = 'apt-get install -y mosquitto (Debian/Ubuntu; it provides mosquitto and mosquitto_passwd)'

/** Why the mosquitto tests cannot run on this machine, or `undefined` when they can. */
export const mosquittoMissing: string | undefined =
  MOSQUITTO === undefined
    ? 'mosquitto is not installed (looked on PATH and in /usr/sbin, /usr/local/sbin)'
    : MOSQUITTO_PASSWD === undefined
      ? 'mosquitto_passwd is not installed (looked on PATH and in /usr/sbin, /usr/local/sbin)'
      : undefined

const inCi = (): boolean => {
  const ci = process.env.CI
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false'
}

/**
 * For `describe.skipIf(...)`: the reason to skip the mosquitto tests here (mosquitto missing, outside CI), or
 * `undefined` to run them. In CI a missing mosquitto is a failure, never a silent skip: this throws.
 */
export function mosquittoSkipReason(): string | undefined {
  if (mosquittoMissing === undefined) return undefined
  if (inCi()) {
    throw new Error(
      `${mosquittoMissing}, and CI is set: .ci/run installs it (${INSTALL_HINT}); a CI run must not skip these tests`,
    )
  }
  return `${mosquittoMissing}; to run these tests: ${INSTALL_HINT}`
}

export interface MosquittoOptions {
  /** The password file: user name -> password. */
  users: Record<string, string>
  /** Also listen with TLS, with this certificate and key (`ca` is written as the listener's cafile). */
  tls?: { ca: string; cert: string; key: string }
  /**
   * On the TLS listener: `require_certificate true` and `use_identity_as_username true`, so that a client connects by
   * a certificate that chains to `tls.ca` (its CN is its user name), and one without such a certificate is refused.
   */
  requireCertificate?: boolean
  /** How long to wait for the listeners, per start attempt. @default 5000 */
  readyTimeoutMs?: number
  /**
   * Keep sessions and queued messages across a restart (`persistence true`, in the helper's temp dir, saved every
   * second and on exit), for pause() and resume().
   */
  persistence?: boolean
}

/** A client mosquitto accepted (`New client connected from … as <id> (p<protocol>, c<clean>, k<keepalive>, u'<user>')`). */
export interface AcceptedClient {
  clientId: string
  /** mosquitto's protocol number: 2 is MQTT 3.1.1, 5 is MQTT 5, 1 is MQTT 3.1. */
  protocol: number
  clean: boolean
  keepalive: number
  username: string | undefined
}

/** A CONNACK mosquitto sent: to a client id (accepted) or to an address (refused before it had one). */
export interface SentConnack {
  to: string
  sessionPresent: boolean
  /** 3.1.1 return code or MQTT 5 reason code. */
  code: number
}

export interface Mosquitto {
  /** `127.0.0.1:<port>` of the plain TCP listener. */
  host: string
  port: number
  /** `127.0.0.1:<port>` of the TLS listener, when there is one. */
  tlsHost: string | undefined
  tlsPort: number | undefined
  /** Every line mosquitto has logged (log_type all). */
  readonly log: readonly string[]
  /** The position in the log now: pass it to connacks()/accepted() to see what happened after it. */
  mark(): number
  connacks(since?: number): SentConnack[]
  accepted(since?: number): AcceptedClient[]
  /** Resolves when a log line after `since` matches (bounded in time). */
  waitForLog(pattern: RegExp, since: number, timeoutMs?: number): Promise<string>
  /** Rewrite the password file with `users` and make mosquitto reload it (SIGHUP; paused, at resume()). */
  setUsers(users: Record<string, string>): Promise<void>
  /** Stop mosquitto (SIGTERM: it saves its persistence) and wait for it to exit; its dir and ports are kept. */
  pause(): Promise<void>
  /** Start it again after pause(), on the same ports with the same config; resolves once it listens. */
  resume(): Promise<void>
  /** Kill mosquitto and wait for it to exit; remove its temp dir. Safe to call twice. */
  stop(): Promise<void>
}

const MAX_START_ATTEMPTS = 5

/**
 * Temp dirs of test workers that were killed before their exit hook ran (SIGKILL, a crashed run) hold test keys and
 * password hashes: remove those older than an hour (no live run is that old; the file takes seconds).
 */
async function sweepStaleDirs(): Promise<void> {
  const names = await readdir(tmpdir()).catch(() => [] as string[])
  const stale = Date.now() - 60 * 60 * 1000
  for (const name of names.filter((n) => n.startsWith('mqtt-bootstrap-mosquitto-')).slice(0, 100)) {
    const path = join(tmpdir(), name)
    const info = await stat(path).catch(() => undefined)
    if (info !== undefined && info.mtimeMs < stale) await rm(path, { recursive: true, force: true }).catch(() => {})
  }
}

/** Start mosquitto. Throws (with its log) if it cannot be started on a free port after a few tries. */
export async function startMosquitto(options: MosquittoOptions): Promise<Mosquitto> {
  const binary = MOSQUITTO
  if (binary === undefined || mosquittoMissing !== undefined) throw new Error(mosquittoMissing ?? 'no mosquitto')
  await sweepStaleDirs()
  const dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-mosquitto-'))
  try {
    const passwordFile = join(dir, 'passwords')
    await writePasswords(passwordFile, options.users)
    let tlsFiles: { ca: string; cert: string; key: string } | undefined
    if (options.tls) {
      tlsFiles = { ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') }
      await writeFile(tlsFiles.ca, options.tls.ca, { mode: 0o600 })
      await writeFile(tlsFiles.cert, options.tls.cert, { mode: 0o600 })
      await writeFile(tlsFiles.key, options.tls.key, { mode: 0o600 })
    }
    const failures: string[] = []
    for (let attempt = 1; attempt <= MAX_START_ATTEMPTS; attempt++) {
      const port = await freePort()
      const tlsPort = tlsFiles ? await freePort([port]) : undefined
      const config = join(dir, 'mosquitto.conf')
      const requireCertificate = options.requireCertificate === true
      const persistence = options.persistence === true ? dir : undefined
      await writeFile(config, configText({ port, tlsPort, tlsFiles, passwordFile, requireCertificate, persistence }))
      const ports = [port, ...(tlsPort === undefined ? [] : [tlsPort])]
      const started = await launch(binary, config, ports, options)
      if (started.ok) {
        const relaunch = () => launch(binary, config, ports, options)
        return handle(started.child, started.log, { dir, port, tlsPort, passwordFile, relaunch })
      }
      failures.push(`attempt ${attempt} (ports ${port}${tlsPort ? `, ${tlsPort}` : ''}): ${started.reason}`)
    }
    throw new Error(`mosquitto did not start after ${MAX_START_ATTEMPTS} attempts:\n${failures.join('\n')}`)
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

function configText(o: {
  port: number
  tlsPort: number | undefined
  tlsFiles: { ca: string; cert: string; key: string } | undefined
  passwordFile: string
  requireCertificate: boolean
  persistence: string | undefined
}): string {
  const lines = [
    // Global settings first (per_listener_settings is false): they apply to every listener.
    'allow_anonymous false',
    `password_file ${o.passwordFile}`,
    ...(o.persistence === undefined
      ? ['persistence false']
      : // Whole streams are queued for a subscriber that reconnects after a restart: no cap on the queue.
        ['persistence true', `persistence_location ${o.persistence}/`, 'autosave_interval 1', 'max_queued_messages 0']),
    'log_dest stderr',
    'log_type all',
    'log_timestamp false',
    'connection_messages true',
    // As root, mosquitto would otherwise drop to the `mosquitto` user, which cannot read our 0700 temp dir.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    `listener ${o.port} 127.0.0.1`,
  ]
  if (o.tlsPort !== undefined && o.tlsFiles) {
    lines.push(
      `listener ${o.tlsPort} 127.0.0.1`,
      `cafile ${o.tlsFiles.ca}`,
      `certfile ${o.tlsFiles.cert}`,
      `keyfile ${o.tlsFiles.key}`,
    )
    if (o.requireCertificate) lines.push('require_certificate true', 'use_identity_as_username true')
  }
  return `${lines.join('\n')}\n`
}

/** The password file, hashed by mosquitto_passwd in one call (-U turns a `user:password` text file into hashes). */
async function writePasswords(path: string, users: Record<string, string>): Promise<void> {
  for (const [user, password] of Object.entries(users)) {
    if (user.includes(':') || /[\r\n]/.test(user + password)) throw new Error('user names cannot hold ":" or newlines')
    suite.secret(password) // a secret the broker holds: it must not show in what the library exposes
  }
  const text = Object.entries(users)
    .map(([user, password]) => `${user}:${password}\n`)
    .join('')
  await writeFile(path, text, { mode: 0o600 })
  await run(MOSQUITTO_PASSWD as string, ['-U', path], { timeout: 5000 })
}

type Launch = { ok: true; child: ChildProcess; log: string[] } | { ok: false; reason: string }

/** Spawn mosquitto and wait until every port accepts connections, it exits, or the time is up. */
async function launch(binary: string, config: string, ports: number[], options: MosquittoOptions): Promise<Launch> {
  const child = spawn(binary, ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  const log: string[] = []
  let partial = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n')
    partial = lines.pop() ?? ''
    log.push(...lines)
  })
  let exited: string | undefined
  child.once('error', (error) => {
    exited = `cannot run ${binary}: ${error.message}`
  })
  child.once('exit', (code, signal) => {
    exited ??= `exited (${signal ?? `code ${code}`})`
  })
  const deadline = performance.now() + (options.readyTimeoutMs ?? 5000)
  // Ready: mosquitto says it runs (it has bound every listener by then: another process that took a port first
  // cannot pass for it), and each port accepts a connection.
  const running = () => log.some((line) => /^mosquitto version \S+ running$/.test(line))
  const waiting = new Set(ports)
  for (let i = 0; i < 1000 && waiting.size > 0; i++) {
    if (exited !== undefined) break
    if (performance.now() > deadline) break
    if (running()) for (const port of [...waiting]) if (await accepts(port)) waiting.delete(port)
    if (waiting.size > 0) await sleep(10)
  }
  if (waiting.size === 0 && exited === undefined) return { ok: true, child, log }
  await kill(child)
  const why =
    exited ??
    `${running() ? `ports ${[...waiting].join(', ')} not listening` : 'not running'} within ${options.readyTimeoutMs ?? 5000} ms`
  return { ok: false, reason: `${why}; log: ${[...log, partial].join(' | ')}` }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.setTimeout(500)
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
    socket.once('timeout', () => done(false))
  })
}

/** SIGTERM, then SIGKILL if it has not exited within 2 s; resolves when it has exited (or after 5 s at most). */
async function kill(child: ChildProcess): Promise<void> {
  // Never started (spawn failed: no 'exit' will come), or already gone.
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const escalate = setTimeout(() => child.kill('SIGKILL'), 2000)
  const giveUp = sleep(5000, undefined, { ref: false })
  await Promise.race([exited, giveUp])
  clearTimeout(escalate)
}

const ACCEPTED = /^New client connected from \S+ as (\S+) \(p(\d+), c(\d), k(\d+)(?:, u'([^']*)')?\)\.$/
const CONNACK = /^Sending CONNACK to (\S+) \((\d), (\d+)\)$/

function handle(
  first: ChildProcess,
  log: string[],
  o: { dir: string; port: number; tlsPort: number | undefined; passwordFile: string; relaunch: () => Promise<Launch> },
): Mosquitto {
  let child = first
  // If the test worker exits without stop() (a crash), do not leave mosquitto behind.
  const reap = () => child.kill('SIGKILL')
  process.once('exit', reap)
  let stopped: Promise<void> | undefined
  const broker: Mosquitto = {
    host: `127.0.0.1:${o.port}`,
    port: o.port,
    tlsHost: o.tlsPort === undefined ? undefined : `127.0.0.1:${o.tlsPort}`,
    tlsPort: o.tlsPort,
    log,
    mark: () => log.length,
    connacks: (since = 0) =>
      log.slice(since).flatMap((line) => {
        const m = CONNACK.exec(line)
        return m ? [{ to: m[1] as string, sessionPresent: m[2] === '1', code: Number(m[3]) }] : []
      }),
    accepted: (since = 0) =>
      log.slice(since).flatMap((line) => {
        const m = ACCEPTED.exec(line)
        if (!m) return []
        const [, clientId, protocol, clean, keepalive, username] = m
        return [
          {
            clientId: clientId as string,
            protocol: Number(protocol),
            clean: clean === '1',
            keepalive: Number(keepalive),
            username,
          },
        ]
      }),
    waitForLog: async (pattern, since, timeoutMs = 5000) => {
      const deadline = performance.now() + timeoutMs
      for (let i = 0; i < 10_000; i++) {
        const line = log.slice(since).find((l) => pattern.test(l))
        if (line !== undefined) return line
        if (performance.now() > deadline || child.exitCode !== null) break
        await sleep(5)
      }
      throw new Error(`mosquitto logged no line matching ${pattern} within ${timeoutMs} ms`)
    },
    setUsers: async (users) => {
      await writePasswords(o.passwordFile, users)
      if (child.exitCode !== null || child.signalCode !== null) return // paused: resume() reads the new file
      const since = log.length
      child.kill('SIGHUP')
      // mosquitto logs this, then reloads the config and password file in the same turn of its (single-threaded)
      // loop: a connection made after the line is checked against the new file.
      await broker.waitForLog(/^Reloading config\.$/, since)
    },
    pause: () => kill(child),
    resume: async () => {
      const started = await o.relaunch()
      if (!started.ok) throw new Error(`mosquitto did not start again: ${started.reason}`)
      log.push(...started.log.splice(0))
      child = started.child
      child.stderr?.on('data', () => log.push(...started.log.splice(0)))
    },
    stop: () => {
      stopped ??= (async () => {
        await kill(child)
        process.off('exit', reap)
        await rm(o.dir, { recursive: true, force: true })
      })()
      return stopped
    },
  }
  return broker
}
