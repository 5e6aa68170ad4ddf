/**
 * PEM files named on the command line, checked before any request or listen: a wrong file (a key given as --ca, a
 * DER file, an empty one) is a usage error naming the option and the file, not a TLS failure later that reads like
 * the server's fault. Messages never quote a file's content: a key file is a secret.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto'
import { readFileOption, UsageError } from './io.js'

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g
const PEM_LABEL = /-----BEGIN ([A-Z0-9 ]+)-----/

/** Why `pem` is no PEM certificate bundle, or `undefined`. */
function certificateProblem(pem: string): string | undefined {
  const blocks = pem.match(CERTIFICATE_BLOCK) ?? []
  if (blocks.length === 0) {
    const label = PEM_LABEL.exec(pem)?.[1]
    if (label?.includes('PRIVATE KEY')) return 'is a private key, not a certificate'
    if (label !== undefined) return `holds a ${label}, not a CERTIFICATE`
    return 'is not PEM (no -----BEGIN CERTIFICATE----- block; a DER file converts with `openssl x509 -inform der`)'
  }
  for (const [index, block] of blocks.entries()) {
    try {
      new X509Certificate(block)
    } catch {
      return `has a certificate block that does not parse (certificate ${index + 1} of ${blocks.length})`
    }
  }
  return undefined
}

/** The file's PEM certificate(s), or a UsageError. */
export function readCertificateOption(path: string | undefined, option: string): string | undefined {
  const pem = readFileOption(path, option)
  if (pem === undefined) return undefined
  const problem = certificateProblem(pem)
  if (problem !== undefined) throw new UsageError(`${option}: ${path} ${problem}`)
  return pem
}

/** The file's PEM private key, or a UsageError. */
export function readPrivateKeyOption(path: string | undefined, option: string): string | undefined {
  const pem = readFileOption(path, option)
  if (pem === undefined) return undefined
  parsePrivateKey(pem, `${option}: ${path}`)
  return pem
}

export function parsePrivateKey(pem: string, what: string): KeyObject {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new UsageError(`${what} is not a PEM private key (no -----BEGIN … PRIVATE KEY----- block)`)
  }
  try {
    return createPrivateKey(pem)
  } catch {
    // Not the error's message: OpenSSL's says little, and nothing here may quote the key.
    throw new UsageError(`${what} holds a private key that does not parse (an encrypted key is not supported)`)
  }
}

/** --cert and --key as a pair: both PEM, and the key is the certificate's. */
export function readKeyPair(flags: {
  cert?: string | undefined
  key?: string | undefined
}): { cert: string; key: string } | undefined {
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError('--cert and --key go together')
  const cert = readCertificateOption(flags.cert, '--cert')
  const key = readPrivateKeyOption(flags.key, '--key')
  if (cert === undefined || key === undefined) return undefined
  const [first] = cert.match(CERTIFICATE_BLOCK) ?? []
  if (!new X509Certificate(first ?? cert).checkPrivateKey(createPrivateKey(key))) {
    throw new UsageError(`--key ${flags.key} is not the private key of --cert ${flags.cert}`)
  }
  return { cert, key }
}

/** TLS options from --ca / --cert / --key files, each checked. */
export function tlsFromFiles(options: { ca?: string; cert?: string; key?: string }) {
  const pair = readKeyPair(options)
  const ca = readCertificateOption(options.ca, '--ca')
  return { ...(ca ? { ca } : {}), ...pair }
}
