/**
 * No import circle anywhere in either package's sources (issue 13: options.ts and registration/aliyun.ts imported each
 * other). The graph is madge's (a maintained tool, not a parser of our own), with the root tsconfig.json: relative
 * `.js` specifiers resolve to the `.ts` sources, and type-only imports count, since a type shared both ways is a real
 * dependency that only moves the circle out of sight.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, expect, test } from 'vitest'

interface MadgeResult {
  circular(): string[][]
  obj(): Record<string, string[]>
  warnings(): { skipped: string[] }
}
interface MadgeConfig {
  baseDir: string
  fileExtensions: string[]
  tsConfig: string
  detectiveOptions: { ts: { skipTypeImports: boolean }; tsx: { skipTypeImports: boolean } }
}
// madge 8 ships no type declarations, and is CommonJS.
const madge = createRequire(import.meta.url)('madge') as (paths: string[], config: MadgeConfig) => Promise<MadgeResult>

const root = resolve(import.meta.dirname, '..')
const SOURCES = ['packages/mqtt-bootstrap/src', 'packages/mqtt-bootstrap-server/src']

/** The graph of the files under `paths` (relative to `baseDir`), named relative to `baseDir`. */
async function importGraph(baseDir: string, paths: string[]): Promise<MadgeResult> {
  return madge(
    paths.map((path) => resolve(baseDir, path)),
    {
      baseDir,
      fileExtensions: ['ts'],
      tsConfig: join(root, 'tsconfig.json'),
      detectiveOptions: { ts: { skipTypeImports: false }, tsx: { skipTypeImports: false } },
    },
  )
}

/** Every circle as one line, `a.ts > b.ts > a.ts`, for a failure message that lists them all. */
function describeCircles(circles: string[][]): string[] {
  return circles.map((circle) => [...circle, circle[0]].join(' > '))
}

test('no import circle in the sources of either package', { timeout: 60_000 }, async () => {
  const graph = await importGraph(root, SOURCES)
  const files = Object.keys(graph.obj())
  // A graph that misses files or imports would have no circles to find: check that it saw both packages whole.
  expect(files).toContain('packages/mqtt-bootstrap/src/bootstrap.ts')
  expect(files).toContain('packages/mqtt-bootstrap-server/src/index.ts')
  expect(graph.obj()['packages/mqtt-bootstrap/src/index.ts']).toContain('packages/mqtt-bootstrap/src/options.ts')
  // madge's resolver cannot read some packages' `exports` (structured-headers has no `main`): a package is no part
  // of a circle among our files, but it must exist, and nothing of ours may go unresolved.
  const skipped = graph.warnings().skipped
  expect(
    skipped.filter((name) => name.startsWith('.') || name.startsWith('/')),
    'our own imports unresolved',
  ).toEqual([])
  for (const name of skipped) {
    expect(() => import.meta.resolve(name), `the package ${name} resolves`).not.toThrow()
  }
  expect(describeCircles(graph.circular())).toEqual([])
})

const scratch: string[] = []
afterAll(async () => {
  for (const dir of scratch) await rm(dir, { recursive: true, force: true })
})

test('the check finds a circle closed by a type-only import of a `.js` specifier', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'import-cycles-'))
  scratch.push(dir)
  await writeFile(join(dir, 'a.ts'), "import { b } from './b.js'\nexport const a = () => b\n")
  await writeFile(join(dir, 'b.ts'), "import type { C } from './c.js'\nexport const b: C = 1\n")
  await writeFile(join(dir, 'c.ts'), "import type { a } from './a.js'\nexport type C = ReturnType<typeof a> | number\n")
  await writeFile(join(dir, 'leaf.ts'), "import { a } from './a.js'\nexport const leaf = a\n")
  const graph = await importGraph(dir, ['.'])
  expect(describeCircles(graph.circular())).toEqual(['a.ts > b.ts > c.ts > a.ts'])
})
