/**
 * A loopback stand-in for Azure IoT Hub Device Provisioning Service, answering as its HTTP API documents
 * (api-version 2019-03-31): PUT /{idScope}/registrations/{id}/register -> 202 { operationId, status: "assigning" },
 * GET /{idScope}/registrations/{id}/operations/{operationId} -> 200 { status: "assigned", registrationState }.
 * RETRY_AFTER (seconds) is sent with the 202 when set; without it the SDK polls after its default 2 s.
 */
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:https'
import { generateCertificates } from '../packages/mqtt-bootstrap-server/src/cli/certificates.js'
import { serveToParent } from './lib/processes.js'

const retryAfter = process.env.RETRY_AFTER
const tls = await generateCertificates(['127.0.0.1'])
writeFileSync(process.env.CA_FILE ?? 'dps-ca.pem', tls.ca)

const server = createServer({ key: tls.key, cert: tls.cert, noDelay: true }, (req, res) => {
  req.resume()
  req.on('end', () => {
    const match = /^\/([^/]+)\/registrations\/([^/]+)\/(register|operations\/([^?]+))/.exec(req.url ?? '')
    if (!match || !req.headers.authorization) {
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"errorCode":401000}')
      return
    }
    const registrationId = match[2] ?? ''
    const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' }
    if (req.method === 'PUT' && match[3] === 'register') {
      if (retryAfter !== undefined) headers['retry-after'] = retryAfter
      res
        .writeHead(202, headers)
        .end(JSON.stringify({ operationId: `op-${registrationId}-${Date.now()}`, status: 'assigning' }))
      return
    }
    res.writeHead(200, headers).end(
      JSON.stringify({
        operationId: match[4],
        status: 'assigned',
        registrationState: {
          registrationId,
          assignedHub: 'hub.example.azure-devices.net',
          deviceId: registrationId,
          status: 'assigned',
          substatus: 'initialAssignment',
          lastUpdatedDateTimeUtc: new Date().toISOString(),
          etag: 'IjAwMDAi',
        },
      }),
    )
  })
})
serveToParent(server)
