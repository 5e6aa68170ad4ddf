/**
 * A basic device: provision on first boot, keep the credentials in a file, publish telemetry with the provisioned QoS.
 *
 *   PROVISION_URL=https://provision.example.com/bootstrap IMEI=860000000000001 \
 *   CA_FILE=ca.pem CREDENTIALS=/var/lib/app/credentials.json npx tsx examples/basic-device.ts
 */
import { readFileSync } from 'node:fs'
import { connectProvisioned, FileCredentialStore } from 'mqtt-bootstrap'

const ca = process.env.CA_FILE ? readFileSync(process.env.CA_FILE, 'utf8') : undefined

const client = await connectProvisioned({
  url: process.env.PROVISION_URL ?? 'https://provision.example.com/bootstrap',
  data: { imei: process.env.IMEI ?? '860000000000001' },
  cache: new FileCredentialStore(process.env.CREDENTIALS ?? './credentials.json'),
  tls: ca === undefined ? undefined : { ca }, // the provisioning server's CA, if it is not a public one
  mqtt: { keepalive: 60, ...(ca === undefined ? {} : { ca }) },
  signal: AbortSignal.timeout(120_000), // give up booting after two minutes
})
client.on('error', (error) => console.error('mqtt error:', error.message))

for (let i = 0; i < 3; i++) {
  // No qos given: the provisioned one applies.
  await client.publishAsync('telemetry', JSON.stringify({ seq: i, t: 21.5 }))
}
console.log('published 3 messages')
await client.endAsync()
