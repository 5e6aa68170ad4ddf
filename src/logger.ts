/**
 * The logging seam, shaped like pino's methods (`logger.info(fields, message)`) so a pino logger can be passed as is.
 * The library only ever logs fields without secrets. The default logs nothing.
 */
export interface Logger {
  debug(fields: object, message?: string): void
  info(fields: object, message?: string): void
  warn(fields: object, message?: string): void
  error(fields: object, message?: string): void
}

const ignore = (): void => {}

export const silentLogger: Logger = Object.freeze({ debug: ignore, info: ignore, warn: ignore, error: ignore })
