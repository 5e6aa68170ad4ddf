/** AbortSignal plumbing shared by the bootstrap and its phases. */

/** One signal for several (or the one, or none: no AbortSignal is made for nothing on the connect path). */
export function anySignal(first: AbortSignal, ...more: Array<AbortSignal | undefined>): AbortSignal
export function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined
export function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((signal): signal is AbortSignal => signal !== undefined)
  if (present.length <= 1) return present[0]
  return AbortSignal.any(present)
}

/** Wait for `work`, or until `signal` fires, whichever comes first. */
export async function untilSettledOrAborted(work: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return work
  if (signal.aborted) return
  let onAbort = () => {}
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve
    signal.addEventListener('abort', onAbort, { once: true })
  })
  await Promise.race([work, aborted])
  signal.removeEventListener('abort', onAbort)
}
