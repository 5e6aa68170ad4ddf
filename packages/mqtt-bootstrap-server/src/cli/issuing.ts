/**
 * `serve --issuing-ca cert.pem --issuing-key key.pem [--certificate-validity SECONDS]`: certificates for devices'
 * CSRs (issue 17), signed by that CA. Both files or neither; the key file is refused when group or others may read
 * it (as the group key and the generated CA's key are). Checked before the server listens: a wrong file is exit 2.
 * Messages name the option and the file, never quote the key. The CA is also what `serve` asks devices' TLS client
 * certificates of: a device renews with the certificate it was issued (issue 18).
 */
import { type CertificateIssuer, issueCertificates } from '../certificates/issue.js'
import { UsageError } from './io.js'
import { readKeyFile } from './key-files.js'
import { parsePrivateKey, readCertificateOption } from './pem.js'

/** serve's options for certificates. */
export interface IssuingFlags {
  /** The issuing CA's certificate (PEM; or a chain, the issuing CA first). */
  issuingCa?: string
  /** Its private key (PEM), mode 0600. */
  issuingKey?: string
  /** How long an issued certificate is valid, in seconds. @default 2592000 (30 days) */
  certificateValidity?: string
}

/** 30 days: long enough for a device that is off for a while, short enough that a lost key does not last. */
export const DEFAULT_CERTIFICATE_VALIDITY_SECONDS = 30 * 86_400

/** More than any PEM private key (an RSA-8192 key is about 6.5 KiB): a bigger file is another file. */
const MAX_KEY_FILE_BYTES = 16 * 1024

/** What serve issues with: the issuer, its start-up summary, and the CA's certificates (PEM), for the TLS `ca`. */
export interface Issuing {
  issuer: CertificateIssuer
  summary: string
  ca: string
}

/** The issuer the flags ask for, or `undefined` without them; a UsageError for a wrong combination or file. */
export function issuerFromFlags(flags: IssuingFlags): Issuing | undefined {
  const { issuingCa, issuingKey, certificateValidity } = flags
  if ((issuingCa === undefined) !== (issuingKey === undefined)) {
    throw new UsageError('--issuing-ca and --issuing-key go together: the CA certificate and its private key')
  }
  if (issuingCa === undefined || issuingKey === undefined) {
    if (certificateValidity !== undefined) {
      throw new UsageError('--certificate-validity goes with --issuing-ca and --issuing-key')
    }
    return undefined
  }
  const validitySeconds =
    certificateValidity === undefined ? DEFAULT_CERTIFICATE_VALIDITY_SECONDS : validity(certificateValidity)
  const cert = readCertificateOption(issuingCa, '--issuing-ca') as string
  const key = readKeyFile(issuingKey, MAX_KEY_FILE_BYTES, '--issuing-key: ')
  parsePrivateKey(key, `--issuing-key ${issuingKey}`)
  let issuer: CertificateIssuer
  try {
    issuer = issueCertificates({ ca: { cert, key }, validitySeconds })
  } catch (error) {
    // The library names `ca.cert` and `ca.key`; here they are the files.
    const message = (error as Error).message
      .replaceAll('`ca.cert`', `--issuing-ca ${issuingCa}`)
      .replaceAll('`ca.key`', `--issuing-key ${issuingKey}`)
    throw new UsageError(message.replace(/^Expected /, 'expected '))
  }
  const summary = `by the CA in ${issuingCa}, valid ${describe(validitySeconds)} (never past the CA's own)`
  return { issuer, summary, ca: cert }
}

function validity(value: string): number {
  const seconds = /^\d{1,16}$/.test(value) ? Number(value) : Number.NaN
  if (!(Number.isSafeInteger(seconds) && seconds > 0)) {
    throw new UsageError(`--certificate-validity must be a whole number of seconds above 0, got ${value}`)
  }
  return seconds
}

function describe(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} day${seconds === 86_400 ? '' : 's'}`
  return `${seconds} s`
}
