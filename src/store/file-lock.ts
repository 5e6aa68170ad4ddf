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
 * Two waiters that find the same dead lock may both take it over (a stat, then the removal): the race proper-lockfile
 * has too. Its cost is a lost update, which the next write repairs; the file itself is always whole (atomic-file.ts).
 */
const fs = process.getBuiltinModule('node:fs/promises')

/** How much longer than `staleMs` a lock is waited for before the write fails (ms). */
export const LOCK_GRACE_MS = 500

/** The most a waiter sleeps between two looks at the lock (ms). */
const MAX_POLL_MS = 100

export type Release = () => Promise<void>

/** Take the lock of `path`; rejects (code `ELOCKED`) when it stays held by a live holder past the bound. */
export async function lockFile(path: string, staleMs: number): Promise<Release> {
  const lockPath = `${path}.lock`
  const started = performance.now()
  let seen: { id: string; since: number } | undefined
  for (let round = 0; ; round++) {
    try {
      await fs.mkdir(lockPath)
      return holding(lockPath, staleMs)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const now = performance.now()
    const stats = await fs.lstat(lockPath).catch(() => undefined)
    if (stats !== undefined) {
      const id = `${stats.isDirectory()}:${stats.ino}:${stats.mtimeMs}`
      if (seen?.id !== id) seen = { id, since: now }
      if (Date.now() - stats.mtimeMs > staleMs || now - seen.since >= staleMs) {
        await fs.rm(lockPath, { recursive: true, force: true })
        seen = undefined
        continue
      }
    }
    if (now - started >= staleMs + LOCK_GRACE_MS) {
      const message = `the lock ${lockPath} is held by a live process (waited ${Math.round(now - started)} ms)`
      throw Object.assign(new Error(message), { code: 'ELOCKED' })
    }
    await sleep(Math.min(MAX_POLL_MS, 5 * 2 ** round, staleMs / 4) * (0.5 + Math.random() / 2))
  }
}

/** Held: touched every staleMs / 2 so waiters see a live holder, until released. */
function holding(lockPath: string, staleMs: number): Release {
  const touch = setInterval(() => {
    const now = new Date()
    fs.utimes(lockPath, now, now).catch(() => undefined)
  }, staleMs / 2)
  touch.unref()
  return async () => {
    clearInterval(touch)
    await fs.rm(lockPath, { recursive: true, force: true })
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
