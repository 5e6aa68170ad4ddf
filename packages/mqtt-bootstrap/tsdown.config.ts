import { defineConfig } from 'tsdown'

// The device package: the main entry and `mqtt-bootstrap/contract`. shims: import.meta.url in the CJS build (lazy.ts
// requires dependencies on first use). No JSDoc in the JavaScript: it is in the declarations (what editors show) and
// the source maps, and parsing 26 kB of comments was a tenth of the import cost (docs/performance.md). Legal and
// pure-annotation comments stay.
export default defineConfig({
  entry: { index: 'src/index.ts', contract: 'src/contract-entry.ts' },
  format: ['esm', 'cjs'],
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  shims: true,
  dts: true,
  clean: true,
  outputOptions: { comments: { jsdoc: false } },
})
