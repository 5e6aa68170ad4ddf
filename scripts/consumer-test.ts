/**
 * The two packages as their users get them: `npm run build`, `npm pack` of packages/mqtt-bootstrap and
 * packages/mqtt-bootstrap-server, and every check below from those tarballs, in fresh temporary projects:
 *
 * - device apps, one next to the OLDEST mqtt the device package's peer range allows and one next to the NEWEST mqtt 5:
 *   `npm ls mqtt` shows one copy, tsyringe (an optional peer) is absent, an ESM and a CJS script each provision for
 *   real (the server tarball's handler and an aedes broker on 127.0.0.1) and get a connected instance of the app's
 *   own `MqttClient`; TypeScript (node16 ESM + .cts, bundler; skipLibCheck off and on) accepts
 *   `const c: MqttClient = await connectProvisioned(…)` and refuses what it must (`@ts-expect-error`);
 * - the device install budget: what `npm install <device tarball>` adds to an app with mqtt (scripts/consumer/budget.ts);
 * - the `certificate` option's optional peer: a DependencyError without it, a CSR with it, ESM and CJS
 *   (scripts/consumer/certificates.ts);
 * - the operator: `npx mqtt-bootstrap-server serve` in an empty directory, provisioning one device against it, and both
 *   bins of an installed server tarball (`--help`, `--version`, `demo`).
 *
 *   npm run test:consumer
 *
 * Installs use the npm cache first (`--prefer-offline`); only the npm registry is contacted. Every step has a timeout.
 * Prints `ok    step (ms)` or `FAIL  step`, and exits 1 after any failure.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type AppChecks, checkInstall, checkRoundTrips, freshApp, npmInstall } from './consumer/app.js'
import { measureBudget } from './consumer/budget.js'
import { checkCertificatePeer } from './consumer/certificates.js'
import { fixtureSource } from './consumer/fixture.js'
import { checkBins, checkNpx, removeNpxProjects } from './consumer/operator.js'
import { buildAndPack, mqttVersions } from './consumer/pack.js'
import { fail, failureCount, pass, type Service, startService, stopServices, verdict } from './consumer/run.js'

const root = resolve(import.meta.dirname, '..')
const own = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
  devDependencies: Record<string, string>
}
const devicePackage = JSON.parse(await readFile(join(root, 'packages/mqtt-bootstrap/package.json'), 'utf8')) as {
  peerDependencies: Record<string, string>
}
const csrPeer = `@peculiar/asn1-csr@${devicePackage.peerDependencies['@peculiar/asn1-csr']}`
const typescriptSpecs = ['typescript', '@types/node'].map((name) => `${name}@${own.devDependencies[name]}`)
const work = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-consumer-'))
const began = Date.now()

/** The server tarball installed (with the device tarball it depends on), and the provisioning fixture started in it. */
async function serverSide(dir: string, tarballs: { device: string; server: string }): Promise<Service | undefined> {
  await freshApp(dir, 'operator')
  if (
    !(await npmInstall('server app: npm install <server tarball> <device tarball>', dir, [
      tarballs.server,
      tarballs.device,
    ]))
  )
    return undefined
  await writeFile(join(dir, 'fixture.mjs'), fixtureSource)
  const started = Date.now()
  try {
    const service = await startService(process.execPath, ['fixture.mjs'], dir, /^\{"url":"[^"]+"\}$/m, {
      timeout: 30_000,
    })
    pass('server app: provisioning handler and aedes broker on 127.0.0.1', started)
    return service
  } catch (error) {
    fail('server app: provisioning handler and aedes broker on 127.0.0.1', (error as Error).message)
    return undefined
  }
}

/** A device app: installed, checked without a server, then its round trips once the fixture is up. */
async function deviceApp(app: AppChecks, install: () => Promise<boolean>, fixture: Promise<Service | undefined>) {
  if (!(await install())) return 0
  await checkInstall(app)
  const service = await fixture
  if (service === undefined) return 0
  const { url } = JSON.parse(service.ready[0]) as { url: string }
  return checkRoundTrips(app, url)
}

try {
  console.log(`consumer projects under ${work}`)
  const packed = await buildAndPack(root, work)
  const versions = await mqttVersions(root)
  if (packed !== undefined && versions !== undefined) {
    const { oldest, newest } = versions
    const fixture = serverSide(join(work, 'server-app'), packed)
    const operator = checkNpx(work, packed)

    const newestApp: AppChecks = {
      label: `mqtt ${newest} (newest)`,
      dir: join(work, 'app-newest'),
      mqttVersion: newest,
    }
    // The budget's app becomes the newest-mqtt device app: TypeScript is added after the measurement.
    const newestRun = deviceApp(
      newestApp,
      async () =>
        (await measureBudget(await freshApp(newestApp.dir, 'device-app'), `mqtt@${newest}`, packed.device)) &&
        npmInstall(`${newestApp.label}: npm install ${typescriptSpecs.join(' ')}`, newestApp.dir, typescriptSpecs),
      fixture,
    )
    const oldestApp: AppChecks = {
      label: `mqtt ${oldest} (oldest)`,
      dir: join(work, 'app-oldest'),
      mqttVersion: oldest,
    }
    if (oldest === newest) console.log(`note  mqtt ${oldest} is the oldest supported and the newest: one app is both`)
    const oldestRun =
      oldest === newest
        ? 0
        : deviceApp(
            oldestApp,
            async () =>
              npmInstall(
                `${oldestApp.label}: npm install <device tarball> mqtt@${oldest} and TypeScript`,
                await freshApp(oldestApp.dir, 'device-app'),
                [packed.device, `mqtt@${oldest}`, ...typescriptSpecs],
              ),
            fixture,
          )
    const roundTrips = (await Promise.all([newestRun, oldestRun])).reduce((a, b) => a + b, 0)
    await checkCertificatePeer(newestApp, csrPeer) // after the budget and the other checks of that app
    await operator

    const service = await fixture
    if (service !== undefined) {
      const started = Date.now()
      await service.stop()
      const seen = /connections (\d+) publishes (\d+)/.exec(service.output())
      verdict(
        `the broker saw one signed session and one publish per round trip (${roundTrips})`,
        started,
        seen?.[1] === String(roundTrips) && seen[2] === String(roundTrips) ? undefined : service.output(),
      )
      await checkBins(join(work, 'server-app'), packed.serverVersion)
    }
  }
} finally {
  await stopServices()
  await removeNpxProjects(work)
  await rm(work, { recursive: true, force: true })
}

const seconds = ((Date.now() - began) / 1000).toFixed(1)
const failures = failureCount()
console.log(
  failures === 0 ? `consumer test passed (${seconds} s)` : `consumer test: ${failures} failure(s) (${seconds} s)`,
)
process.exitCode = failures === 0 ? 0 : 1
