/** `mqtt-bootstrap serve`: the reference provisioning server over a device registry file, over HTTPS. */
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createProvisioningHandler } from '../server/handler.js'
import { DeviceRegistry } from '../server/registry.js'
import { generateCertificates } from './certificates.js'
import { EXIT, parseIntegerOption, readFileOption, UsageError } from './io.js'

export interface ServeFlags {
  registry: string
  port: string
  host: string
  path: string
  cert?: string
  key?: string
  caOut: string
}

export async function serveCommand(flags: ServeFlags): Promise<number> {
  let registry: DeviceRegistry
  try {
    registry = new DeviceRegistry(flags.registry)
  } catch (error) {
    throw new UsageError(`--registry: ${(error as Error).message}`)
  }
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError('--cert and --key go together')
  const port = parseIntegerOption(flags.port, '--port')
  let tls: { cert: string; key: string }
  let caNote: string
  if (flags.cert !== undefined && flags.key !== undefined) {
    tls = { cert: readFileOption(flags.cert, '--cert') ?? '', key: readFileOption(flags.key, '--key') ?? '' }
    caNote = 'your certificate'
  } else {
    const generated = await generateCertificates([flags.host, 'localhost'])
    writeFileSync(flags.caOut, generated.ca)
    tls = generated
    caNote = `generated; clients trust ${flags.caOut} (--ca ${flags.caOut})`
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
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"code":"10404","message":"not found"}')
      req.resume()
      return
    }
    handler(req, res)
  })
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
