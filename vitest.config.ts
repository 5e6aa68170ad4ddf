import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const source = (path: string) => fileURLToPath(new URL(path, import.meta.url))

export default defineConfig({
  // The server package imports the device package by name: the tests run both from their sources.
  resolve: {
    alias: [
      { find: /^mqtt-bootstrap\/contract$/, replacement: source('packages/mqtt-bootstrap/src/contract-entry.ts') },
      { find: /^mqtt-bootstrap$/, replacement: source('packages/mqtt-bootstrap/src/index.ts') },
      { find: /^mqtt-bootstrap-server$/, replacement: source('packages/mqtt-bootstrap-server/src/index.ts') },
    ],
  },
  // tsyringe's decorators: legacy (experimentalDecorators), as tsconfig.json says.
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  test: {
    include: ['test/**/*.test.ts'],
    // After every test: no secret in anything the library logged, emitted, threw or shows when inspected.
    setupFiles: ['test/setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Each file starts its own loopback servers on port 0; files run in parallel workers. Two at least: most files
    // wait on real servers and real time (the renewal suites for minutes) rather than on the CPU, and vitest's
    // default (the cores less one) is a single worker on a two-core CI machine.
    pool: 'forks',
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
})
