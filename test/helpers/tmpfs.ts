/** A real small disk for the disk-full cases: a tmpfs mounted (as root) on a new temp directory. */
import { execFileSync } from 'node:child_process'
import { closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, rmdirSync, statfsSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Mount a fresh tmpfs of `options` (e.g. `size=64k`) on a new directory; throws when refused. */
export function mountTmpfs(options: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-disk-'))
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' })
  } catch (error) {
    rmdirSync(dir)
    throw error
  }
  return dir
}

export function unmount(dir: string): void {
  execFileSync('umount', [dir], { stdio: 'pipe' })
  rmdirSync(dir)
}

/** Why tmpfs mounts are refused here (a warning), or `undefined`; in CI a refusal throws: tests must not skip. */
export function mountRefused(what: string): string | undefined {
  try {
    unmount(mountTmpfs('size=64k'))
    return undefined
  } catch (error) {
    const reason = `cannot mount a tmpfs here (root needed): ${(error as Error).message.split('\n')[0]}`
    if (process.env.CI) throw new Error(`${reason}; CI is set: a CI run must not skip ${what}`)
    console.warn(`skipping ${what}: ${reason}`)
    return reason
  }
}

/** Fill the disk, then free `room` bytes (a multiple of the page size): what a write may still use. */
export function fillLeaving(dir: string, room: number): void {
  const fd = openSync(join(dir, 'filler'), 'w')
  const page = Buffer.alloc(4096, 1)
  try {
    for (let i = 0; i < 100_000; i++) writeSync(fd, page) // bounded: the disk is 64 KB
    throw new Error('the disk did not fill up')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error
  }
  ftruncateSync(fd, Math.max(0, fstatSync(fd).size - room))
  closeSync(fd)
}

export function free(dir: string): number {
  const { bavail, bsize } = statfsSync(dir)
  return bavail * bsize
}
