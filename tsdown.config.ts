import { defineConfig } from 'tsdown'

// shims: import.meta.url in the CJS build (lazy.ts requires dependencies on first use).
const common = { platform: 'node', target: 'node20', sourcemap: true, shims: true } as const

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
