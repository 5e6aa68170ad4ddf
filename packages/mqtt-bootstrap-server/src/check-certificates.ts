/**
 * The checker's certificate checks (issue 17, CheckOptions `certificate`, `check --certificate`): the known device's
 * claim carries a CSR for a key made for the check, as the device's `certificate` option sends it, and the answer's
 * `device.certificate` must be a client certificate for that key, named after the answer's deviceName, not a CA, and
 * chain to the CA the answer sends, as the device judges it (checkCertificateChain). Then a CSR whose signature does
 * not verify must be refused: a server that signed it would certify a key nobody proved to hold. Last, the renewal
 * (issue 18): the claim again, with a CSR for a new key and the certificate just issued (and its key) as the TLS
 * client certificate, as a device renews it; it must be answered a certificate for the new key, of the same CN.
 */
import { X509Certificate } from 'node:crypto'
import type { HttpResponse } from 'mqtt-bootstrap'
import { InvalidOptionError, ProvisioningError } from 'mqtt-bootstrap'
import {
  type DeviceKey as CertificateKey,
  checkCertificateChain,
  createCertificateRequest,
  createDeviceKey,
  interpretAnswer,
  serializeData,
} from 'mqtt-bootstrap/contract'
import { asn1 } from './certificates/asn1.js'
import type { CheckStatus } from './check-claims.js'

/** The certificate checks, in report order (listed only with `certificate: true`). */
export const CERTIFICATE_CHECKS = Object.freeze({
  certificate: "issues device.certificate for the CSR sent with the known device's claim",
  certificateKey: "the certificate is for the CSR's key",
  certificateSubject: "the certificate's CN is the answer's deviceName",
  certificateNotCa: 'the certificate is not a CA (CA:FALSE)',
  certificateChain: 'the chain is valid now and each certificate is issued by the next, as the device checks it',
  badCsr: 'refuses a CSR whose signature does not verify (not "00000")',
  certificateRenewal:
    'renews: the claim with the issued certificate as TLS client certificate gets one for a new key, the same CN',
} as const)

/** The id of a certificate check. */
export type CertificateCheckId = keyof typeof CERTIFICATE_CHECKS

type Posted = { response: HttpResponse; error?: undefined } | { response?: undefined; error: Error }

/** As the device allows a fresh certificate's notBefore ahead of its clock (certificates/chain.ts). */
const NOT_BEFORE_SKEW_MS = 5 * 60_000

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/** A request made for the check: a fresh P-256 key, never sent, and its CSR. */
export interface CertificateProbe {
  key: CertificateKey
  csr: string
}

/**
 * The checker's data with a fresh CSR, or an InvalidOptionError (before any request) for data that cannot carry one:
 * the device's own rule (an object without `csr`).
 */
export async function certificateProbe(data: unknown): Promise<{ probe: CertificateProbe; data: object }> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new InvalidOptionError(
      'data',
      'Expected `data` to be an object when `certificate` is set (the CSR is its `csr` field)',
    )
  }
  if (Object.hasOwn(data, 'csr')) {
    throw new InvalidOptionError(
      'data',
      'Expected `data` without a `csr` field when `certificate` is set (the checker adds its own)',
    )
  }
  const key = await createDeviceKey('p256')
  const csr = createCertificateRequest(key)
  return { probe: { key, csr }, data: { ...data, csr } }
}

/** What the certificate checks need from the checker. */
export interface CertificateContext {
  probe: CertificateProbe
  /** The known device's answer (its claim carried the probe's CSR). */
  response: HttpResponse
  /** The known device's data with `csr`, to send again with a broken CSR. */
  data: object
  /** Post a body, signed as the known device's claims are; with `client`, that TLS client certificate and key. */
  post(payload: string, client?: { cert: string; key: string }): Promise<Posted>
  record(id: CertificateCheckId, status: CheckStatus, detail: string): void
}

/**
 * Judge the known device's answer to its claim with a CSR, then send a broken CSR, then renew the certificate issued;
 * record each check.
 */
export async function checkCertificates(context: CertificateContext): Promise<void> {
  const { probe, response, data, post, record } = context
  const issued = judgeCertificate(probe, response, record)
  // Flipped in the signature's last byte: the same request, its proof of possession broken.
  const broken = brokenSignature(probe.csr)
  const posted = await post(serializeData({ ...data, csr: broken }, 'data'))
  record('badCsr', ...judgeRefusal(posted))
  if (issued === undefined) {
    record('certificateRenewal', 'skip', "not checked: no certificate for the CSR's key, valid now, to renew with")
    return
  }
  record('certificateRenewal', ...(await renew(issued, context)))
}

/** A certificate issued for the probe's key, valid now: what the renewal presents. */
interface Issued {
  chain: string
  commonName: string
}

/** The checks judged from the known device's answer (`badCsr` sends a request of its own). */
const ANSWER_CHECKS = [
  'certificate',
  'certificateKey',
  'certificateSubject',
  'certificateNotCa',
  'certificateChain',
] as const satisfies readonly CertificateCheckId[]

/** The checks of the answer; the certificate when it is one a device would keep (for the key, valid now, one CN). */
function judgeCertificate(
  probe: CertificateProbe,
  response: HttpResponse,
  record: CertificateContext['record'],
): Issued | undefined {
  const skipAll = (why: string): undefined => {
    for (const id of ANSWER_CHECKS) {
      record(id, id === 'certificate' ? 'fail' : 'skip', id === 'certificate' ? why : 'not checked: no certificate')
    }
    return undefined
  }
  const outcome = interpretAnswer(response, Date.now())
  if (outcome instanceof ProvisioningError) {
    for (const id of ANSWER_CHECKS) {
      record(id, 'skip', 'not checked: the known device\'s claim with a CSR was not answered "00000"')
    }
    return undefined
  }
  const { certificate, deviceName } = outcome.device
  if (certificate === undefined) return skipAll('"00000" without device.certificate: the server ignored the CSR')
  let chain: X509Certificate[]
  try {
    chain = (certificate.match(CERTIFICATE_BLOCK) ?? []).map((block) => new X509Certificate(block))
  } catch {
    return skipAll('device.certificate has a block that does not parse')
  }
  const [leaf] = chain
  if (leaf === undefined) return skipAll('device.certificate holds no certificate')
  record(
    'certificate',
    'pass',
    `${chain.length} certificate(s), the leaf issued by ${leaf.issuer.replace(/\n/g, ', ')}`,
  )
  const forKey = leaf.publicKey.export({ type: 'spki', format: 'der' }).equals(probe.key.publicKeyDer)
  record('certificateKey', forKey ? 'pass' : 'fail', forKey ? "the CSR's public key" : "another key than the CSR's")
  const names = commonNames(leaf)
  const named = names.length === 1 && names[0] === deviceName
  record(
    'certificateSubject',
    named ? 'pass' : 'fail',
    named
      ? `CN "${deviceName}"`
      : `CN ${names.map((name) => `"${name}"`).join(', ') || 'absent'}, deviceName "${deviceName}"`,
  )
  record(
    'certificateNotCa',
    leaf.ca ? 'fail' : 'pass',
    leaf.ca ? 'CA:TRUE: the device could issue certificates' : 'CA:FALSE',
  )
  if (chain.length < 2) {
    record('certificateChain', 'fail', 'only the leaf: the issuing CA must follow it (the chain, leaf first)')
    return undefined
  }
  const checked = checkCertificateChain(certificate, probe.key.publicKeyDer, Date.now(), NOT_BEFORE_SKEW_MS)
  record(
    'certificateChain',
    checked.ok ? 'pass' : 'fail',
    checked.ok ? `valid until ${new Date(checked.notAfter).toISOString()}` : checked.problem,
  )
  const [commonName] = names
  return checked.ok && names.length === 1 && commonName !== undefined ? { chain: certificate, commonName } : undefined
}

/**
 * The renewal, as a device makes it: the data with a CSR for a new key, the issued certificate and the probe's key as
 * the TLS client certificate. A server that does not ask for client certificates answers it as a first claim: the
 * outcome is the same, and nothing the checker sees tells the two apart, so the detail says what was sent.
 */
async function renew(issued: Issued, context: CertificateContext): Promise<[CheckStatus, string]> {
  const { probe, data, post } = context
  const next = await certificateProbe(withoutCsr(data))
  const posted = await post(serializeData(next.data, 'data'), { cert: issued.chain, key: probe.key.privateKeyPem })
  if (posted.error !== undefined) return ['fail', `no answer to the renewal: ${posted.error.message}`]
  const outcome = interpretAnswer(posted.response, Date.now())
  if (outcome instanceof ProvisioningError) {
    const code = outcome.resultCode === undefined ? outcome.message : `"${outcome.resultCode}"`
    return ['fail', `the renewal was answered ${code} (HTTP ${posted.response.status}), not "00000"`]
  }
  const { certificate } = outcome.device
  if (certificate === undefined) return ['fail', 'the renewal was answered "00000" without device.certificate']
  const checked = checkCertificateChain(certificate, next.probe.key.publicKeyDer, Date.now(), NOT_BEFORE_SKEW_MS)
  if (!checked.ok) return ['fail', `the renewed certificate: ${checked.problem}`]
  const [leaf] = certificate.match(CERTIFICATE_BLOCK) ?? []
  const names = leaf === undefined ? [] : commonNames(new X509Certificate(leaf))
  if (names.length !== 1 || names[0] !== issued.commonName) {
    const shown = names.map((name) => `"${name}"`).join(', ') || 'absent'
    return ['fail', `the renewed certificate's CN is ${shown}, not "${issued.commonName}" as before`]
  }
  return [
    'pass',
    `a certificate for the new key, CN "${issued.commonName}", valid until ${new Date(checked.notAfter).toISOString()}` +
      ' (whether the server took it for a renewal or a new claim cannot be seen from here)',
  ]
}

/** The known device's data without the checker's first CSR (certificateProbe adds a new one). */
function withoutCsr(data: object): object {
  const { csr: _, ...rest } = data as Record<string, unknown>
  return rest
}

/**
 * The subject's CN values (asn1-x509: exactly as encoded, not as a printed name that escapes them); none when
 * asn1-x509 cannot read a certificate node can (the check then fails, the run goes on).
 */
function commonNames(certificate: X509Certificate): string[] {
  const { schema, x509 } = asn1()
  try {
    const parsed = schema.AsnConvert.parse(certificate.raw, x509.Certificate)
    return parsed.tbsCertificate.subject.flatMap((rdn) =>
      rdn.filter((attribute) => attribute.type === '2.5.4.3').map((attribute) => attribute.value.toString()),
    )
  } catch {
    return []
  }
}

/** The CSR with the last byte of its signature flipped. */
function brokenSignature(csr: string): string {
  const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64')
  der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01
  const lines = der.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`
}

/** Any refusal passes ("10008" is the reference server's); "00000", and what a device would retry or not read, fail. */
function judgeRefusal(posted: Posted): [CheckStatus, string] {
  if (posted.error !== undefined) return ['fail', `no answer to a broken CSR: ${posted.error.message}`]
  const outcome = interpretAnswer(posted.response, Date.now())
  if (!(outcome instanceof ProvisioningError)) {
    return ['fail', 'answered "00000": it certifies a key without proof that the sender holds it']
  }
  if (outcome.code !== 'ERR_PROVISION_REFUSED') {
    const why = outcome.transient ? 'the device would retry it' : 'the device could not understand it'
    return ['fail', `${outcome.message}: ${why}; a refusal needs a code of its own ("10008")`]
  }
  return ['pass', `"${outcome.resultCode}" (HTTP ${posted.response.status})`]
}
