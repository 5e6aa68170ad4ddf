/**
 * Logging the way the app already does: hand the bootstrap your pino logger (any logger with pino's
 * debug/info/warn/error(fields, message) methods works). For a quick trace without code, run any app with
 * DEBUG=mqtt-bootstrap:* instead. Neither ever shows a secret.
 *
 *   PROVISION_URL=https://provision.example.com/bootstrap IMEI=860000000000001 npx tsx examples/observability.ts
 */
import { readFileSync } from 'node:fs'
import { connectProvisioned } from 'mqtt-bootstrap'
import { pino } from 'pino'

const logger = pino({ level: 'debug', base: { app: 'meter' } })
const ca = process.env.CA_FILE ? readFileSync(process.env.CA_FILE, 'utf8') : undefined

const client = await connectProvisioned({
  url: process.env.PROVISION_URL ?? 'https://provision.example.com/bootstrap',
  data: { imei: process.env.IMEI ?? '860000000000001' },
  tls: ca === undefined ? undefined : { ca },
  mqtt: ca === undefined ? {} : { ca },
  logger: logger.child({ component: 'mqtt-bootstrap' }),
  signal: AbortSignal.timeout(60_000),
})
logger.info({ clientId: client.options.clientId }, 'device online')
await client.endAsync()
