/**
 * The device install budget, from the packed tarball: what `npm install <device tarball>` adds to a fresh app that
 * has mqtt (installed the same way first). At most 6 MB of files (apparent size, `du -sk --apparent-size
 * node_modules`) and at most 15 packages (every package directory, scoped and nested ones included).
 */
import { lstat, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { npmInstall } from './app.js'
import { execute, verdict } from './run.js'

export const BUDGET = { bytes: 6_000_000, packages: 15 } as const

/**
 * Every package directory under `modules`, relative to it: `name` and `@scope/name` with a package.json, and the
 * same inside their own node_modules, to any depth (bounded by the tree itself; symlinks are not followed).
 */
async function packageDirs(modules: string, prefix = '', into: string[] = []): Promise<string[]> {
  const names = await readdir(modules).catch(() => [] as string[])
  for (const name of names) {
    if (name.startsWith('.')) continue
    const candidates = name.startsWith('@')
      ? (await readdir(join(modules, name)).catch(() => [] as string[])).map((sub) => `${name}/${sub}`)
      : [name]
    for (const candidate of candidates) {
      const dir = join(modules, candidate)
      const isPackage = await lstat(join(dir, 'package.json')).then(
        (stat) => stat.isFile(),
        () => false,
      )
      if (!isPackage) continue
      const relative = `${prefix}${candidate}`
      into.push(relative)
      await packageDirs(join(dir, 'node_modules'), `${relative}/node_modules/`, into)
    }
  }
  return into
}

/** Apparent size of a package's own files in bytes: its nested node_modules are packages of their own. */
async function ownBytes(dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory() && entry.name === 'node_modules') continue
    const path = join(dir, entry.name)
    if (entry.isDirectory()) total += await ownBytes(path)
    else total += (await lstat(path)).size
  }
  return total
}

/** `du -sk --apparent-size node_modules` in bytes (du's figure, the budget's definition). */
async function duBytes(app: string): Promise<number> {
  const outcome = await execute('du', ['-sk', '--apparent-size', 'node_modules'], app, 60_000)
  const kib = Number.parseInt(outcome.stdout, 10)
  if (outcome.exit !== 0 || !Number.isFinite(kib)) throw new Error(`du failed: ${outcome.stderr}`)
  return kib * 1024
}

interface Snapshot {
  bytes: number
  packages: Set<string>
}

async function snapshot(app: string): Promise<Snapshot> {
  return { bytes: await duBytes(app), packages: new Set(await packageDirs(join(app, 'node_modules'))) }
}

const mb = (bytes: number) => `${(bytes / 1_000_000).toFixed(2)} MB`

/**
 * Installs mqtt into `app` (a fresh one), measures, installs the device tarball, measures again and judges the
 * difference. Leaves `app` as a device app with mqtt, for the checks that follow. False when an install failed.
 */
export async function measureBudget(app: string, mqttSpec: string, deviceTarball: string): Promise<boolean> {
  if (!(await npmInstall(`budget: npm install ${mqttSpec} (the app before)`, app, [mqttSpec]))) return false
  const before = await snapshot(app)
  if (!(await npmInstall('budget: npm install <device tarball>', app, [deviceTarball]))) return false
  const started = Date.now()
  const after = await snapshot(app)
  const added = [...after.packages].filter((p) => !before.packages.has(p)).sort()
  const removed = [...before.packages].filter((p) => !after.packages.has(p)).sort()
  const sizes = await Promise.all(added.map((p) => ownBytes(join(app, 'node_modules', p))))
  const bytes = after.bytes - before.bytes
  const count = after.packages.size - before.packages.size
  const lines = [
    `device install budget (npm install <device tarball> into an app with ${mqttSpec}):`,
    `  node_modules ${mb(before.bytes)} -> ${mb(after.bytes)}: +${mb(bytes)} (budget ${mb(BUDGET.bytes)})`,
    `  packages ${before.packages.size} -> ${after.packages.size}: +${count} (budget ${BUDGET.packages})`,
    ...added.map((p, i) => `  + ${p.padEnd(40)} ${`${((sizes[i] ?? 0) / 1000).toFixed(1)} kB`.padStart(10)}`),
    ...removed.map((p) => `  - ${p}`),
  ]
  console.log(lines.join('\n'))
  const problems = [
    bytes > BUDGET.bytes ? `+${mb(bytes)} is over ${mb(BUDGET.bytes)}` : undefined,
    count > BUDGET.packages ? `+${count} packages is over ${BUDGET.packages}` : undefined,
  ].filter((p) => p !== undefined)
  verdict(
    'budget: the device tarball adds at most 6 MB and 15 packages',
    started,
    problems.length > 0 ? problems.join('; ') : undefined,
    `+${mb(bytes)}, +${count} packages`,
  )
  return true
}
