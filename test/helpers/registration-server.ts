/**
 * A loopback stand-in for Alibaba Cloud's HTTPS dynamic registration (`POST /auth/register/device`), behaving as its
 * documentation says: a form-encoded request with productKey, deviceName, random, sign and signMethod; the sign an HMAC
 * of "deviceName{dn}productKey{pk}random{random}" keyed by the productSecret (computed here independently of the
 * library); `{"code":200,"data":{productKey,deviceName,deviceSecret},"message":"success"}` for a pre-registered device
 * that is not yet activated, a new secret on each registration (only the latest is valid), and once activated (it has
 * connected) no more registrations. Failures answer Alibaba's system codes (460 bad parameters, 401 bad signature,
 * 429/500/503) or a business code of this server's own with a message (the library treats every code but 200 and the
 * busy ones as a refusal, whatever its number). Issued secrets go to the test broker, which then accepts them.
 */
import { createHmac, randomBytes } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import type { TestBroker } from './broker.js'
import { suite } from './exposure.js'
import { json, type RecordedRequest, startHttpsServer, type TestServer } from './https-server.js'
import type { TlsFixture } from './tls.js'

export const PRODUCT = Object.freeze({
  productKey: 'a1DynRegPK01',
  productSecret: 'PS-dynamic-registration-0001',
})

/** Business codes of this server (Alibaba documents its own; the client does not depend on the numbers). */
export const CODES = Object.freeze({ productNotFound: 6250, deviceNotFound: 6100, alreadyActivated: 6289 })

const HASHES: Record<string, string> = { hmacsha256: 'sha256', hmacsha1: 'sha1', hmacmd5: 'md5' }

export interface RegistrationRequestRecord {
  contentType: string | undefined
  form: Record<string, string>
}

export interface DeviceState {
  activated: boolean
  deviceSecret?: string
}

export interface RegistrationServer {
  /** `https://127.0.0.1:<port>/auth/register/device` */
  url: string
  server: TestServer
  /** Every request, its content type and form fields. */
  registrations: RegistrationRequestRecord[]
  /** Pre-registered device names, and whether each has been activated (a test sets it once the device connected). */
  devices: Map<string, DeviceState>
  /** Answers to give instead, one per request, before the normal behaviour resumes. */
  next: Array<(response: ServerResponse, request: RecordedRequest) => void>
  /** The deviceSecret issued last to `deviceName`. */
  issued(deviceName: string): string | undefined
  close(): Promise<void>
}

export async function startRegistrationServer(
  tls: TlsFixture,
  broker: TestBroker,
  deviceNames: string[],
): Promise<RegistrationServer> {
  suite.secret(PRODUCT.productSecret)
  const devices = new Map<string, DeviceState>(deviceNames.map((name) => [name, { activated: false }]))
  const registrations: RegistrationRequestRecord[] = []
  const next: RegistrationServer['next'] = []
  const server = await startHttpsServer(tls, (request, response) => {
    const form = Object.fromEntries(new URLSearchParams(request.body))
    registrations.push({ contentType: request.headers['content-type'], form })
    const scripted = next.shift()
    if (scripted !== undefined) return scripted(response, request)
    if (request.method !== 'POST' || request.path !== '/auth/register/device') {
      return json(response, 404, { code: 404, message: 'service not found' })
    }
    const { productKey, deviceName, random, sign, signMethod } = form
    if (
      request.headers['content-type'] !== 'application/x-www-form-urlencoded' ||
      !productKey ||
      !deviceName ||
      !random ||
      !sign ||
      !signMethod ||
      HASHES[signMethod] === undefined
    ) {
      return json(response, 200, { code: 460, message: 'request parameter error' })
    }
    if (productKey !== PRODUCT.productKey) {
      return json(response, 200, { code: CODES.productNotFound, message: 'product not found' })
    }
    const expected = createHmac(HASHES[signMethod] as string, PRODUCT.productSecret)
      .update(`deviceName${deviceName}productKey${productKey}random${random}`)
      .digest('hex')
    if (sign !== expected) return json(response, 200, { code: 401, message: 'request auth error' })
    const device = devices.get(deviceName)
    if (device === undefined) return json(response, 200, { code: CODES.deviceNotFound, message: 'device not found' })
    if (device.activated) {
      return json(response, 200, { code: CODES.alreadyActivated, message: 'device is already activated' })
    }
    device.deviceSecret = `DS-${randomBytes(12).toString('hex')}`
    suite.secret(device.deviceSecret)
    broker.secrets.set(`${productKey}.${deviceName}`, device.deviceSecret)
    return json(response, 200, {
      code: 200,
      data: { productKey, deviceName, deviceSecret: device.deviceSecret },
      message: 'success',
    })
  })
  return {
    url: `https://127.0.0.1:${server.port}/auth/register/device`,
    server,
    registrations,
    devices,
    next,
    issued: (deviceName) => devices.get(deviceName)?.deviceSecret,
    close: () => server.close(),
  }
}
