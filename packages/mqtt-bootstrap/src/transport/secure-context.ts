/**
 * TLS settings of the provisioning request and their secure contexts, apart from the transport that uses them: the
 * transport makes its dispatchers from one set of settings, and a renewal (issue 18) from another, the device's own
 * certificate in place of the configured client certificate.
 */
import type { SecureContext } from 'node:tls'
import { nodeCrypto } from '../lazy.js'

type PemInput = string | Buffer | Array<string | Buffer>

/** TLS settings for the provisioning server. Certificate verification is always on. */
export interface TlsOptions {
  /** Trusted CA certificate(s), PEM; replaces the system roots, as in Node's `tls.connect`. */
  ca?: PemInput
  /** Client certificate chain (PEM), for servers that require mutual TLS. */
  cert?: PemInput
  /** Client private key (PEM). Secret. */
  key?: PemInput
  /** Passphrase of an encrypted `key`. Secret. */
  passphrase?: string
  /** SNI / verification name, when it differs from the URL's host. */
  servername?: string
}

const secureContexts = new Map<string, SecureContext>()

/**
 * The secure context for these TLS options, shared by transports with the same ones (a gateway provisioning many
 * devices, a retry on a new connection): parsing PEMs and building the trust store costs more than the handshake's
 * own signature check. Keyed by a digest of the PEMs; a few at most are kept.
 */
export function sharedSecureContext(
  tls: TlsOptions,
  createSecureContext: typeof import('node:tls').createSecureContext,
): SecureContext | undefined {
  const { ca, cert, key, passphrase } = tls
  if (ca === undefined && cert === undefined && key === undefined) return undefined // the system roots: Node's default
  const digest = nodeCrypto().createHash('sha256')
  for (const part of [ca, cert, key, passphrase]) {
    for (const item of Array.isArray(part) ? part : [part])
      digest.update(item === undefined ? '\0' : item).update('\u0001')
  }
  const id = digest.digest('hex')
  let context = secureContexts.get(id)
  if (context === undefined) {
    context = createSecureContext({ ca, cert, key, passphrase })
    if (secureContexts.size >= 16) secureContexts.clear()
    secureContexts.set(id, context)
  }
  return context
}
