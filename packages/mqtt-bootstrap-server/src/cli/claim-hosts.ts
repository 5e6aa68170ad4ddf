/**
 * The names serve's certificate carries, and the hosts a signed claim may therefore name (`signedClaims({ hosts })`):
 * moved out of serve.ts as they were.
 */
import { X509Certificate } from 'node:crypto'
import { hostname, networkInterfaces } from 'node:os'
import { hostMatcher } from '../claims/message.js'

/** The names a generated certificate must carry: the host, or for a wildcard address every local one. */
export function certificateNames(host: string, extra: string[]): string[] {
  const wildcard = host === '0.0.0.0' || host === '::' || host === ''
  const local = wildcard
    ? [
        hostname(),
        ...Object.values(networkInterfaces())
          .flat()
          .map((address) => address?.address)
          .filter((address): address is string => address !== undefined && !address.startsWith('fe80')),
      ]
    : [host]
  return [...new Set([...local, 'localhost', '127.0.0.1', '::1', ...extra])]
}

/** A certificate's DNS names and IP addresses (its subjectAltName), else its subject's common name. */
export function subjectAltNames(cert: string): string[] {
  const { subjectAltName = '', subject } = new X509Certificate(cert)
  const names = subjectAltName
    .split(', ')
    .map((name) => /^(?:DNS|IP Address):(.+)$/.exec(name)?.[1])
    .filter((name): name is string => name !== undefined)
  const commonName = /^CN=(.+)$/m.exec(subject)?.[1]
  return names.length > 0 || commonName === undefined ? names : [commonName]
}

/** The certificate's names as `hosts` entries (an IPv6 address in brackets); those no Host header can carry left out. */
export function claimHosts(names: readonly string[]): string[] {
  return names
    .map((name) => (name.includes(':') && !name.startsWith('[') ? `[${name}]` : name))
    .filter((name) => {
      try {
        hostMatcher([name])
        return true
      } catch {
        return false
      }
    })
}
