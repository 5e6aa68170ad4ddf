/**
 * `mqtt-bootstrap serve` as a real process for tests: started with its arguments, waited for until its last start-up
 * line (its output may come in several chunks), and killed after each test of the scope it was set up in.
 */
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { afterEach, expect } from 'vitest'
import { startTs } from './child.js'
import { until } from './until.js'

export const SERVE_CLI = 'packages/mqtt-bootstrap-server/src/cli/index.ts'

/** In a test file or a describe: `serve(args)` starts `serve <args>`, and whatever still runs after a test is killed. */
export function useServeProcesses() {
  const running = new Set<ChildProcess>()
  afterEach(async () => {
    for (const child of running) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await once(child, 'close')
      }
    }
    running.clear()
  })

  /** `serve <args>` once it has started (or exited): its child, its output so far, and its URL. */
  async function serve(args: string[]) {
    const started = startTs(SERVE_CLI, ['serve', ...args])
    running.add(started.child)
    await until(
      () => /access log: /.test(started.output()) || started.child.exitCode !== null,
      20_000,
      'serve to listen',
    )
    const url = /listening on (https:\/\/\S+)/.exec(started.output())?.[1]
    expect(url, started.output()).toBeDefined()
    return { ...started, url: url as string }
  }

  return { serve }
}
