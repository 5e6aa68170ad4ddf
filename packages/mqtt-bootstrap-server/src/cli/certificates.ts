/** A throwaway CA and a server certificate signed by it (EC keys), for `serve` without --cert and for the demo. */
import { isIP } from 'node:net'

export interface GeneratedCertificates {
  /** PEM of the CA: what clients trust (--ca). */
  ca: string
  cert: string
  key: string
}

export async function generateCertificates(hosts: string[]): Promise<GeneratedCertificates> {
  const { generate } = await import('selfsigned')
  const ec = { keyType: 'ec', algorithm: 'sha256' } as const
  const root = await generate([{ name: 'commonName', value: 'mqtt-bootstrap CA' }], {
    ...ec,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  })
  const altNames = hosts.map((host) =>
    isIP(host) ? { type: 7 as const, ip: host } : { type: 2 as const, value: host },
  )
  const leaf = await generate([{ name: 'commonName', value: hosts[0] ?? 'localhost' }], {
    ...ec,
    ca: { key: root.private, cert: root.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  })
  return { ca: root.cert, cert: leaf.cert, key: leaf.private }
}
