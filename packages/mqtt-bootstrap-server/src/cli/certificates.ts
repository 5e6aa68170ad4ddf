/** A CA and server certificates signed by it (EC keys), for `serve` without --cert and for the demo. */
import { X509Certificate } from 'node:crypto'
import { isIP } from 'node:net'

export interface GeneratedCertificates {
  /** PEM of the CA: what clients trust (--ca). */
  ca: string
  cert: string
  key: string
}

/** A CA certificate and its private key (PEM). The key is a secret: never printed or logged. */
export interface CertificateAuthority {
  cert: string
  key: string
}

const ec = { keyType: 'ec', algorithm: 'sha256' } as const
const DAY_MS = 86_400_000
/** `serve` keeps its CA across restarts (devices trust it): long-lived, unlike the server certificates it signs. */
const CA_DAYS = 3650
const SERVER_DAYS = 365

export async function generateCa(): Promise<CertificateAuthority> {
  const { generate } = await import('selfsigned')
  const notBeforeDate = new Date()
  const root = await generate([{ name: 'commonName', value: 'mqtt-bootstrap CA' }], {
    ...ec,
    notBeforeDate,
    notAfterDate: new Date(notBeforeDate.getTime() + CA_DAYS * DAY_MS),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  })
  return { cert: root.cert, key: root.private }
}

/** A server certificate for `hosts` (names or addresses), signed by `ca`, and never valid longer than the CA. */
export async function issueServerCertificate(
  ca: CertificateAuthority,
  hosts: string[],
): Promise<{ cert: string; key: string }> {
  const { generate } = await import('selfsigned')
  const altNames = hosts.map((host) =>
    isIP(host) ? { type: 7 as const, ip: host } : { type: 2 as const, value: host },
  )
  const notBeforeDate = new Date()
  const caEnd = new Date(new X509Certificate(ca.cert).validTo).getTime()
  const leaf = await generate([{ name: 'commonName', value: hosts[0] ?? 'localhost' }], {
    ...ec,
    ca: { key: ca.key, cert: ca.cert },
    notBeforeDate,
    notAfterDate: new Date(Math.min(notBeforeDate.getTime() + SERVER_DAYS * DAY_MS, caEnd)),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  })
  return { cert: leaf.cert, key: leaf.private }
}

/** A throwaway CA and a server certificate signed by it (the demo). */
export async function generateCertificates(hosts: string[]): Promise<GeneratedCertificates> {
  const ca = await generateCa()
  const leaf = await issueServerCertificate(ca, hosts)
  return { ca: ca.cert, cert: leaf.cert, key: leaf.key }
}
