import { readdirSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { type ChildRun, runTs } from './helpers/child.js'
import { startEnv, type TestEnv } from './helpers/env.js'
import { DEVICE } from './helpers/https-server.js'

let env: TestEnv
let dir: string
beforeAll(async () => {
  env = await startEnv()
  dir = await mkdtemp(join(tmpdir(), 'mqtt-bootstrap-examples-'))
  await writeFile(join(dir, 'ca.pem'), env.tls.ca)
  env.answerValid({ host: `mqtt://${env.broker.host}` })
})
afterAll(async () => {
  await env.close()
  await rm(dir, { recursive: true, force: true })
})

/** Run an example as a user would (`npx tsx examples/x.ts`), against this file's loopback servers. */
function run(example: string): Promise<ChildRun> {
  return runTs(`examples/${example}`, [], {
    env: {
      PROVISION_URL: env.server.url,
      CA_FILE: join(dir, 'ca.pem'),
      CREDENTIALS: join(dir, `${example}.json`),
    },
  })
}

/** Every example there is: a new one is run without being listed here. */
const examples = readdirSync('examples').filter((name) => name.endsWith('.ts'))

test('the examples are found, and all are TypeScript (type-checked with the sources, run here)', () => {
  expect(examples).toEqual(expect.arrayContaining(['basic-device.ts', 'existing-app.ts', 'di-override.ts']))
  expect(readdirSync('examples')).toEqual(examples)
})

test.each(examples)(
  'examples/%s runs to exit 0',
  async (example) => {
    const before = env.broker.accepted
    const { code, output } = await run(example)
    expect(code, output).toBe(0)
    expect(env.broker.accepted).toBeGreaterThan(before)
    expect(output).not.toContain(DEVICE.deviceSecret)
  },
  30_000,
)
