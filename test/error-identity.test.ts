// Errors are recognised across copies of the library (issue 13): the ESM and the CJS build loaded side by side in
// one process (a dual-package hazard: an app importing one, a dependency requiring the other) agree on `instanceof`,
// because each class checks a `Symbol.for('mqtt-bootstrap.<ClassName>')` brand, as undici does, not its prototype.
// Tested for real: the package is built (its own build script, into a directory of this test) and both outputs are
// loaded in one child process.
import { execFile } from 'node:child_process'
import { rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, expect, test } from 'vitest'

const run = promisify(execFile)
const root = resolve(import.meta.dirname, '..')
// Inside the package, so that both builds resolve their dependencies as the published package would.
const out = join(root, 'packages/mqtt-bootstrap', `.dist-identity-${process.pid}`)

// Runs in the child: every error class made by each build, checked against the other build's classes.
const CHILD = `
import { createRequire } from 'node:module'
const esm = await import('./index.mjs')
const cjs = createRequire(import.meta.url)('./index.cjs')
const make = {
  MqttBootstrapError: (lib) => new lib.MqttBootstrapError('ERR_STORE_IO', 'm'),
  InvalidOptionError: (lib) => new lib.InvalidOptionError('url', 'm'),
  ProvisioningError: (lib) => new lib.ProvisioningError('ERR_PROVISION_REFUSED', 'm', { resultCode: '1', transient: false }),
  RegistrationError: (lib) => new lib.RegistrationError('ERR_REGISTER_BUSY', 'm', { transient: true, retryAfterMs: 5 }),
  BrokerError: (lib) => new lib.BrokerError('ERR_BROKER_CONNECT', 'm', { transient: true }),
  CredentialStoreError: (lib) => new lib.CredentialStoreError('ERR_STORE_CORRUPT', 'm'),
  AuthError: (lib) => new lib.AuthError('ERR_AUTH_INVALID_IDENTITY', 'm'),
  AbortError: (lib) => new lib.AbortError('why'),
  BootTimeoutError: (lib) => new lib.BootTimeoutError(10),
  TransportError: (lib) => new lib.TransportError('ERR_TRANSPORT_TIMEOUT', 'm', { timeoutMs: 10 }),
}
const names = Object.keys(make)
const matrix = {}
for (const [from, to] of [[esm, cjs], [cjs, esm], [esm, esm], [cjs, cjs]]) {
  const key = (from === esm ? 'esm' : 'cjs') + '>' + (to === esm ? 'esm' : 'cjs')
  matrix[key] = {}
  for (const made of names) {
    const error = make[made](from)
    matrix[key][made] = names.filter((name) => error instanceof to[name])
  }
}
// Errors the library throws itself, by one build, told apart by the other's classes.
let thrown = 'no error'
try {
  cjs.createBootstrap({ url: 'ftp://x', data: {} })
} catch (error) {
  thrown = error
}
const pa = new cjs.PointAccess({ timeoutMs: 500 })
await pa.request('https://127.0.0.1:9/provision', {})
const seamError = await new cjs.UndiciTransport()
  .post({ url: new URL('https://127.0.0.1:9/'), headers: {}, body: '', timeoutMs: 500, maxResponseBytes: 10 })
  .catch((e) => e)
class Mine extends esm.ProvisioningError {}
const mine = new Mine('ERR_PROVISION_REFUSED', 'm', { resultCode: '1', transient: false })
console.log(JSON.stringify({
  same: esm.ProvisioningError === cjs.ProvisioningError,
  matrix,
  invalidOption: [thrown instanceof esm.InvalidOptionError, thrown instanceof TypeError, thrown?.code],
  lastError: [pa.lastError instanceof esm.ProvisioningError, pa.lastError?.code, seamError instanceof esm.TransportError],
  plain: [new Error('x') instanceof esm.MqttBootstrapError, null instanceof esm.AbortError, 'x' instanceof esm.AbortError],
  subclass: [mine instanceof Mine, mine instanceof cjs.ProvisioningError, make.ProvisioningError(cjs) instanceof Mine],
  fields: (({ transient, retryAfterMs, code }) => ({ transient, retryAfterMs, code }))(make.RegistrationError(cjs)),
}))
`

beforeAll(async () => {
  await run('npm', ['run', 'build', '-w', 'mqtt-bootstrap', '--', '--out-dir', out], { cwd: root, timeout: 120_000 })
  await writeFile(join(out, 'identity.mjs'), CHILD)
}, 150_000)
afterAll(() => rm(out, { recursive: true, force: true }))

test('an error made by either build is instanceof the same class of the other, and of no other', async () => {
  const { stdout } = await run(process.execPath, [join(out, 'identity.mjs')], { cwd: out, timeout: 20_000 })
  const result = JSON.parse(stdout) as {
    same: boolean
    matrix: Record<string, Record<string, string[]>>
    invalidOption: unknown[]
    lastError: unknown[]
    plain: boolean[]
    subclass: boolean[]
    fields: unknown
  }
  expect(result.same).toBe(false) // two copies of every class: the hazard is real
  for (const direction of ['esm>cjs', 'cjs>esm', 'esm>esm', 'cjs>cjs']) {
    const matrix = result.matrix[direction] ?? {}
    for (const [made, recognised] of Object.entries(matrix)) {
      // Its own class, and the base for every runtime error (InvalidOptionError is a TypeError instead).
      const expected =
        made === 'InvalidOptionError' || made === 'MqttBootstrapError' ? [made] : ['MqttBootstrapError', made]
      expect(recognised.sort(), `${direction}: ${made}`).toEqual(expected.sort())
    }
    expect(Object.keys(matrix)).toHaveLength(10)
  }
  expect(result.invalidOption).toEqual([true, true, 'ERR_INVALID_OPTION'])
  expect(result.lastError).toEqual([true, 'ERR_PROVISION_NETWORK', true])
  expect(result.plain).toEqual([false, false, false])
  // A subclass of the caller's own gets the ordinary prototype check.
  expect(result.subclass).toEqual([true, true, false])
  expect(result.fields).toEqual({ transient: true, retryAfterMs: 5, code: 'ERR_REGISTER_BUSY' })
}, 30_000)
