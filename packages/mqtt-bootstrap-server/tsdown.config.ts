import { defineConfig } from 'tsdown'

// The server package: its entry (ESM and CJS) and the command line (ESM only, no declarations). `mqtt-bootstrap` is
// a dependency, so it stays an import (the device package's own build), never a bundled copy.
const common = {
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  outputOptions: { comments: { jsdoc: false } },
} as const

export default defineConfig([
  { ...common, entry: { index: 'src/index.ts' }, format: ['esm', 'cjs'], dts: true, clean: true },
  { ...common, entry: { cli: 'src/cli/index.ts' }, format: ['esm'], dts: false, clean: false },
])
