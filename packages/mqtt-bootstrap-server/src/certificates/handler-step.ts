/**
 * The handler's `issue` option (handler.ts): a request whose data carries `csr` has it judged before `resolve` (a
 * bad one is `"10008"` and consumes nothing, not a pool triplet either), and the configuration `resolve` answers
 * gets `device.certificate`, the chain issued for it. Without `csr`, the request is answered as without `issue`.
 * A request whose TLS client certificate the issuer recognises is a renewal (issue 18, renewal.ts): answered only a
 * configuration of the certificate's own device.
 */
import type { IncomingMessage } from 'node:http'
import { type DeviceConfig, parseDeviceConfig, ResultCode } from 'mqtt-bootstrap/contract'
import { CLAIM_CODES } from '../claims/verify.js'
import type { Reply } from '../http-answer.js'
import type { CertificateRequest } from './csr.js'
import type { CertificateIssuer } from './issue.js'
import { type Renewal, recordRenewal } from './renewal.js'

/** The refusal of an unusable CSR (SERVER_CODES.BAD_CSR). */
export const BAD_CSR = '10008'

/** The request field a device's CSR travels in. */
const CSR_FIELD = 'csr'

/** `issue` as the handler takes it: undefined, or an object with check() and issue(). */
export function checkIssuer(issue: unknown): CertificateIssuer | undefined {
  if (issue === undefined) return undefined
  const candidate = issue as Partial<CertificateIssuer> | null
  if (typeof candidate?.check !== 'function' || typeof candidate.issue !== 'function') {
    throw new TypeError('Expected `issue` to be a CertificateIssuer (issueCertificates(…)): check() and issue()')
  }
  if (candidate.renewal !== undefined && typeof candidate.renewal !== 'function') {
    throw new TypeError('Expected `issue.renewal` to be a function, when given')
  }
  return issue as CertificateIssuer
}

/**
 * The renewal `request` is, by its TLS client certificate, noted for the registries (renewedDeviceName); `undefined`
 * when it is none, or the issuer recognises none. What an issuer of one's own answers that is no `{ deviceName }` is
 * the server's failure (`"77777"`), never a renewal.
 */
export function renewalOf(issue: CertificateIssuer | undefined, request: IncomingMessage): Renewal | undefined {
  if (issue?.renewal === undefined) return undefined
  const renewal = issue.renewal(request)
  if (renewal === undefined) return undefined
  const deviceName = (renewal as Partial<Renewal> | null)?.deviceName
  if (typeof deviceName !== 'string' || deviceName === '') {
    throw new TypeError('issue.renewal() returned neither undefined nor { deviceName } (a non-empty string)')
  }
  recordRenewal(request, deviceName)
  return { deviceName }
}

/**
 * A renewal's answer (`body`, as `resolve`'s configuration made it): a refusal stays as it is; a configuration of
 * another device than the certificate's (the certificate of one device, the data of another) is `"10004"`, no
 * configuration: the certificate proves no claim of that device.
 */
export function renewedAnswer(renewal: Renewal, body: object): object {
  const { code, result } = body as { code: string; result?: DeviceConfig }
  if (code !== ResultCode.SUCCESS || result === undefined) return body
  return result.device.deviceName === renewal.deviceName ? body : { code: CLAIM_CODES.INVALID_SIGNATURE }
}

/**
 * The request the data's `csr` asks a certificate for; `undefined` when it has none; a refusal for an unusable one
 * (its message names the problem, never quotes the CSR).
 */
export async function requestedCertificate(
  issue: CertificateIssuer,
  data: unknown,
): Promise<{ request: CertificateRequest } | { refusal: Reply } | undefined> {
  if (typeof data !== 'object' || data === null || !Object.hasOwn(data, CSR_FIELD)) return undefined
  const checked = await issue.check((data as Record<string, unknown>)[CSR_FIELD])
  if (checked.ok) return { request: checked.request }
  // 200 like every refusal: the seed's contract.
  return { refusal: [200, { code: BAD_CSR, message: `csr ${checked.problem}` }, {}] }
}

/**
 * `body` (an answer as the handler makes it) with the certificate issued for `request` when it is a `"00000"`; a
 * refusal stays as it is. An issuer that fails, or answers something that is not a PEM chain, throws: `"77777"`.
 */
export async function withCertificate(
  issue: CertificateIssuer,
  request: CertificateRequest,
  body: object,
): Promise<object> {
  const { code, result } = body as { code: string; result?: DeviceConfig }
  if (code !== ResultCode.SUCCESS || result === undefined) return body
  const { device, connect } = result
  const certificate = await issue.issue(request, { productKey: device.productKey, deviceName: device.deviceName })
  const config = parseDeviceConfig({ device: { ...device, certificate }, connect })
  if (!config.ok) throw new TypeError(`issue() returned an invalid certificate: ${config.problem}`)
  return { code, result: { device: { ...config.value.device }, connect: { ...config.value.connect } } }
}

/**
 * A well-formed chain standing in for the one about to be issued, so that the contract's check of `resolve`'s
 * configuration holds it to the certificate's rules: a configuration with a certificate needs no secret (a registry
 * that issues certificates keeps none). Replaced by the real chain, or removed, before anything is answered.
 */
const PENDING_CERTIFICATE = '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n'

/** `resolution` (a configuration from `resolve`) as it will be once its certificate is issued. */
export function awaitingCertificate(resolution: { device: Record<string, unknown>; connect: unknown }): unknown {
  return { ...resolution, device: { ...resolution.device, certificate: PENDING_CERTIFICATE } }
}

/** A checked configuration without its certificate (the registry's own, as the re-claim log records it). */
export function withoutCertificate({ device, connect }: DeviceConfig): DeviceConfig {
  const { certificate: _, ...rest } = device
  return { device: rest, connect: { ...connect } }
}
