/**
 * A registry, or a store behind it (its database), that cannot answer now. The handler answers the device `"77777"`
 * with HTTP 503 and `Retry-After`, so that it comes back later; nothing was decided, nothing was assigned.
 */
export class RegistryUnavailableError extends Error {
  override name = 'RegistryUnavailableError'
  readonly code = 'REGISTRY_UNAVAILABLE'
  /** Whole seconds the device is told to wait (the answer's Retry-After). */
  readonly retryAfterSeconds: number

  /** `message` must not carry a secret: it reaches the handler's `onError` (and `serve`'s log) as it is. */
  constructor(message: string, retryAfterSeconds = 5) {
    super(message)
    if (!Number.isSafeInteger(retryAfterSeconds) || retryAfterSeconds < 0) {
      throw new TypeError(`Expected \`retryAfterSeconds\` to be a whole number of seconds, got ${retryAfterSeconds}`)
    }
    this.retryAfterSeconds = retryAfterSeconds
  }
}
