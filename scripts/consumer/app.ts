/**
 * A device app as its developer has it: the device tarball next to the app's own mqtt.js (and TypeScript), nothing
 * else. Checks one mqtt copy, no tsyringe, a real provisioning round trip from ESM and CJS, and the declarations.
 */
import { access, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execute, fail, INSTALL_FLAGS, inPool, pass, step, verdict } from './run.js'
import { cjsScript, consumerCts, consumerTs, esmScript, ROUND_TRIP_OUTPUT, schemaTs, tsconfig } from './sources.js'

/** A fresh directory with a package.json of an ESM app. */
export async function freshApp(dir: string, name: string): Promise<string> {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true, type: 'module' }))
  return dir
}

export async function npmInstall(
  name: string,
  dir: string,
  specs: readonly string[],
  timeout = 300_000,
): Promise<boolean> {
  return (await step(name, 'npm', ['install', ...INSTALL_FLAGS, ...specs], dir, { timeout })) !== undefined
}

interface LsNode {
  version?: string
  path?: string
  dependencies?: Record<string, LsNode>
}

/** Every installed copy of mqtt by its directory, as `npm ls mqtt --all --json --long` shows the tree. */
function mqttCopies(node: LsNode, into = new Map<string, string>()): Map<string, string> {
  for (const [name, child] of Object.entries(node.dependencies ?? {})) {
    if (name === 'mqtt' && child.path !== undefined) into.set(child.path, child.version ?? '?')
    mqttCopies(child, into)
  }
  return into
}

async function oneMqtt(label: string, app: string, version: string): Promise<void> {
  const name = `${label}: npm ls mqtt shows one copy, ${version}`
  const started = Date.now()
  const ls = await execute('npm', ['ls', 'mqtt', '--all', '--json', '--long'], app, 60_000)
  let copies: Map<string, string>
  try {
    copies = mqttCopies(JSON.parse(ls.stdout) as LsNode)
  } catch {
    fail(name, `npm ls exited ${ls.exit} without JSON\n${ls.stdout}${ls.stderr}`)
    return
  }
  const found = [...copies].map(([path, v]) => `${v} at ${path}`)
  const problem =
    ls.exit !== 0
      ? `npm ls exited ${ls.exit} (an invalid or missing peer?)\n${ls.stderr}`
      : copies.size !== 1 || ![...copies.values()].every((v) => v === version)
        ? `expected exactly mqtt ${version} once, found: ${found.join('; ') || 'none'}`
        : undefined
  verdict(name, started, problem)
}

async function noTsyringe(label: string, app: string): Promise<void> {
  const started = Date.now()
  const present = await access(join(app, 'node_modules', 'tsyringe')).then(
    () => true,
    () => false,
  )
  verdict(
    `${label}: tsyringe (an optional peer) is not installed`,
    started,
    present ? 'node_modules/tsyringe exists' : undefined,
  )
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
async function typeCheck(name: string, app: string, project: string, skipLibCheck: boolean): Promise<void> {
  const started = Date.now()
  const tsc = join(app, 'node_modules', 'typescript', 'bin', 'tsc')
  const args = [tsc, '-p', project, '--pretty', 'false', '--skipLibCheck', String(skipLibCheck)]
  const outcome = await execute(process.execPath, args, app, 120_000)
  const errors = outcome.stdout.split('\n').filter((line) => /error TS\d+/.test(line))
  const ours = errors.filter((line) => !FOREIGN_DOM_TYPINGS.test(line))
  const tolerated = !skipLibCheck && outcome.exit === 2 && errors.length > 0 && ours.length === 0
  if (!outcome.killed && (outcome.exit === 0 || tolerated)) {
    pass(name, started, tolerated ? `${errors.length} error(s) in mqtt.js's dependencies' DOM typings tolerated` : '')
    return
  }
  const detail = ours.length > 0 ? ours.join('\n') : `${outcome.stdout}${outcome.stderr}`
  fail(name, `exit ${outcome.exit}${outcome.killed ? ', killed' : ''}\n${detail}`)
}

export interface AppChecks {
  /** What the output calls this app, e.g. `mqtt 5.16.0 (oldest)`. */
  label: string
  dir: string
  mqttVersion: string
}

/** The checks that need no provisioning server: the tree and the declarations. */
export async function checkInstall({ label, dir, mqttVersion }: AppChecks): Promise<void> {
  await oneMqtt(label, dir, mqttVersion)
  await noTsyringe(label, dir)
  await writeFile(join(dir, 'consumer.ts'), consumerTs)
  await writeFile(join(dir, 'consumer.cts'), consumerCts)
  await writeFile(join(dir, 'schema.ts'), schemaTs)
  const node16 = ['consumer.ts', 'consumer.cts', 'schema.ts']
  await writeFile(join(dir, 'tsconfig.node16.json'), tsconfig('node16', 'node16', node16))
  await writeFile(join(dir, 'tsconfig.bundler.json'), tsconfig('esnext', 'bundler', ['consumer.ts', 'schema.ts']))
  const checks = [false, true].flatMap((skipLibCheck) => [
    { project: 'tsconfig.node16.json', what: 'node16 (ESM + .cts)', skipLibCheck },
    { project: 'tsconfig.bundler.json', what: 'bundler', skipLibCheck },
  ])
  await inPool(checks, 2, ({ project, what, skipLibCheck }) =>
    typeCheck(`${label}: TypeScript ${what}, skipLibCheck ${skipLibCheck}`, dir, project, skipLibCheck),
  )
}

/** ESM and CJS scripts, each a real round trip against the fixture; returns how many passed (one broker session each). */
export async function checkRoundTrips({ label, dir }: AppChecks, provisionUrl: string): Promise<number> {
  await writeFile(join(dir, 'esm.mjs'), esmScript)
  await writeFile(join(dir, 'cjs.cjs'), cjsScript)
  const env = { ...process.env, PROVISION_URL: provisionUrl }
  let passed = 0
  for (const [what, file] of [
    ['ESM import', 'esm.mjs'],
    ['CJS require', 'cjs.cjs'],
  ] as const) {
    const name = `${label}: ${what}, connectProvisioned gives a connected instance of the app's MqttClient`
    const out = await step(name, process.execPath, [file], dir, { timeout: 60_000, expect: ROUND_TRIP_OUTPUT, env })
    if (out !== undefined) passed++
  }
  return passed
}
