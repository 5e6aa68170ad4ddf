/** Child processes for tests: a TypeScript entry run as a user or a device would (`node --import tsx`). */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'

export interface ChildRun {
  code: number | null
  signal: NodeJS.Signals | null
  /** stdout and stderr, interleaved as they came. */
  output: string
}

export interface ChildOptions {
  /** Added to this process's environment. */
  env?: NodeJS.ProcessEnv
  /** Node options before `--import tsx` (e.g. `--require` a fixture). */
  nodeArgs?: string[]
  /** Killed (SIGKILL) after this long. @default 20000 */
  timeoutMs?: number
  /** Called with the output so far on every chunk (e.g. to kill the child at some point). */
  onOutput?: (output: string, child: ChildProcess) => void
}

/** Start `node [nodeArgs] --import tsx <script> [args]`: its output is collected as it comes. */
export function startTs(
  script: string,
  args: string[] = [],
  options: ChildOptions = {},
): { child: ChildProcess; output: () => string } {
  const { env = {}, nodeArgs = [], onOutput } = options
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', script, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const collect = (chunk: Buffer) => {
    output += chunk.toString()
    onOutput?.(output, child)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  return { child, output: () => output }
}

/** Run it to its end, bounded in time. */
export async function runTs(script: string, args: string[] = [], options: ChildOptions = {}): Promise<ChildRun> {
  const { child, output } = startTs(script, args, options)
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000)
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null]
  clearTimeout(timer)
  return { code, signal, output: output() }
}
