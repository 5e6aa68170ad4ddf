/**
 * A certificate authority run by the openssl command line: an implementation of certificate issuing that is not the
 * project's own (issue 17), so that what the device makes (its CSR) and accepts (the chain) is judged by another.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface OpensslCa {
  readonly cert: string
  readonly key: string
  /** A certificate for the CSR's key with subject CN=`cn`, a client certificate valid for `days`. */
  issue(csr: string, cn: string, days?: number): string
  /** Remove its directory. */
  close(): void
}

const openssl = (args: string[], input?: string) =>
  execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 10_000 }).toString()

/** A new P-256 root CA named `cn`, in a temp directory. */
export function opensslCa(cn: string): OpensslCa {
  const dir = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-openssl-ca-'))
  const keyPath = join(dir, 'ca.key')
  const certPath = join(dir, 'ca.pem')
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', keyPath])
  openssl(['req', '-x509', '-new', '-key', keyPath, '-subj', `/CN=${cn}`, '-days', '2', '-out', certPath])
  const extensions = join(dir, 'client.ext')
  writeFileSync(
    extensions,
    'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
  )
  let serial = 0
  return {
    cert: readFileSync(certPath, 'utf8'),
    key: readFileSync(keyPath, 'utf8'),
    issue(csr, subject, days = 1) {
      const csrPath = join(dir, `request-${++serial}.csr`)
      writeFileSync(csrPath, csr)
      return openssl([
        'x509',
        '-req',
        '-in',
        csrPath,
        '-CA',
        certPath,
        '-CAkey',
        keyPath,
        '-set_serial',
        String(1000 + serial),
        '-subj',
        `/CN=${subject}`,
        '-days',
        String(days),
        '-extfile',
        extensions,
      ])
    },
    close: () => rmSync(dir, { recursive: true, force: true }),
  }
}

/** A CSR for a P-256 key made (and thrown away) by openssl: a request for some other key than the device's. */
export function foreignCsr(): string {
  return openssl([
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    '/dev/null',
    '-subj',
    '/CN=someone-else',
  ])
}
