/**
 * The package as a user gets it: `npm pack`, install the tarball into a fresh temporary project, then
 *
 * - ESM `import` and CommonJS `require` of every entry point, each running a real provisioning round trip (the
 *   reference handler from `mqtt-bootstrap/server` on 127.0.0.1, `PointAccess` from `mqtt-bootstrap`);
 * - a TypeScript consumer type-checked against the published declarations with moduleResolution `node16` (ESM and
 *   CJS files) and `bundler`, where a `@ts-expect-error` proves the types are real (not `any`);
 * - the `mqtt-bootstrap` command from the installed package: `--help`, `--version` and the demo.
 *
 *   npm run test:consumer
 *
 * Installs use the npm cache first (`--prefer-offline`); only the npm registry is contacted. Every step has a timeout.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..')
const own = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
  version: string
  devDependencies: Record<string, string>
}
const work = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-consumer-'))
let failures = 0

async function step(name: string, command: string, args: string[], cwd = work, timeout = 120_000): Promise<string> {
  const started = Date.now()
  try {
    const { stdout } = await run(command, args, { cwd, timeout, maxBuffer: 16 * 1024 * 1024 })
    console.log(`ok    ${name} (${Date.now() - started} ms)`)
    return stdout
  } catch (error) {
    failures++
    const { stdout = '', stderr = '', message } = error as { stdout?: string; stderr?: string; message: string }
    console.log(`FAIL  ${name}\n${message}\n${stdout}${stderr}`)
    return ''
  }
}

/**
 * mqtt.js's dependencies that declare browser types (Worker, MessagePort, Transferable): without the DOM lib, a Node
 * project with skipLibCheck off gets errors in their declarations. Theirs to fix; only these are tolerated.
 */
const FOREIGN_DOM_TYPINGS =
  /^node_modules\/(broker-factory|worker-factory|worker-timers|worker-timers-broker|worker-timers-worker)\//

/**
 * `tsc -p project`. With skipLibCheck off (our declarations are checked too) it passes when tsc exits 0, or exits 2
 * with every error in FOREIGN_DOM_TYPINGS; with skipLibCheck on it must exit 0. A crash, a kill or a timeout fails.
 */
async function typeCheck(
  name: string,
  tsc: string,
  project: string,
  cwd: string,
  skipLibCheck: boolean,
): Promise<void> {
  const started = Date.now()
  const args = [tsc, '-p', project, '--pretty', 'false', '--skipLibCheck', String(skipLibCheck)]
  const outcome = await run(process.execPath, args, { cwd, timeout: 120_000 }).then(
    ({ stdout }) => ({ exit: 0 as number | null, output: stdout, killed: false }),
    (error: { code?: number | string; stdout?: string; killed?: boolean; message: string }) => ({
      exit: typeof error.code === 'number' ? error.code : null,
      output: `${error.stdout ?? ''}${error.message}`,
      killed: error.killed === true,
    }),
  )
  const errors = outcome.output.split('\n').filter((line) => /error TS\d+/.test(line))
  const ours = errors.filter((line) => !FOREIGN_DOM_TYPINGS.test(line))
  const tolerated = !skipLibCheck && outcome.exit === 2 && errors.length > 0 && ours.length === 0
  if (!outcome.killed && (outcome.exit === 0 || tolerated)) {
    const note = tolerated ? `; ${errors.length} error(s) in mqtt.js's dependencies' DOM typings tolerated` : ''
    console.log(`ok    ${name} (${Date.now() - started} ms${note})`)
    return
  }
  failures++
  console.log(
    `FAIL  ${name} (exit ${outcome.exit}${outcome.killed ? ', killed' : ''})\n${ours.length > 0 ? ours.join('\n') : outcome.output}`,
  )
}

function expectOutput(name: string, output: string, pattern: RegExp): void {
  if (pattern.test(output)) return
  failures++
  console.log(`FAIL  ${name}: output does not match ${pattern}\n${output}`)
}

/** A round trip through both entry points, written once for ESM and once for CJS. */
const roundTrip = `
const server = http.createServer(
  createProvisioningHandler({
    resolve: (data) =>
      data.imei === '860000000000001'
        ? {
            device: { productKey: 'pk', deviceName: 'dev-1', deviceSecret: 'consumer-secret-0001' },
            connect: { host: '127.0.0.1:1883', qos: 1, cleanSession: 1 },
          }
        : undefined,
  }),
)
await new Promise((done) => server.listen(0, '127.0.0.1', done))
const url = 'http://127.0.0.1:' + server.address().port + '/bootstrap'
const pa = new PointAccess({ allowInsecureHttp: true })
const known = await pa.request(url, { imei: '860000000000001' })
const unknown = await new PointAccess({ allowInsecureHttp: true }).request(url, { imei: '1' })
server.close()
if (known !== ResultCode.SUCCESS || pa.deviceConfig.device.deviceName !== 'dev-1') throw new Error('bad: ' + known)
if (unknown === ResultCode.SUCCESS) throw new Error('an unknown device was provisioned')
if (typeof connectProvisioned !== 'function' || typeof schema.$schema !== 'string') throw new Error('missing exports')
console.log('round trip', known, unknown, pa.deviceConfig.connect.qos)
`

const consumerTs = `
import { type BootstrapOptions, type ConnectOptions, createBootstrap, type DeviceConfig, ResultCode } from 'mqtt-bootstrap'
import { createProvisioningHandler, type ProvisioningHandlerOptions } from 'mqtt-bootstrap/server'

const options: BootstrapOptions = { url: 'https://127.0.0.1:8443/bootstrap', data: { imei: '860000000000001' } }
export const boot = createBootstrap(options)
export const pending: Promise<ConnectOptions> = boot.connectOptions()
export const qos: DeviceConfig['connect']['qos'] = 1
export const ok: '00000' = ResultCode.SUCCESS
export const handler = createProvisioningHandler({ resolve: () => ({ code: '10001' }) } satisfies ProvisioningHandlerOptions)
boot.on('provisioned', (event) => {
  const source: 'cache' | 'server' = event.source
  void source
})
// @ts-expect-error: the types are real, so an unknown option is refused
createBootstrap({ url: 'https://127.0.0.1/x', data: {}, noSuchOption: true })
`

const consumerCts = `
import mqttBootstrap = require('mqtt-bootstrap')
export const code: '00000' = mqttBootstrap.ResultCode.SUCCESS
// @ts-expect-error: qos 7 is not a QoS
export const qos: mqttBootstrap.DeviceConfig['connect']['qos'] = 7
`

function tsconfig(module: string, moduleResolution: string, include: string[]): string {
  const compilerOptions = {
    module,
    moduleResolution,
    target: 'ES2022',
    lib: ['ES2023'],
    types: ['node'],
    strict: true,
    noEmit: true,
  }
  return JSON.stringify({ compilerOptions, include }, null, 2)
}

try {
  console.log(`consumer project: ${work}`)
  const packed = await step('npm pack', 'npm', ['pack', '--silent', '--pack-destination', work], root, 300_000)
  const tarball = join(work, packed.trim().split('\n').pop() ?? '')

  const app = join(work, 'app')
  await mkdir(app)
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  const pinned = (name: string) => `${name}@${own.devDependencies[name]}`
  await step(
    'install the tarball (with typescript, @types/node and aedes for the demo)',
    'npm',
    [
      'install',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
      tarball,
      pinned('typescript'),
      pinned('@types/node'),
      pinned('aedes'),
    ],
    app,
    300_000,
  )

  const esm = `import http from 'node:http'
import { connectProvisioned, PointAccess, ResultCode } from 'mqtt-bootstrap'
import { createProvisioningHandler } from 'mqtt-bootstrap/server'
import schema from 'mqtt-bootstrap/schema.json' with { type: 'json' }
${roundTrip}`
  await writeFile(join(app, 'esm.mjs'), esm)
  expectOutput('ESM import', await step('ESM import', process.execPath, ['esm.mjs'], app), /round trip 00000 \d{5} 1/)

  const cjs = `const http = require('node:http')
const { connectProvisioned, PointAccess, ResultCode } = require('mqtt-bootstrap')
const { createProvisioningHandler } = require('mqtt-bootstrap/server')
const schema = require('mqtt-bootstrap/schema.json')
;(async () => {
${roundTrip}
})().catch((error) => { console.error(error); process.exitCode = 1 })`
  await writeFile(join(app, 'cjs.cjs'), cjs)
  expectOutput('CJS require', await step('CJS require', process.execPath, ['cjs.cjs'], app), /round trip 00000 \d{5} 1/)

  const tsc = join(app, 'node_modules', 'typescript', 'bin', 'tsc')
  await writeFile(join(app, 'consumer.ts'), consumerTs)
  await writeFile(join(app, 'consumer.cts'), consumerCts)
  await writeFile(join(app, 'tsconfig.node16.json'), tsconfig('node16', 'node16', ['consumer.ts', 'consumer.cts']))
  await writeFile(join(app, 'tsconfig.bundler.json'), tsconfig('esnext', 'bundler', ['consumer.ts']))
  for (const skipLibCheck of [false, true]) {
    const libs = `skipLibCheck ${skipLibCheck}`
    await typeCheck(`TypeScript, node16 (ESM + CJS), ${libs}`, tsc, 'tsconfig.node16.json', app, skipLibCheck)
    await typeCheck(`TypeScript, bundler, ${libs}`, tsc, 'tsconfig.bundler.json', app, skipLibCheck)
  }

  const bin = join(app, 'node_modules', '.bin', 'mqtt-bootstrap')
  expectOutput(
    'CLI --help',
    await step('CLI --help', bin, ['--help'], app),
    /provision[\s\S]*check[\s\S]*serve[\s\S]*demo/,
  )
  expectOutput('CLI --version', await step('CLI --version', bin, ['--version'], app), new RegExp(own.version))
  expectOutput(
    'CLI demo',
    await step('CLI demo', bin, ['demo'], app, 60_000),
    /0 provisioning requests[\s\S]*demo finished: every step worked/,
  )
} finally {
  await rm(work, { recursive: true, force: true })
}

console.log(failures === 0 ? 'consumer test passed' : `consumer test: ${failures} failure(s)`)
process.exitCode = failures === 0 ? 0 : 1
