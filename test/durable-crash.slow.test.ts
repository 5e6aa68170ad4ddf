/**
 * The durable session's guarantee under real crashes (issue 20): a device process (test/fixtures/durable-device.ts)
 * killed with SIGKILL, a real mosquitto with persistence on, a real subscriber (mqtt.js, a persistent QoS 1 session)
 * counting what arrives. A QoS 1 message is durable once publish() has returned and the store has synced it: every
 * message published at least `syncMs` before a kill must reach the subscriber; duplicates are allowed, losses are not.
 *
 * Long (device processes started one after another): on the machine's Node only, as every *.slow.test.ts. Without
 * mosquitto the suite is skipped with the reason, except in CI, where that is a failure.
 */
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { startTs } from './helpers/child.js'
import { suite } from './helpers/exposure.js'
import { configAnswer, json, startHttpsServer, type TestServer } from './helpers/https-server.js'
import { type Mosquitto, mosquittoSkipReason, startMosquitto } from './helpers/mosquitto.js'
import { type TlsFixture, tlsFixture } from './helpers/tls.js'
import { until } from './helpers/until.js'

const skipReason = mosquittoSkipReason() // throws in CI when mosquitto is missing
if (skipReason !== undefined) console.warn(`test/durable-crash.slow.test.ts skipped: ${skipReason}`)

const FIXTURE = join(import.meta.dirname, 'fixtures', 'durable-device.ts')
const SYNC_MS = 200
const DEVICE = { productKey: 'a1DurablePK', deviceName: 'durable-device', deviceSecret: 'durable-secret-0001' }
const ROTATED = { ...DEVICE, deviceSecret: 'durable-secret-rotated-0002' }
const SUBSCRIBER = { username: 'subscriber', password: 'subscriber-secret-0001' }
suite.secret(SUBSCRIBER.password)

describe.skipIf(skipReason !== undefined)(
  `a device killed with SIGKILL, mosquitto with persistence${skipReason === undefined ? '' : ` (skipped: ${skipReason})`}`,
  () => {
    let tls: TlsFixture
    let broker: Mosquitto
    let server: TestServer
    let subscriber: MqttClient
    let root: string
    let caFile: string
    let n = 0
    const received: string[] = []
    const children = new Set<ChildProcess>()

    beforeAll(async () => {
      tls = await tlsFixture()
      root = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-crash-'))
      caFile = join(root, 'ca.pem')
      writeFileSync(caFile, tls.ca)
      broker = await startMosquitto({
        persistence: true,
        users: { [DEVICE.deviceName]: DEVICE.deviceSecret, [SUBSCRIBER.username]: SUBSCRIBER.password },
      })
      server = await startHttpsServer(tls, (_req, res) =>
        json(res, 200, configAnswer({ host: broker.host, qos: 1, cleanSession: 0 }, DEVICE)),
      )
      subscriber = await mqtt.connectAsync(`mqtt://${broker.host}`, {
        ...SUBSCRIBER,
        clientId: 'durable-subscriber',
        clean: false, // mosquitto keeps its session and queue across its own restarts (persistence)
        reconnectPeriod: 100,
      })
      subscriber.on('message', (_topic, payload) => received.push(payload.toString()))
      await subscriber.subscribeAsync('dur/#', { qos: 1 })
    }, 30_000)

    afterAll(async () => {
      for (const child of children) child.kill('SIGKILL')
      await subscriber?.endAsync(true)
      await Promise.all([server?.close(), broker?.stop()])
      rmSync(root, { recursive: true, force: true })
    })

    /** A device's own files: its credential cache and its message store. */
    function device() {
      const dir = join(root, `device-${++n}`)
      return { CREDENTIALS: join(dir, 'credentials.json'), MESSAGES: join(dir, 'messages') }
    }

    /** Start the fixture; resolves once it prints `line` (bounded), with its output so far. */
    async function start(env: Record<string, string>, line: string, timeoutMs = 20_000) {
      const run = startTs(FIXTURE, [], {
        env: { PROVISION_URL: server.url, CA_FILE: caFile, SYNC_MS: String(SYNC_MS), ...env },
      })
      children.add(run.child)
      run.child.once('exit', () => children.delete(run.child))
      const exited = once(run.child, 'exit').then(() => {
        throw new Error(`the device exited before "${line}":\n${run.output()}`)
      })
      const seen = until(() => run.output().split('\n').includes(line), timeoutMs, `"${line}" from the device`)
      await Promise.race([seen, exited]).catch((error: unknown) => {
        run.child.kill('SIGKILL')
        throw error
      })
      exited.catch(() => {}) // it may exit later (a drain ends): not an error then
      return run
    }

    async function kill(child: ChildProcess): Promise<void> {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    }

    test('1,000 messages published while the broker is down, the device killed, both back: all 1,000 arrive', async () => {
      const files = device()
      const offline = await start({ ...files, MODE: 'offline', COUNT: '1000' }, 'connected')
      await broker.pause()
      await until(() => offline.output().includes('published 1000'), 10_000, 'the 1,000 publishes')
      await sleep(SYNC_MS + 100) // the guarantee's condition: synced (they are on disk already, before the sync)
      await kill(offline.child)
      await broker.resume()
      await until(() => subscriber.connected, 10_000, 'the subscriber back')
      const drain = await start({ ...files, MODE: 'drain' }, 'drained', 30_000)
      await until(() => new Set(received.filter((p) => /^o\d+$/.test(p))).size === 1000, 15_000, 'all 1,000')
      await once(drain.child, 'exit')
      expect(new Set(received.filter((p) => /^o\d+$/.test(p))).size).toBe(1000)
    }, 90_000)

    /** The messages of a killed run published at least syncMs before the kill: they must arrive. */
    function owedBy(output: string, killedAt: number, run: string): { owed: string[]; last: number } {
      const owed: string[] = []
      let last = 0
      for (const line of output.split('\n')) {
        const match = /^p (\d+) (\d+)(?: q)?$/.exec(line)
        if (match === null) continue
        last = Math.max(last, Number(match[1]))
        if (Number(match[2]) <= killedAt - SYNC_MS) owed.push(`${run}:${match[1]}`)
      }
      return { owed, last }
    }

    test('a numbered stream killed at a random moment 20 times: everything published syncMs before a kill arrives', async () => {
      const files = device()
      const owed = new Set<string>()
      let next = 1
      for (let round = 1; round <= 20; round++) {
        const run = await start({ ...files, MODE: 'stream', RUN: 'k', START: String(next) }, 'connected')
        // Every other run the broker goes away while the device streams: its messages wait in the store for longer
        // than syncMs, unacknowledged, and the kill finds them there.
        const down = round % 2 === 0
        if (down) {
          await sleep(Math.floor(Math.random() * 100))
          await broker.pause()
        }
        await sleep(100 + Math.floor(Math.random() * 400))
        const killedAt = Date.now()
        await kill(run.child)
        if (down) await broker.resume()
        const { owed: ofRun, last } = owedBy(run.output(), killedAt, 'k')
        for (const message of ofRun) owed.add(message)
        next = Math.max(next, last + 1)
      }
      expect(owed.size).toBeGreaterThan(500) // the runs did publish, kill after kill
      await until(() => subscriber.connected, 10_000, 'the subscriber back')
      await start({ ...files, MODE: 'drain' }, 'drained', 30_000)
      await until(() => [...owed].every((p) => received.includes(p)), 15_000, 'every owed message')
      expect([...owed].filter((p) => !received.includes(p))).toEqual([])
    }, 180_000)

    test('killed while it resends a long backlog: what the app published meanwhile (queued by mqtt.js) arrives too', async () => {
      const files = device()
      const stream = await start({ ...files, MODE: 'stream', RUN: 'b' }, 'connected')
      await broker.pause()
      await sleep(5000) // a backlog of thousands in the store, resent one at a time once the broker is back
      await broker.resume()
      await until(() => / q$/m.test(stream.output()), 10_000, 'a publish queued by mqtt.js during the resend')
      await sleep(SYNC_MS + 50)
      const killedAt = Date.now()
      await kill(stream.child)
      const { owed } = owedBy(stream.output(), killedAt, 'b')
      const queuedOwed = stream
        .output()
        .split('\n')
        .filter((line) => / q$/.test(line) && Number(line.split(' ')[2]) <= killedAt - SYNC_MS)
      expect(queuedOwed.length).toBeGreaterThan(0) // the kill came in the window this test is about
      await until(() => subscriber.connected, 10_000, 'the subscriber back')
      await start({ ...files, MODE: 'drain' }, 'drained', 60_000)
      await until(() => owed.every((p) => received.includes(p)), 20_000, 'every owed message')
      expect(owed.filter((p) => !received.includes(p))).toEqual([])
    }, 120_000)

    test('killed during a re-provisioning (the broker back with a new secret): the next boot delivers the stream', async () => {
      const files = device()
      const stream = await start({ ...files, MODE: 'stream', RUN: 'r' }, 'connected')
      await until(() => stream.output().includes('p 100 '), 10_000, '100 published')
      // The cloud rotates the secret while the broker is away: it comes back knowing only the new one, and the
      // provisioning server answers it. Meanwhile the device streams into its store.
      server.handle((_req, res) =>
        json(res, 200, configAnswer({ host: broker.host, qos: 1, cleanSession: 0 }, ROTATED)),
      )
      await broker.pause()
      await broker.setUsers({ [ROTATED.deviceName]: ROTATED.deviceSecret, [SUBSCRIBER.username]: SUBSCRIBER.password })
      await sleep(SYNC_MS + 300)
      await broker.resume()
      // The cached secret is refused, the device provisions afresh: killed at some point of that, or just after.
      await sleep(Math.floor(Math.random() * 300))
      const killedAt = Date.now()
      await kill(stream.child)
      const { owed } = owedBy(stream.output(), killedAt, 'r')
      expect(owed.length).toBeGreaterThan(150)
      await until(() => subscriber.connected, 10_000, 'the subscriber back')
      await start({ ...files, MODE: 'drain' }, 'drained', 30_000)
      await until(() => owed.every((p) => received.includes(p)), 15_000, 'every owed message')
      expect(owed.filter((p) => !received.includes(p))).toEqual([])
      expect(server.requests.length).toBeGreaterThanOrEqual(2) // provisioned, then again after the refusal
    }, 90_000)
  },
)
