import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { brokerFailure } from '../packages/mqtt-bootstrap/src/connector.js'
import { BrokerError } from '../packages/mqtt-bootstrap/src/index.js'
import { startBroker, type TestBroker } from './helpers/broker.js'
import { abortDuringBackoff, boot, payloads, useTestEnv } from './helpers/env.js'
import { FakeClock } from './helpers/fake-clock.js'
import { DEVICE } from './helpers/https-server.js'

const SECRETS = { [`${DEVICE.productKey}.${DEVICE.deviceName}`]: DEVICE.deviceSecret }

describe('classifying connect failures', () => {
  const withCode = (code: number) => Object.assign(new Error(`refused ${code}`), { code })

  test.each([4, 5, 134, 135])('CONNACK %i: credentials rejected', (code) => {
    expect(brokerFailure(withCode(code))).toMatchObject({
      code: 'ERR_BROKER_AUTH_REJECTED',
      returnCode: code,
      transient: false,
    })
  })

  test.each([3, 136, 137, 151, 159])('CONNACK %i: worth another try', (code) => {
    expect(brokerFailure(withCode(code))).toMatchObject({
      code: 'ERR_BROKER_CONNECT',
      returnCode: code,
      transient: true,
    })
  })

  test.each([1, 2, 128, 133, 138])('CONNACK %i: permanent', (code) => {
    expect(brokerFailure(withCode(code))).toMatchObject({
      code: 'ERR_BROKER_CONNECT',
      returnCode: code,
      transient: false,
    })
  })

  test('network errors are transient, certificate errors permanent', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
    expect(brokerFailure(refused)).toMatchObject({ transient: true, message: expect.stringContaining('ECONNREFUSED') })
    const untrusted = Object.assign(new Error('self-signed'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' })
    expect(brokerFailure(untrusted)).toMatchObject({ transient: false })
  })
})

describe('the connect phase', () => {
  const env = useTestEnv()
  let tlsBroker: TestBroker
  beforeAll(async () => {
    tlsBroker = await startBroker({ tls: env.tls, secrets: SECRETS })
  })
  afterAll(() => tlsBroker.close())

  test('a broker certificate that is not trusted fails at once, never retried', async () => {
    env.answerValid({ host: `mqtts://${tlsBroker.host}` })
    const clock = new FakeClock()
    const error = await boot(env.options({ broker: undefined }), { clock })
      .boot.connect()
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(BrokerError)
    expect(error).toMatchObject({ code: 'ERR_BROKER_CONNECT', transient: false, attempts: 1 })
    expect(clock.sleeps).toEqual([])
    expect(tlsBroker.connects).toHaveLength(0)
  })

  test('a client certificate upgrades mqtt:// to mqtts:// and aliyun signs securemode=2', async () => {
    env.answerValid({ host: `mqtt://${tlsBroker.host}` })
    const { boot: bootstrap, events } = boot(
      env.options({ broker: undefined, mqtt: { ca: env.tls.ca, cert: env.tls.client.cert, key: env.tls.client.key } }),
    )
    env.track(await bootstrap.connect())
    expect(payloads(events, 'connected')[0]?.url).toBe(`mqtts://${tlsBroker.host}`)
    expect(tlsBroker.connects.at(-1)?.clientId).toContain('securemode=2')
  })

  test('abort while a silent broker has not answered CONNACK', async () => {
    const silent = net.createServer((socket) => socket.on('data', () => {})).listen(0, '127.0.0.1')
    await once(silent, 'listening')
    try {
      env.answerValid({ host: `127.0.0.1:${(silent.address() as AddressInfo).port}` })
      const controller = new AbortController()
      const { boot: bootstrap, events } = boot(env.options({ signal: controller.signal }))
      const pending = bootstrap.connect()
      setTimeout(() => controller.abort(), 100)
      await expect(pending).rejects.toMatchObject({ code: 'ERR_ABORTED' })
      expect(payloads(events, 'connecting')).toHaveLength(1)
    } finally {
      silent.close()
    }
  })

  test('abort during the connect-phase backoff', async () => {
    env.answerValid({ host: '127.0.0.1:1' })
    const { error, events } = await abortDuringBackoff(env.options())
    expect(error).toMatchObject({ code: 'ERR_ABORTED' })
    expect(payloads(events, 'retry').map((e) => e.phase)).toEqual(['connect'])
    expect(payloads(events, 'connecting')).toHaveLength(1)
  })
})
