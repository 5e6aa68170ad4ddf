import { defineConfig } from 'tsdown'

// shims: import.meta.url in the CJS build (lazy.ts requires dependencies on first use).
// No JSDoc in the JavaScript: it is in the declarations (what editors show) and the source maps, and parsing 26 kB of
// comments was a tenth of the import cost (README "Performance"). Legal and pure-annotation comments stay.
const common = {
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  shims: true,
  outputOptions: { comments: { jsdoc: false } },
} as const

export default defineConfig([
  {
    // The device entry and the server entry ('mqtt-bootstrap/server'; the device side never imports it).
    ...common,
    entry: { index: 'src/index.ts', server: 'src/server/index.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
  },
  {
    // The `mqtt-bootstrap` command: ESM only, no declarations.
    ...common,
    entry: { cli: 'src/cli/index.ts' },
    format: ['esm'],
    dts: false,
    clean: false,
  },
])
