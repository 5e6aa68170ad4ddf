/** Start the bench servers in processes of their own (so that they do not share the measured process's CPU). */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import type { Server as HttpServer } from 'node:http'
import type { Server } from 'node:net'

export interface ServerProcess {
  port: number
  child: ChildProcess
  /** Send an IPC message and wait for the next message back (or none). */
  ask<T>(message: string): Promise<T>
  tell(message: string): void
  stop(): Promise<void>
}

export async function startProcess(script: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  })
  let output = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start`)), 30_000)
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const match = /port (\d+)/.exec(output)
      if (match) {
        clearTimeout(timer)
        resolve(Number(match[1]))
      }
    })
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)))
  })
  return {
    port,
    child,
    tell: (message) => child.send(message),
    ask: async <T>(message: string) => {
      const reply = once(child, 'message')
      child.send(message)
      return ((await reply) as [T])[0]
    },
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = once(child, 'exit')
      child.send('stop')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}

/**
 * The child's side of startProcess(): listen on a loopback port of the system's choosing and print it, answer 'cpu'
 * with this process's CPU usage, pass other messages to `onMessage`, and exit on 'stop' (after `stop`, by default
 * closing the server and its connections) or when the parent is gone.
 */
export function serveToParent(
  server: Server,
  options: { backlog?: number; onMessage?: (message: unknown) => void; stop?: (exit: () => void) => void } = {},
): void {
  const exit = () => process.exit(0)
  const {
    backlog = 511,
    onMessage,
    stop = () => {
      // An HTTP(S) server also drops its idle keep-alive connections, which would hold close() open.
      if ('closeAllConnections' in server) (server as HttpServer).closeAllConnections()
      server.close(exit)
    },
  } = options
  server.listen(0, '127.0.0.1', backlog, () => {
    const address = server.address()
    process.stdout.write(`port ${typeof address === 'object' && address ? address.port : 0}\n`)
  })
  process.on('message', (message: unknown) => {
    if (message === 'cpu') process.send?.(process.cpuUsage())
    else if (message === 'stop') stop(exit)
    else onMessage?.(message)
  })
  process.on('disconnect', exit)
}
