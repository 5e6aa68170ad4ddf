// What `import 'mqtt-bootstrap'` loads. The import cost target (docs/performance.md, bench/footprint.ts) holds only
// while the device entry imports nothing at load time but mqtt and its own modules (src/lazy.ts says how the rest is
// loaded): eventemitter3 is required, builtins come through process.getBuiltinModule(), node:crypto and the other
// dependencies on first use.
import { readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { expect, test } from 'vitest'
import { runTs } from './helpers/child.js'

/** The value (not type-only) import specifiers of a TypeScript source, static and dynamic. */
function importsOf(source: string): { static: string[]; dynamic: string[] } {
  const statics: string[] = []
  // An import clause holds names, braces, commas, `*`, `as` and `type`: no `=` or quote, so a match cannot run from
  // `export type X = …` on to the next statement's `from '…'`.
  const declaration = /^(?:import|export)\s+(type\s+)?(?:([\w$*,{}\s]*?)\s*from\s*)?['"]([^'"]+)['"]/gm
  for (const [, typeOnly, clause, specifier] of source.matchAll(declaration)) {
    if (typeOnly) continue
    // `import { type A, type B } from 'x'` is erased as well.
    const names = clause?.trim().match(/^\{([\s\S]*)\}$/)?.[1]
    if (names?.split(',').every((name) => name.trim() === '' || name.trim().startsWith('type '))) continue
    statics.push(specifier as string)
  }
  const call = /(?<![\w.]|typeof\s+)import\(\s*['"]([^'"]+)['"]\s*\)/g
  const dynamic = [...source.matchAll(call)].map((m) => m[1] as string)
  return { static: statics, dynamic }
}

/** Every source module `import 'mqtt-bootstrap'` evaluates, with the packages and builtins they import. */
function deviceEntryGraph() {
  const modules = new Map<string, { static: string[]; dynamic: string[] }>()
  const visit = (file: string) => {
    if (modules.has(file)) return
    const imports = importsOf(readFileSync(file, 'utf8'))
    modules.set(file, imports)
    for (const specifier of imports.static) {
      if (specifier.startsWith('.')) visit(join(dirname(file), specifier.replace(/\.js$/, '.ts')))
    }
  }
  visit(join(import.meta.dirname, '../packages/mqtt-bootstrap/src/index.ts'))
  return modules
}

test('the scanner sees value imports and skips type-only ones', () => {
  const source = [
    "import type { A } from 'a'",
    "import { type B, type C } from 'b'",
    "import mqtt, { type D } from 'mqtt'",
    "import {\n  E,\n  type F,\n} from './e.js'",
    "export { G } from './g.js'",
    "import 'side-effect'",
    'import * as h from "double-quoted"',
    'export type Key = string',
    "import * as v from 'after-a-type-alias'",
    "const x = await import('lazy-one')",
    "type U = typeof import('only-a-type')",
  ].join('\n')
  expect(importsOf(source)).toEqual({
    static: ['mqtt', './e.js', './g.js', 'side-effect', 'double-quoted', 'after-a-type-alias'],
    dynamic: ['lazy-one'],
  })
})

test('the device entry imports only mqtt and its own modules at load time', () => {
  const graph = deviceEntryGraph()
  const external = [...graph].flatMap(([file, imports]) =>
    imports.static
      .filter((specifier) => !specifier.startsWith('.') && specifier !== 'mqtt')
      .map((specifier) => `${relative(join(import.meta.dirname, '..'), file)}: ${specifier}`),
  )
  expect(graph.size).toBeGreaterThan(20) // the walk followed the entry's modules
  expect(external).toEqual([])
  // Loaded on first use: undici and node:tls with the first provisioning request (the file store's atomic write
  // and lock are its own, on builtins).
  const dynamic = [...new Set([...graph.values()].flatMap((imports) => imports.dynamic))].sort()
  expect(dynamic).toEqual(['node:tls', 'undici'])
})

test('importing the entry in a fresh process loads eventemitter3 and four cheap builtins, nothing else', async () => {
  const run = await runTs('test/fixtures/import-entry.ts')
  expect(run.code).toBe(0)
  // Not node:crypto (first boot), nor tsyringe, valibot, async-retry, undici, … (first use): any other package
  // required at load time shows here too.
  expect(JSON.parse(run.output)).toEqual({
    packages: ['eventemitter3/index.js'],
    builtins: ['node:fs', 'node:fs/promises', 'node:module', 'node:path'],
  })
})
