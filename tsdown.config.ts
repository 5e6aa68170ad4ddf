import { defineConfig } from 'tsdown'

export default defineConfig({
  // The device entry and the server entry ('mqtt-bootstrap/server'); the device side never imports the server.
  entry: { index: 'src/index.ts', server: 'src/server/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  platform: 'node',
  target: 'node20',
  clean: true,
  sourcemap: true,
})
