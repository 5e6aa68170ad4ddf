/**
 * Replacing seams through tsyringe: a logger, a credential store and an HTTP transport wrapper registered in the
 * app's own container. The bootstrap works in a child of it and never touches tsyringe's global container.
 *
 *   PROVISION_URL=https://provision.example.com/bootstrap CREDENTIALS=./credentials.json npx tsx examples/di-override.ts
 */
import 'reflect-metadata' // tsyringe needs it before it loads (the app's own: tsyringe is an optional peer)
import { readFileSync } from 'node:fs'
import {
  connectProvisioned,
  FileCredentialStore,
  type HttpRequest,
  type HttpResponse,
  type HttpTransport,
  type Logger,
  TOKENS,
  UndiciTransport,
} from 'mqtt-bootstrap'
import { container } from 'tsyringe'

const ca = process.env.CA_FILE ? readFileSync(process.env.CA_FILE, 'utf8') : undefined

/** Times every provisioning request (a wrapper, so the default transport still does the work). */
class TimedTransport implements HttpTransport {
  readonly #inner = new UndiciTransport(ca === undefined ? {} : { ca })
  async post(request: HttpRequest): Promise<HttpResponse> {
    const started = performance.now()
    try {
      return await this.#inner.post(request)
    } finally {
      console.log(`POST ${request.url.host} took ${(performance.now() - started).toFixed(1)} ms`)
    }
  }
}

const logger: Logger = {
  debug: () => {},
  info: (fields, message) => console.log('info', message, fields),
  warn: (fields, message) => console.warn('warn', message, fields),
  error: (fields, message) => console.error('error', message, fields),
}

const app = container.createChildContainer()
app.register(TOKENS.HttpTransport, { useValue: new TimedTransport() })
app.register(TOKENS.CredentialStore, {
  useValue: new FileCredentialStore(process.env.CREDENTIALS ?? './credentials.json'),
})
app.register(TOKENS.Logger, { useValue: logger })

const client = await connectProvisioned({
  url: process.env.PROVISION_URL ?? 'https://provision.example.com/bootstrap',
  data: { serial: process.env.SERIAL ?? 'SN-0001' },
  mqtt: ca === undefined ? {} : { ca },
  container: app,
})
await client.endAsync()
