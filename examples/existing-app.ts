/**
 * An existing mqtt.js app that calls mqtt.connect() itself: take the signed options from the bootstrap and keep the
 * rest of the app as it is.
 *
 *   PROVISION_URL=https://provision.example.com/bootstrap IMEI=860000000000001 npx tsx examples/existing-app.ts
 */
import { readFileSync } from 'node:fs'
import mqtt from 'mqtt'
import { createBootstrap, MemoryCredentialStore } from 'mqtt-bootstrap'

const ca = process.env.CA_FILE ? readFileSync(process.env.CA_FILE, 'utf8') : undefined
const boot = createBootstrap({
  url: process.env.PROVISION_URL ?? 'https://provision.example.com/bootstrap',
  data: { imei: process.env.IMEI ?? '860000000000001' },
  cache: new MemoryCredentialStore(),
  tls: ca === undefined ? undefined : { ca },
  mqtt: ca === undefined ? {} : { ca },
})
boot.on('retry', ({ attempt, delayMs, code }) =>
  console.log(`provisioning attempt ${attempt} failed (${code}), retry in ${delayMs} ms`),
)

// Before: const client = mqtt.connect('mqtts://broker.example.com:8883', { clientId, username, password })
const { url, ...options } = await boot.connectOptions()
const { connect } = await boot.provision() // the provisioned qos, for the app's own publish calls
const client = mqtt.connect(url, options)

client.on('connect', () => {
  client.publish('status', 'online', { qos: connect.qos }, () => client.end())
})
client.on('error', async (error) => {
  // The broker refused the credentials: forget them, so the next start provisions afresh.
  if ('code' in error && [4, 5, 134, 135].includes(error.code as number)) await boot.invalidate()
  console.error('mqtt error:', error.message)
  client.end()
})
