/** `mqtt-bootstrap serve`: the reference provisioning server over a device registry file, over HTTPS. */
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { hostname, networkInterfaces } from 'node:os'
import { createProvisioningHandler } from '../handler.js'
import { DeviceRegistry } from '../registry.js'
import { generateCertificates } from './certificates.js'
import { EXIT, parsePortOption, readFileOption, UsageError } from './io.js'

export interface ServeFlags {
  registry: string
  port: string
  host: string
  path: string
  cert?: string
  key?: string
  caOut: string
  /** More names or addresses for a generated certificate. */
  san?: string[]
}

/** The names a generated certificate must carry: the host, or for a wildcard address every local one. */
function certificateNames(host: string, extra: string[]): string[] {
  const wildcard = host === '0.0.0.0' || host === '::' || host === ''
  const local = wildcard
    ? [
        hostname(),
        ...Object.values(networkInterfaces())
          .flat()
          .map((address) => address?.address)
          .filter((address): address is string => address !== undefined && !address.startsWith('fe80')),
      ]
    : [host]
  return [...new Set([...local, 'localhost', '127.0.0.1', '::1', ...extra])]
}

export async function serveCommand(flags: ServeFlags): Promise<number> {
  let registry: DeviceRegistry
  try {
    registry = new DeviceRegistry(flags.registry)
  } catch (error) {
    throw new UsageError(`--registry: ${(error as Error).message}`)
  }
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError('--cert and --key go together')
  const port = parsePortOption(flags.port, '--port')
  let tls: { cert: string; key: string }
  let caNote: string
  if (flags.cert !== undefined && flags.key !== undefined) {
    tls = { cert: readFileOption(flags.cert, '--cert') ?? '', key: readFileOption(flags.key, '--key') ?? '' }
    caNote = 'your certificate'
  } else {
    const names = certificateNames(flags.host, flags.san ?? [])
    const generated = await generateCertificates(names)
    try {
      writeFileSync(flags.caOut, generated.ca) // replaces an older one: each run has its own CA
    } catch {
      throw new UsageError(`--ca-out: cannot write ${flags.caOut}`)
    }
    tls = generated
    caNote = `generated for ${names.join(', ')}; clients trust ${flags.caOut} (--ca ${flags.caOut})`
  }

  const handler = createProvisioningHandler({
    resolve: (data) => {
      const resolution = registry.resolve(data)
      const outcome =
        resolution === undefined
          ? 'unknown device'
          : 'code' in resolution
            ? `refused ${resolution.code}`
            : 'known device'
      console.log(`${new Date().toISOString()}  ${outcome}`)
      return resolution
    },
    onError: (error) => console.error(`${new Date().toISOString()}  error: ${(error as Error).message}`),
  })
  const server = createServer({ ...tls, noDelay: true }, (req, res) => {
    if (req.url?.split('?')[0] !== flags.path) {
      res.writeHead(404, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end('{"code":"10404","message":"not found"}')
      req.resume()
      return
    }
    handler(req, res)
  })
  // Slow clients hold nothing for long: the headers within 10 s, the whole request within 15 s.
  server.headersTimeout = 10_000
  server.requestTimeout = 15_000
  server.listen(port, flags.host)
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([error]) => {
      throw error
    }),
  ])
  const { port: bound } = server.address() as AddressInfo
  const shown = flags.host.includes(':') ? `[${flags.host}]` : flags.host
  console.log(`provisioning server listening on https://${shown}:${bound}${flags.path}`)
  console.log(`registry ${flags.registry} (${registry.size} entries); certificate: ${caNote}`)
  console.log('stop with Ctrl-C')

  const signal = await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')])
  console.log(`\n${String(signal[0] ?? 'signal')}: stopping`)
  server.closeAllConnections()
  server.close()
  return EXIT.OK
}
