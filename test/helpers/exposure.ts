/**
 * Everything a scenario exposes (log lines, event payloads, errors with stacks and causes, inspected objects), to
 * search for secrets afterwards.
 */
import { inspect } from 'node:util'
import type { BootstrapEvents, Logger, MqttBootstrap } from '../../packages/mqtt-bootstrap/src/index.js'

const deep = (value: unknown) => inspect(value, { depth: Number.POSITIVE_INFINITY, getters: true })
const jsonSafe = (_key: string, value: unknown) =>
  value instanceof Error ? { message: value.message, stack: value.stack, cause: value.cause } : value

/**
 * `value` as JSON.stringify shows it (toJSON honoured, as pino and JSON loggers do), with each error's `cause` chain
 * too (JSON.stringify(error) shows its own enumerable fields, a cause's among them when it has any) and Buffers as
 * their text, so that a secret serialised as bytes is found. Objects met again and cycles are cut.
 */
export function rawJson(value: unknown): string {
  const seen = new WeakSet<object>()
  try {
    return (
      JSON.stringify(value, (_key, field: unknown) => {
        if (typeof field === 'bigint') return String(field)
        if (typeof field !== 'object' || field === null) return field
        if (seen.has(field)) return '[seen]'
        seen.add(field)
        const bytes = field as { type?: unknown; data?: unknown }
        if (bytes.type === 'Buffer' && Array.isArray(bytes.data)) return Buffer.from(bytes.data).toString('latin1')
        if (field instanceof Error && field.cause !== undefined) return { ...field, cause: field.cause }
        return field
      }) ?? ''
    )
  } catch (error) {
    return `[unserialisable: ${(error as Error).message}]`
  }
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, jsonSafe) ?? ''
  } catch {
    return '[unserialisable]'
  }
}

/** Every event a bootstrap emits: a Record, so that an event added to BootstrapEvents and not here fails to compile. */
const EVENTS: Record<keyof BootstrapEvents, true> = {
  provisioning: true,
  registering: true,
  registered: true,
  retry: true,
  provisioned: true,
  cache: true,
  connecting: true,
  connected: true,
  'auth-rejected': true,
  error: true,
  renewing: true,
  renewed: true,
}
export const EVENT_NAMES = Object.keys(EVENTS) as Array<keyof BootstrapEvents>

export class Exposure {
  readonly #texts: string[] = []

  /** A pino-shaped logger that records every line. */
  logger(): Logger {
    const line = (level: string) => (fields: object, message?: string) => {
      // As inspected (debug, console) and as JSON (pino): JSON ignores the inspect hooks that hide secrets.
      this.#texts.push(`${level} ${message} ${deep(fields)} ${safeJson(fields)} ${rawJson(fields)}`)
    }
    return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') }
  }

  /** Record every event of `bootstrap`, as inspect and JSON. */
  watch(bootstrap: MqttBootstrap): MqttBootstrap {
    for (const name of EVENT_NAMES) {
      bootstrap.on(name, (payload: unknown) => {
        this.#texts.push(`${name} ${deep(payload)} ${JSON.stringify(payload, jsonSafe)} ${rawJson(payload)}`)
      })
    }
    return bootstrap
  }

  /**
   * Record values: inspected and as JSON (an MQTT client: its options), and for errors their messages and stacks
   * down the cause chain.
   */
  add(...values: unknown[]): void {
    for (const value of values) {
      this.#texts.push(deep(value))
      const client = value as { options?: unknown; connected?: unknown }
      this.#texts.push(rawJson(typeof client.connected === 'boolean' ? client.options : value))
      for (let e = value; e instanceof Error; e = e.cause) this.#texts.push(`${e.message}\n${e.stack}`)
    }
  }

  /** Record a line of text as printed (e.g. by the `debug` package). */
  line(text: string): void {
    this.#texts.push(text)
  }

  get text(): string {
    return this.#texts.join('\n')
  }

  /** The secrets (and their first 10 characters) that appear anywhere. */
  leaks(secrets: Iterable<string>): string[] {
    const text = this.text
    return [...secrets].filter(
      (secret) => secret.length > 0 && (text.includes(secret) || text.includes(secret.slice(0, 10))),
    )
  }

  clear(): void {
    this.#texts.length = 0
  }
}

/**
 * The whole suite's exposure: every bootstrap made by the test helpers logs and emits here, and test/setup.ts checks
 * after every test that none of the secrets the helpers have seen (answered device and product secrets, passwords
 * brokers received) appears in it.
 */
export const suite = {
  exposure: new Exposure(),
  secrets: new Set<string>(),
  /** Library objects of the current test, inspected at its end. */
  objects: [] as unknown[],
  /** Remember a secret the helpers handed out or saw (short or empty values are not secrets). */
  secret(value: unknown): void {
    if (typeof value === 'string' && value.length >= 8) suite.secrets.add(value)
  },
}
