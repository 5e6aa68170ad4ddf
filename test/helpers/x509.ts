/** Factory CAs and device certificates for X.509 claims (issue 15), made with selfsigned (EC keys: milliseconds). */
import { generate } from 'selfsigned'

export interface Authority {
  cert: string
  key: string
}

type AltName = { type: 1 | 2 | 6; value: string }

const ec = { keyType: 'ec', algorithm: 'sha256' } as const

/** A CA named `cn`: self-signed, or issued by `parent` (an intermediate). */
export async function authority(cn: string, parent?: Authority): Promise<Authority> {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    ...ec,
    ...(parent === undefined ? {} : { ca: parent }),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  })
  return { cert: pems.cert, key: pems.private }
}

/**
 * A device certificate with CN `cn` issued by `ca` (self-signed without one): for client authentication (or `usage: 'server'` only), valid
 * from `from` to `to` (epoch ms; default a day ago to a year on), with `altNames` if given.
 */
export async function deviceCertificate(
  ca: Authority | undefined,
  cn: string,
  options: { from?: number; to?: number; usage?: 'client' | 'server'; altNames?: AltName[] } = {},
): Promise<Authority> {
  const { from = Date.now() - 86_400_000, to = Date.now() + 365 * 86_400_000, usage = 'client', altNames } = options
  const pems = await generate([{ name: 'commonName', value: cn }], {
    ...ec,
    ...(ca === undefined ? {} : { ca }),
    notBeforeDate: new Date(from),
    notAfterDate: new Date(to),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      usage === 'client' ? { name: 'extKeyUsage', clientAuth: true } : { name: 'extKeyUsage', serverAuth: true },
      ...(altNames === undefined ? [] : [{ name: 'subjectAltName' as const, altNames }]),
    ],
  })
  return { cert: pems.cert, key: pems.private }
}
