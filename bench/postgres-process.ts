/**
 * The processes of the PostgreSQL registry bench (bench/postgres.ts), from the build, by ROLE:
 * - `json`: the reference handler over the JSON registry file REGISTRY (`DeviceRegistry`, its group key declared in
 *   the file), wired as `serve --registry` wires it: the registry's verifier over a MemoryNonceStore, the abuse limits,
 *   re-claims noted.
 * - `postgres`: the handler over `PostgresRegistry` on DATABASE, wired as `serve --database` wires it (verifier,
 *   limiter, claim log and audit of the registry), its own pool.
 *   Both serve HTTPS (TLS_CERT, TLS_KEY: PEM) on a loopback port, printed as `port <n>`, with no access log (the bench
 *   measures the registries, not console.log); 'failures' answers what was told to onError, 'stores' the stores used.
 * - `load`: the load generator. Asked `{ urls, imeis }` (JSON text over IPC), it signs every claim first (the device's
 *   signClaim, keys derived from GROUP_KEY), then sends them CONCURRENCY at a time over keep-alive HTTPS connections
 *   (claim i to urls[i % urls.length]), and answers how long that took, each claim's latency and what was not "00000".
 */
import { createServer } from 'node:https'
import { signClaim } from 'mqtt-bootstrap/contract'
import {
  createProvisioningHandler,
  DeviceRegistry,
  deriveDeviceKey,
  MemoryNonceStore,
  PostgresRegistry,
} from 'mqtt-bootstrap-server'
import { Agent, request } from 'undici'
import { serveToParent } from './lib/processes.js'

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} is not set`)
  return value
}

const role = env('ROLE')
if (role === 'load') startLoad()
else await startServer(role)

async function startServer(kind: string): Promise<void> {
  let failures = 0
  const onError = () => {
    failures++
  }
  let stores: Record<string, string> = {}
  let handler: ReturnType<typeof createProvisioningHandler>
  if (kind === 'json') {
    const registry = new DeviceRegistry(env('REGISTRY'))
    handler = createProvisioningHandler({
      resolve: registry.resolve,
      verify: registry.verifier({ nonces: new MemoryNonceStore() }),
      limits: { identity: 'imei' },
      onReclaim: () => {},
      onError,
    })
    stores = { registry: `DeviceRegistry (${registry.size} entries)`, nonces: 'MemoryNonceStore' }
  } else if (kind === 'postgres') {
    const registry = await PostgresRegistry.open({ connectionString: env('DATABASE'), onError })
    handler = createProvisioningHandler({
      resolve: registry.resolve,
      verify: registry.verifier(),
      limits: registry.limiter({ identity: 'imei' }),
      claims: registry.claims,
      onReclaim: () => {},
      onRequest: registry.audit,
      onError,
    })
    stores = { nonces: registry.nonces.constructor.name, claims: registry.claims.constructor.name }
  } else {
    throw new Error(`ROLE must be json, postgres or load, not ${kind}`)
  }
  serveToParent(createServer({ key: env('TLS_KEY'), cert: env('TLS_CERT'), noDelay: true }, handler), {
    onMessage: (message) => {
      if (message === 'failures') process.send?.({ failures })
      if (message === 'stores') process.send?.(stores)
    },
  })
}

interface Batch {
  urls: string[]
  imeis: string[]
}

function startLoad(): void {
  const groupKey = env('GROUP_KEY')
  const concurrency = Number(env('CONCURRENCY'))
  // At most `concurrency` requests in flight, so at most that many connections busy; each kept alive between batches.
  const agent = new Agent({ connect: { ca: env('TLS_CA') }, connections: concurrency })
  process.on('message', (message: unknown) => {
    if (message === 'cpu') process.send?.(process.cpuUsage())
    else if (message === 'stop') agent.destroy().finally(() => process.exit(0))
    else if (typeof message === 'string') {
      runBatch(agent, groupKey, concurrency, JSON.parse(message) as Batch).then(
        (result) => process.send?.(result),
        (error: Error) => process.send?.({ error: error.message }),
      )
    }
  })
  process.on('disconnect', () => process.exit(0))
  process.stdout.write('port 0 (the load generator listens on nothing)\n')
}

async function runBatch(agent: Agent, groupKey: string, concurrency: number, { urls, imeis }: Batch) {
  const now = Date.now()
  const claims = await Promise.all(
    imeis.map(async (imei, i) => {
      const url = urls[i % urls.length] as string
      const body = JSON.stringify({ imei })
      const key = Buffer.from(deriveDeviceKey(groupKey, imei), 'base64')
      const headers = await signClaim({ keyId: imei, key }, { method: 'POST', url, body }, now)
      return { url, body, headers: { 'content-type': 'application/json', ...headers } }
    }),
  )
  const latencies = new Array<number>(claims.length)
  const failures: Record<string, number> = {}
  const fail = (what: string) => {
    failures[what] = (failures[what] ?? 0) + 1
  }
  let next = 0
  const worker = async () => {
    while (next < claims.length) {
      const i = next++
      const { url, body, headers } = claims[i] as (typeof claims)[number]
      const started = performance.now()
      try {
        const response = await request(url, {
          method: 'POST',
          headers,
          body,
          dispatcher: agent,
          headersTimeout: 10_000,
          bodyTimeout: 10_000,
        })
        const answer = (await response.body.json()) as { code?: string }
        if (answer.code !== '00000') fail(`${answer.code} (${response.statusCode})`)
      } catch (error) {
        fail((error as NodeJS.ErrnoException).code ?? (error as Error).name)
      }
      latencies[i] = performance.now() - started
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: Math.min(concurrency, claims.length) }, worker))
  return { ms: performance.now() - started, latencies, failures }
}
