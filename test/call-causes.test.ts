import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, expect, test } from 'vitest'
import { boot, useTestEnv } from './helpers/env.js'
import { configAnswer, json } from './helpers/https-server.js'
import { freePort } from './helpers/ports.js'
import { type SilentServer, startSilentServer } from './helpers/silent-server.js'
import { until } from './helpers/until.js'

const env = useTestEnv()
const retry = { retries: 100, minTimeout: 40, maxTimeout: 40, randomize: false }

const silent: SilentServer[] = []
afterEach(async () => {
  await Promise.all(silent.splice(0).map((server) => server.close()))
})
/** A broker that never sends CONNACK. */
async function silentBroker(): Promise<string> {
  const server = await startSilentServer()
  silent.push(server)
  return `mqtt://127.0.0.1:${server.port}`
}

test("a connect retrying the broker keeps its own cause while a concurrent provision() retries the server's 503s", async () => {
  env.answerValid({ host: `mqtt://127.0.0.1:${await freePort()}` }) // a broker that refuses the TCP connect
  const { boot: bootstrap, events } = boot(env.options({ deadlineMs: 700, retry }))
  const connecting = bootstrap.connect().catch((e: unknown) => e)
  // Past provisioning, into the connect loop: a provision() made while the first flight runs would join it.
  await until(() => events.some(([name]) => name === 'connecting'), 2000, 'the connect to have provisioned')
  env.server.handle((_req, res) => res.writeHead(503).end())
  await bootstrap.invalidate()
  const provisioning = bootstrap.provision().catch((e: unknown) => e)
  const [connectError, provisionError] = await Promise.all([connecting, provisioning])
  expect(connectError).toMatchObject({ code: 'ERR_BOOT_TIMEOUT', cause: { code: 'ERR_BROKER_CONNECT' } })
  expect(provisionError).toMatchObject({ code: 'ERR_BOOT_TIMEOUT', cause: { code: 'ERR_PROVISION_HTTP_STATUS' } })
  expect(env.server.requests.length).toBeGreaterThan(2) // the provision() call did retry meanwhile
})

test('a call that ended leaves no cause behind: later calls that retried nothing time out without one', async () => {
  let first = true
  const host = await silentBroker()
  env.server.handle((_req, res) => {
    if (first) {
      first = false
      res.writeHead(503).end()
    } else json(res, 200, configAnswer({ host }))
  })
  const { boot: bootstrap } = boot(env.options({ deadlineMs: 500, retry }))
  await bootstrap.provision() // one 503 retried, then provisioned: this call is over
  const a = bootstrap.connect().catch((e: unknown) => e) // the broker never answers: nothing is retried
  await sleep(100)
  const c = bootstrap.connect().catch((e: unknown) => e)
  const [errorA, errorC] = (await Promise.all([a, c])) as [
    { code?: string; cause?: unknown },
    { code?: string; cause?: unknown },
  ]
  expect(errorA.code).toBe('ERR_BOOT_TIMEOUT')
  expect(errorC.code).toBe('ERR_BOOT_TIMEOUT')
  expect(errorA.cause).toBeUndefined()
  expect(errorC.cause).toBeUndefined() // not the 503 of the provision() that ended before it began
})
