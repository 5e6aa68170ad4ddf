/**
 * The audit of the requests the registry's `resolve` did not answer itself (it writes its own in the claim's
 * transaction): claims refused by the verifier or the abuse limits, bad requests, failures. Written after the answer,
 * never delaying it. While the database is away these rows cannot be written: at most {@link MAX_PENDING} wait, the
 * others are counted and the count is told to `onError` when writing works again. A row's `identity` is what the
 * request claimed (unverified), cut to 256 characters.
 */
import type { IncomingMessage } from 'node:http'
import type pg from 'pg'
import { peerAddress } from '../claims/peer.js'
import type { RequestOutcome } from '../handler.js'
import { query, storable } from './pool.js'

/** Audit rows waiting for the database at most: beyond, rows are dropped (and counted), never queued unbounded. */
const MAX_PENDING = 256

export class Auditor {
  /** The requests whose row `resolve` wrote: not written twice. */
  readonly #written = new WeakSet<IncomingMessage>()
  #pending = 0
  #dropped = 0

  constructor(
    readonly pool: pg.Pool,
    readonly options: {
      server: string
      trusted: Parameters<typeof peerAddress>[1]
      clock: { now(): number }
      identityOf(data: unknown): string | undefined
      onError(error: Error): void
    },
  ) {}

  /** `request`'s audit row is written (by the claim's transaction). */
  written(request: IncomingMessage | undefined): void {
    if (request !== undefined) this.#written.add(request)
  }

  peer(request: IncomingMessage | undefined): string | undefined {
    return request === undefined ? undefined : peerAddress(request, this.options.trusted)
  }

  /** For the handler's `onRequest`. Never throws; a failure goes to `onError`. */
  record = (outcome: RequestOutcome): void => {
    if (this.#written.has(outcome.request)) return
    if (this.#pending >= MAX_PENDING) {
      this.#dropped++
      return
    }
    this.#pending++
    // What was claimed, cut, as text PostgreSQL takes (see storable).
    const claimed = this.options.identityOf(outcome.data)?.slice(0, 256)
    const identity = claimed === undefined ? null : storable(claimed)
    query(
      this.pool,
      'write an audit row',
      `INSERT INTO mqtt_bootstrap.claims (at, identity, peer, code, status, server)
       VALUES (to_timestamp($1 / 1000.0), $2, $3, $4, $5, $6)`,
      [
        this.options.clock.now(),
        identity,
        this.peer(outcome.request) ?? null,
        outcome.code ?? '(none)',
        outcome.status ?? null,
        this.options.server,
      ],
    )
      .then(() => {
        if (this.#dropped === 0) return
        const dropped = this.#dropped
        this.#dropped = 0
        this.options.onError(new Error(`audit: ${dropped} rows could not be written while the database was away`))
      })
      .catch((error: Error) => this.options.onError(error))
      .finally(() => this.#pending--)
  }
}
