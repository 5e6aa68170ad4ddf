/**
 * The cross-process lock of a file: the directory `<path>.lock` (mkdir is atomic on every filesystem, and it is the
 * lock proper-lockfile made for earlier versions of this library, so old and new writers still exclude each other).
 * The holder touches it every `staleMs / 2`.
 *
 * Our own rather than proper-lockfile, which calls a lock stale only when its mtime is older than `stale` by the wall
 * clock: a lock left with its mtime in the future (the clock stepped back, as on devices without an RTC once NTP
 * answers), or a regular file of that name, was never stale, and every write waited for it forever. Here a lock is
 * also dead once its (type, inode, mtime) has not changed for `staleMs` by the monotonic clock: a live holder changes
 * the mtime twice in that time. No wait lasts longer than `staleMs` + {@link LOCK_GRACE_MS}.
 *
 * Two waiters that find the same dead lock may both take it over, if the second one's removal falls between the
 * first one's look and its mkdir (the race proper-lockfile has too, narrowed here by a second look just before the
 * removal; a release removes only its own lock). Its cost is an update lost to the other writer; the file itself is
 * always whole (atomic-file.ts). All sharers of a file must use the same `staleMs`, well above the filesystem's mtime
 * resolution (2 s on FAT).
 */
import { type Logger, traceFor } from '../logger.js'
import { duration, LONG_WAIT_MS, logWaited } from '../waits.js'

const fs = process.getBuiltinModule('node:fs/promises')

/** How much longer than `staleMs` a lock is waited for before the write fails (ms). */
export const LOCK_GRACE_MS = 500

/** The most a waiter sleeps between two looks at the lock (ms). */
const MAX_POLL_MS = 100

export type Release = () => Promise<void>

/**
 * Take the lock of `path`; rejects (code `ELOCKED`) when it stays held by a live holder past the bound. A wait is
 * logged to `log`: at info once it passes LONG_WAIT_MS (with its bound) and when it ends, if it lasted that long.
 */
export async function lockFile(path: string, staleMs: number, log: Logger = traceFor('store')): Promise<Release> {
  const lockPath = `${path}.lock`
  const started = performance.now()
  const maxWaitMs = staleMs + LOCK_GRACE_MS
  let seen: { id: string; since: number } | undefined
  let told = false
  for (let round = 0; ; round++) {
    try {
      await fs.mkdir(lockPath)
      if (round > 0) logWaited(log, Math.round(performance.now() - started), 'lock', `the lock ${lockPath}`)
      return holding(lockPath, staleMs, (await identity(lockPath))?.ino)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const now = performance.now()
    const id = await identity(lockPath)
    if (id !== undefined) {
      if (seen?.id !== id.key) seen = { id: id.key, since: now }
      if (Date.now() - id.mtimeMs > staleMs || now - seen.since >= staleMs) {
        // Looked at again just before the removal: another waiter may have taken the dead lock over meanwhile, and
        // the lock there now is its live one (this narrows the race described above to the two calls' gap).
        if ((await identity(lockPath))?.key === id.key) await fs.rm(lockPath, { recursive: true, force: true })
        seen = undefined
        continue
      }
    }
    const waited = now - started
    if (waited >= maxWaitMs) {
      logWaited(log, Math.round(waited), 'lock', `the lock ${lockPath}, in vain`)
      const message = `the lock ${lockPath} is held by a live process (waited ${Math.round(waited)} ms)`
      throw Object.assign(new Error(message), { code: 'ELOCKED' })
    }
    if (!told && waited > LONG_WAIT_MS) {
      told = true // a write held up this long says so while it waits, not only once it is over
      const fields = { waitMs: Math.round(waited), maxWaitMs, reason: 'lock' }
      log.info(fields, `waiting for the lock ${lockPath} (held by another process), at most ${duration(maxWaitMs)}`)
    }
    // Never past the bound: the last look comes at staleMs + LOCK_GRACE_MS, not a poll later.
    const poll = Math.min(MAX_POLL_MS, 5 * 2 ** round, staleMs / 4) * (0.5 + Math.random() / 2)
    await sleep(Math.max(1, Math.min(poll, staleMs + LOCK_GRACE_MS - waited)))
  }
}

/**
 * Held: touched every staleMs / 2 so waiters see a live holder, until released. A release removes the lock only while
 * it is still the one this holder made (`ino`): one taken over meanwhile is its new holder's.
 */
function holding(lockPath: string, staleMs: number, ino: number | undefined): Release {
  const touch = setInterval(() => {
    const now = new Date()
    fs.utimes(lockPath, now, now).catch(() => undefined)
  }, staleMs / 2)
  touch.unref()
  return async () => {
    clearInterval(touch)
    if (ino === undefined || (await identity(lockPath))?.ino === ino) {
      await fs.rm(lockPath, { recursive: true, force: true })
    }
  }
}

/** What tells one lock from another (and from a changed one): type, inode and mtime. */
async function identity(lockPath: string): Promise<{ key: string; ino: number; mtimeMs: number } | undefined> {
  const stats = await fs.lstat(lockPath).catch(() => undefined)
  if (stats === undefined) return undefined
  const { ino, mtimeMs } = stats
  return { key: `${stats.isDirectory()}:${ino}:${mtimeMs}`, ino, mtimeMs }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
