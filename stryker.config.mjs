// Mutation testing (StrykerJS 9.6: 10.x needs Node 22). Not part of CI: `npm run test:mutation` (docs/mutation-testing.md).
// One file at a time is quicker to read: `npm run test:mutation -- --mutate packages/mqtt-bootstrap/src/retry.ts`.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.config.ts' },
  coverageAnalysis: 'perTest',
  mutate: [
    'packages/mqtt-bootstrap/src/retry.ts',
    'packages/mqtt-bootstrap/src/contract.ts',
    'packages/mqtt-bootstrap/src/store/file-store.ts',
    'packages/mqtt-bootstrap/src/auth/aliyun.ts',
    'packages/mqtt-bootstrap/src/broker-url.ts',
    'packages/mqtt-bootstrap/src/redact.ts',
  ],
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  thresholds: { high: 95, low: 90, break: null },
  concurrency: 2,
  timeoutMS: 20_000,
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
}
