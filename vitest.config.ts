import { defineConfig } from 'vitest/config'

export default defineConfig({
  // tsyringe's decorators: legacy (experimentalDecorators), as tsconfig.json says.
  oxc: { decorator: { legacy: true, emitDecoratorMetadata: true } },
  test: {
    include: ['test/**/*.test.ts'],
    // After every test: no secret in anything the library logged, emitted, threw or shows when inspected.
    setupFiles: ['test/setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Each file starts its own loopback servers on port 0; files run in parallel workers.
    pool: 'forks',
  },
})
