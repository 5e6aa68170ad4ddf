/**
 * serve's error lines on stderr. While the database is away every request fails the same way: one line per request
 * would bury the log (and let anyone fill it), so the same message is written at most once per {@link QUIET_MS}, then
 * once more with how many were left out when it comes again later.
 */
const QUIET_MS = 10_000

export function errorLog(now: () => number = Date.now): (message: string) => void {
  const last = new Map<string, { at: number; left: number }>()
  return (message) => {
    const time = now()
    const seen = last.get(message)
    // Most recently seen last: bounded, the message seen longest ago is forgotten first.
    last.delete(message)
    if (seen !== undefined && time - seen.at < QUIET_MS) {
      seen.left++
      last.set(message, seen)
      return
    }
    const more = seen !== undefined && seen.left > 0 ? ` (and ${seen.left} more like it in ${QUIET_MS / 1000} s)` : ''
    last.set(message, { at: time, left: 0 })
    if (last.size > 100) last.delete(last.keys().next().value as string)
    console.error(`${new Date(time).toISOString()} error: ${message}${more}`)
  }
}

/** The one of this process (serve's and its database's errors together). */
export const logError = errorLog()
