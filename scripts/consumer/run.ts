/**
 * The consumer test's steps: each one prints `ok    name (ms)` or `FAIL  name` with what it printed, counts its
 * failure and has a timeout. Child processes get no standard input and are killed at their timeout.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { promisify } from 'node:util'

const exec = promisify(execFile)

/** npm's install flags everywhere: the cache first, no audit or funding requests (only the registry is contacted). */
export const INSTALL_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund'] as const

let failures = 0

export function failureCount(): number {
  return failures
}

export function pass(name: string, started: number, note = ''): void {
  console.log(`ok    ${name} (${Date.now() - started} ms${note === '' ? '' : `; ${note}`})`)
}

export function fail(name: string, detail: string): void {
  failures++
  console.log(`FAIL  ${name}\n${detail.trimEnd()}`)
}

export interface Outcome {
  exit: number | null
  stdout: string
  stderr: string
  killed: boolean
}

/** Runs a command to its end (or its timeout) and reports how it ended, without judging it. */
export async function execute(
  command: string,
  args: readonly string[],
  cwd: string,
  timeout = 120_000,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Outcome> {
  return exec(command, args, { cwd, timeout, env, maxBuffer: 32 * 1024 * 1024 }).then(
    ({ stdout, stderr }) => ({ exit: 0, stdout, stderr, killed: false }),
    (error: { code?: number | string; stdout?: string; stderr?: string; killed?: boolean; message: string }) => ({
      exit: typeof error.code === 'number' ? error.code : null,
      stdout: error.stdout ?? '',
      stderr: `${error.stderr ?? ''}${error.message}`,
      killed: error.killed === true,
    }),
  )
}

/**
 * A step that passes when the command exits 0 (and its output matches `expect`, when given). Returns its standard
 * output, or undefined when it failed.
 */
export async function step(
  name: string,
  command: string,
  args: readonly string[],
  cwd: string,
  options: { timeout?: number; expect?: RegExp; env?: NodeJS.ProcessEnv } = {},
): Promise<string | undefined> {
  const started = Date.now()
  const outcome = await execute(command, args, cwd, options.timeout, options.env)
  const output = `${outcome.stdout}${outcome.stderr}`
  if (outcome.exit !== 0) {
    fail(name, `exit ${outcome.exit}${outcome.killed ? ' (killed at its timeout)' : ''}\n${output}`)
    return undefined
  }
  if (options.expect !== undefined && !options.expect.test(outcome.stdout)) {
    fail(name, `output does not match ${options.expect}\n${output}`)
    return undefined
  }
  pass(name, started)
  return outcome.stdout
}

/** A check of something already at hand (no command): passes when `problem` is undefined. */
export function verdict(name: string, started: number, problem: string | undefined, note = ''): boolean {
  if (problem === undefined) {
    pass(name, started, note)
    return true
  }
  fail(name, problem)
  return false
}

/** A long-running child (a server), started and waited for until its output shows `ready`. */
export interface Service {
  /** Everything it printed so far. */
  output(): string
  /** The first match of `ready` in its standard output. */
  ready: RegExpExecArray
  /** SIGTERM, then SIGKILL after 5 s; resolves with its exit code (null: ended by a signal) once it has exited. */
  stop(): Promise<number | null>
  /** Whether stop() had to SIGKILL something: the child, or (a group) a member that outlived it by 5 s. */
  forced(): boolean
}

/** Every service not yet stopped, for the script's last `finally`. */
const running = new Set<() => Promise<number | null>>()

export async function stopServices(): Promise<void> {
  await Promise.all([...running].map((stop) => stop()))
}

/**
 * `group`: the child leads a process group of its own and is signalled as a group, as a terminal's Ctrl-C does. npx
 * needs it: SIGTERM to npx alone ends npx and leaves the command it started running, with no parent.
 */
export async function startService(
  command: string,
  args: readonly string[],
  cwd: string,
  ready: RegExp,
  options: { timeout?: number; group?: boolean } = {},
): Promise<Service> {
  const { timeout = 60_000, group = false } = options
  const child: ChildProcess = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: group })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code))
    child.once('error', () => resolve(null))
  })
  const signal = (name: NodeJS.Signals | 0): boolean => {
    try {
      if (group && child.pid !== undefined) process.kill(-child.pid, name)
      else if (name !== 0) child.kill(name)
      return true
    } catch {
      return false // ESRCH: nothing left to signal
    }
  }
  let forced = false
  const stop = async (): Promise<number | null> => {
    running.delete(stop)
    signal('SIGTERM')
    const killer = setTimeout(() => {
      forced = signal('SIGKILL')
    }, 5_000)
    const code = await exited
    // The group's other members (npx's child) may outlive its leader by a moment: 5 s at most, then killed.
    for (let i = 0; group && i < 100 && signal(0); i++) await new Promise((resolve) => setTimeout(resolve, 50))
    if (group && signal(0)) forced = signal('SIGKILL')
    clearTimeout(killer)
    return code
  }
  running.add(stop)
  const deadline = Date.now() + timeout
  let match: RegExpExecArray | null = null
  let gone = false
  void exited.then(() => {
    gone = true
  })
  // Polled (every 50 ms, bounded by the timeout) so that a child that dies or never gets ready is seen either way.
  while (match === null && !gone && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    match = ready.exec(stdout)
  }
  if (match === null) {
    await stop()
    throw new Error(`not ready (${gone ? `exited ${child.exitCode}` : 'timeout'}): ${stdout}${stderr}`)
  }
  return { output: () => `${stdout}${stderr}`, ready: match, stop, forced: () => forced }
}

/** `items` through `work`, at most `limit` at once (the machine has 2 cores). */
export async function inPool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T
      await work(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}
