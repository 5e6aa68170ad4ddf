/**
 * What the device apps provision against, run from the installed server tarball (never from the apps, which have
 * only the device package): `createProvisioningHandler` over HTTP on 127.0.0.1 (the apps pass allowInsecureHttp)
 * and a real aedes broker on 127.0.0.1 port 0 that accepts only correctly signed aliyun credentials.
 *
 * It prints one JSON line `{ "url": … }` once both listen, and on SIGTERM (or after 4 minutes, so it never
 * outlives a crashed test) `connections N publishes M` with what the broker saw, then exits.
 */
export const FIXTURE_IMEI = '860000000000001'
export const FIXTURE_TOPIC = 'consumer/check'

export const fixtureSource = `import { createServer as createHttpServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { Aedes } from 'aedes'
import { createProvisioningHandler, verifyAliyunCredentials } from 'mqtt-bootstrap-server'

const device = { productKey: 'a1ConsumerPK', deviceName: 'consumer-1', deviceSecret: 'consumer-secret-0001' }
let connections = 0
let publishes = 0
const broker = await Aedes.createBroker({
  authenticate(client, username, password, done) {
    const secretOf = (pk, dn) => (pk === device.productKey && dn === device.deviceName ? device.deviceSecret : undefined)
    const ok = verifyAliyunCredentials({ clientId: client.id, username, password }, secretOf) !== undefined
    if (ok) connections++
    done(ok ? null : Object.assign(new Error('bad signature'), { returnCode: 4 }), ok)
  },
})
broker.on('publish', (packet, client) => {
  if (client && packet.topic === ${JSON.stringify(FIXTURE_TOPIC)}) publishes++
})
const mqttServer = createNetServer(broker.handle)
await new Promise((done) => mqttServer.listen(0, '127.0.0.1', done))
const host = 'mqtt://127.0.0.1:' + mqttServer.address().port
const handler = createProvisioningHandler({
  resolve: (data) =>
    data.imei === ${JSON.stringify(FIXTURE_IMEI)} ? { device, connect: { host, qos: 1, cleanSession: 1 } } : undefined,
})
const httpServer = createHttpServer(handler)
await new Promise((done) => httpServer.listen(0, '127.0.0.1', done))
console.log(JSON.stringify({ url: 'http://127.0.0.1:' + httpServer.address().port + '/bootstrap' }))

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  httpServer.closeAllConnections()
  httpServer.close()
  await new Promise((done) => broker.close(done))
  mqttServer.close()
  console.log('connections ' + connections + ' publishes ' + publishes)
  process.exit(0)
}
process.on('SIGTERM', stop)
setTimeout(stop, 240_000).unref()
`
