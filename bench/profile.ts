/**
 * `npm run bench:profile`: where a cached boot spends its CPU, as `npm run bench`'s cached section measures it (the
 * build, a warm memory cache, a new bootstrap per boot, `auth: 'plain'`, TCP to an aedes in this process), beside raw
 * `mqtt.connectAsync()`: each sample is charged to the innermost function of ours on its stack, mapped to src/ through
 * the build's source maps (bench/lib/cpu-profile.ts). The profiles are written to bench/results/ (open them in Chrome
 * DevTools). BENCH_PROFILE_RUNS (6000) boots of each.
 */
import mqtt from 'mqtt'
import { connectProvisioned } from 'mqtt-bootstrap'
import { profileBoth, profileReport } from './cached.js'
import { startInProcessBroker } from './lib/aedes.js'
import { deviceName, deviceSecret, PRODUCT_KEY, UNUSED_URL as url, warmCache } from './lib/fleet-secrets.js'

const broker = await startInProcessBroker()
try {
  const name = deviceName(1)
  const { cache } = await warmCache(name, broker.host)
  const credentials = { clientId: `${PRODUCT_KEY}.${name}`, username: name, password: deviceSecret(name) }
  const ours = async () =>
    (
      await connectProvisioned({ url, data: { imei: name }, cache, auth: 'plain', broker: { protocol: 'mqtt' } })
    ).endAsync()
  const raw = async () => (await mqtt.connectAsync(`mqtt://${broker.host}`, { ...credentials })).endAsync()
  for (let i = 0; i < 500; i++) {
    await ours()
    await raw()
  }
  console.log(profileReport(await profileBoth(ours, raw, Number(process.env.BENCH_PROFILE_RUNS ?? 6000))))
} finally {
  await broker.stop()
}
process.exit(0)
