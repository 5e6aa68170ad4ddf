/**
 * The tarballs as they would be published: `npm run build` at the root, then `npm pack` of both workspaces (their
 * prepack is the same build, so it is not run twice), and a look at what each tarball holds. Also which mqtt
 * versions the device package supports: its peer range's floor and the newest mqtt 5 on the registry.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { execute, fail, pass, step, verdict } from './run.js'

export interface Packed {
  device: string
  server: string
  deviceVersion: string
  serverVersion: string
}

interface PackResult {
  name: string
  version: string
  filename: string
  files: { path: string }[]
}

/** What each tarball must hold (entry points, declarations, the schema, the bins) and must not (sources, tests). */
const MUST_HOLD: Record<string, readonly string[]> = {
  'mqtt-bootstrap': [
    'package.json',
    'README.md',
    'LICENSE',
    'dist/index.mjs',
    'dist/index.cjs',
    'dist/index.d.mts',
    'dist/index.d.cts',
    'dist/contract.mjs',
    'dist/contract.cjs',
    'dist/contract.d.mts',
    'dist/contract.d.cts',
    'schema/provisioning.schema.json',
  ],
  'mqtt-bootstrap-server': [
    'package.json',
    'README.md',
    'LICENSE',
    'dist/cli.mjs',
    'dist/index.mjs',
    'dist/index.cjs',
    'dist/index.d.mts',
    'dist/index.d.cts',
  ],
}
const MUST_NOT_HOLD = /^(src|test|bench|examples|scripts)\/|\.test\.|tsconfig|tsdown\.config/

export async function buildAndPack(root: string, work: string): Promise<Packed | undefined> {
  if (
    (await step('npm run build (both packages)', 'npm', ['run', 'build'], root, { timeout: 300_000 })) === undefined
  ) {
    return undefined
  }
  const args = ['pack', '--json', '--ignore-scripts', '--pack-destination', work]
  const workspaces = ['-w', 'packages/mqtt-bootstrap', '-w', 'packages/mqtt-bootstrap-server']
  const out = await step('npm pack (both packages)', 'npm', [...args, ...workspaces], root, { timeout: 120_000 })
  if (out === undefined) return undefined
  const results = JSON.parse(out) as PackResult[]
  const started = Date.now()
  const problems: string[] = []
  for (const result of results) {
    const paths = new Set(result.files.map((file) => file.path))
    const missing = (MUST_HOLD[result.name] ?? []).filter((path) => !paths.has(path))
    const stray = [...paths].filter((path) => MUST_NOT_HOLD.test(path))
    if (missing.length > 0) problems.push(`${result.filename} lacks ${missing.join(', ')}`)
    if (stray.length > 0) problems.push(`${result.filename} holds ${stray.join(', ')}`)
  }
  const device = results.find((result) => result.name === 'mqtt-bootstrap')
  const server = results.find((result) => result.name === 'mqtt-bootstrap-server')
  if (device === undefined || server === undefined) problems.push('npm pack did not make both tarballs')
  const sizes = results.map((result) => `${result.filename} ${result.files.length} files`).join(', ')
  if (!verdict('the tarballs hold their entry points and no sources', started, problems.join('\n') || undefined, sizes))
    return undefined
  return {
    device: join(work, device?.filename ?? ''),
    server: join(work, server?.filename ?? ''),
    deviceVersion: device?.version ?? '',
    serverVersion: server?.version ?? '',
  }
}

const compare = (a: string, b: string) => {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number))
  for (let i = 0; i < 3; i++) {
    const d = (x?.[i] ?? 0) - (y?.[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/** The oldest mqtt the device package's peer range `^5.N[.P]` allows, and the newest mqtt 5 on the registry. */
export async function mqttVersions(root: string): Promise<{ oldest: string; newest: string } | undefined> {
  const started = Date.now()
  const manifest = JSON.parse(await readFile(join(root, 'packages', 'mqtt-bootstrap', 'package.json'), 'utf8')) as {
    peerDependencies?: Record<string, string>
  }
  const range = manifest.peerDependencies?.mqtt ?? ''
  const floor = /^\^5\.(\d+)(?:\.(\d+))?$/.exec(range)
  const view = await execute('npm', ['view', 'mqtt@5', 'version', '--json'], root, 60_000)
  let listed: string[] = []
  try {
    const parsed = JSON.parse(view.stdout) as string | string[]
    listed = (Array.isArray(parsed) ? parsed : [parsed]).filter((v) => /^5\.\d+\.\d+$/.test(v))
  } catch {}
  const newest = listed.sort(compare).at(-1)
  if (floor === null || newest === undefined) {
    fail(
      'the supported mqtt versions',
      floor === null
        ? `packages/mqtt-bootstrap/package.json peerDependencies.mqtt is ${JSON.stringify(range)}, not ^5.N`
        : `npm view mqtt@5 version gave nothing\n${view.stdout}${view.stderr}`,
    )
    return undefined
  }
  const oldest = `5.${floor[1]}.${floor[2] ?? 0}`
  if (!listed.includes(oldest)) {
    fail('the supported mqtt versions', `the peer range ${range} starts at ${oldest}, which is not on the registry`)
    return undefined
  }
  pass(`the supported mqtt versions: peer ${range}, oldest ${oldest}, newest ${newest}`, started)
  return { oldest, newest }
}
