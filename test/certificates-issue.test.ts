/**
 * issueCertificates (issue 17), issuer level: CSRs made by the openssl command line (an implementation that is not
 * ours) and by node:crypto with asn1-csr, certificates judged by openssl (`verify`, `x509 -text`) and by node's
 * X509Certificate. Only the clock is fake.
 */
import { execFileSync } from 'node:child_process'
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  type CertificateIssuer,
  CertificateIssuingError,
  type CertificateRequest,
  issueCertificates,
} from '../packages/mqtt-bootstrap-server/src/index.js'
import { suite } from './helpers/exposure.js'

const DEVICE = { productKey: 'a1TestPK001', deviceName: 'device-001' }
const DAY = 86_400

let dir: string
let files = 0
const path = (name: string) => join(dir, `${++files}-${name}`)

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 }).toString()
}

/** A key made by openssl: `ec:P-256`, `rsa:2048`, `ed25519`… */
function opensslKey(spec: string): string {
  const out = path('key.pem')
  const [type, size] = spec.split(':') as [string, string | undefined]
  if (type === 'ec') openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${size}`, '-out', out])
  else if (type === 'rsa') openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${size}`, '-out', out])
  else openssl(['genpkey', '-algorithm', type, '-out', out])
  return out
}

/** A CSR made by `openssl req`, its subject and extensions as asked (`-addext`). */
function opensslCsr(keyPath: string, subject = '/CN=evil', addext: string[] = []): string {
  const out = path('request.csr')
  openssl(['req', '-new', '-key', keyPath, '-subj', subject, ...addext.flatMap((e) => ['-addext', e]), '-out', out])
  return readFileSync(out, 'utf8')
}

interface Ca {
  cert: string
  key: string
  certPath: string
  keyPath: string
}

/** A CA made by openssl: self-signed, or issued by `parent`; `extensions` as openssl's v3 config lines. */
function opensslCa(keySpec: string, cn: string, parent?: Ca, extensions?: string, days = 2): Ca {
  const keyPath = opensslKey(keySpec)
  const certPath = path('ca.pem')
  const ext = path('ca.ext')
  writeFileSync(
    ext,
    extensions ??
      'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n',
  )
  if (parent === undefined) {
    const config = path('ca.cnf')
    writeFileSync(config, `[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\n${readFileSync(ext, 'utf8')}`)
    openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      keyPath,
      '-subj',
      `/CN=${cn}`,
      '-days',
      String(days),
      '-config',
      config,
      '-out',
      certPath,
    ])
  } else {
    const csr = path('ca.csr')
    writeFileSync(csr, opensslCsr(keyPath, `/CN=${cn}`))
    openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      parent.certPath,
      '-CAkey',
      parent.keyPath,
      '-set_serial',
      String(1000 + files),
      '-days',
      String(days),
      '-extfile',
      ext,
      '-out',
      certPath,
    ])
  }
  const ca = { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8'), certPath, keyPath }
  suite.secret(ca.key)
  return ca
}

/** Write `pem` and ask openssl: verified against `ca` (and `untrusted` intermediates)? */
function opensslVerify(caPath: string, pem: string, untrusted?: string): string {
  const leaf = path('leaf.pem')
  writeFileSync(leaf, pem)
  const args = ['verify', '-CAfile', caPath, ...(untrusted === undefined ? [] : ['-untrusted', untrusted])]
  return openssl([...args, '-purpose', 'sslclient', leaf])
}

const opensslText = (pem: string) => {
  const leaf = path('leaf.pem')
  writeFileSync(leaf, pem)
  return openssl(['x509', '-in', leaf, '-noout', '-text', '-nameopt', 'utf8'])
}

/** The CERTIFICATE blocks of a chain, parsed. */
const blocks = (pem: string) =>
  (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b))

const spki = (key: KeyObject) => key.export({ type: 'spki', format: 'der' })

async function issued(issuer: CertificateIssuer, csr: unknown, device = DEVICE): Promise<string> {
  const checked = await issuer.check(csr)
  if (!checked.ok) throw new Error(`refused: ${checked.problem}`)
  return issuer.issue(checked.request, device)
}

async function problemOf(issuer: CertificateIssuer, csr: unknown): Promise<string> {
  const checked = await issuer.check(csr)
  expect(checked.ok).toBe(false)
  return checked.ok ? '' : checked.problem
}

// CSRs made with node:crypto and asn1-csr: for what openssl will not make (a signature that does not verify, an
// algorithm that does not match the key), built the way a device would.
const load = createRequire(import.meta.url)
const csrPath = load.resolve('@peculiar/asn1-csr')
const asnCsr = load(csrPath) as typeof import('@peculiar/asn1-csr')
const fromCsr = createRequire(csrPath)
const { AsnConvert } = fromCsr('@peculiar/asn1-schema') as typeof import('@peculiar/asn1-schema')
const asnX509 = fromCsr('@peculiar/asn1-x509') as typeof import('@peculiar/asn1-x509')

const toPem = (der: Uint8Array | ArrayBuffer) =>
  `-----BEGIN CERTIFICATE REQUEST-----\n${Buffer.from(der as ArrayBuffer)
    .toString('base64')
    .replace(/.{64}/g, '$&\n')
    .replace(/\n?$/, '\n')}-----END CERTIFICATE REQUEST-----\n`

function nodeCsr(
  privateKey: KeyObject,
  options: { algorithm?: string; hash?: string; tamper?: (signature: Buffer) => Buffer; version?: number } = {},
): string {
  const publicKey = createPublicKey(privateKey)
  const info = new asnCsr.CertificationRequestInfo({
    version: options.version ?? 0,
    subject: new asnX509.Name([]),
    subjectPKInfo: AsnConvert.parse(spki(publicKey), asnX509.SubjectPublicKeyInfo),
    attributes: new asnCsr.Attributes([]),
  })
  const signed = Buffer.from(AsnConvert.serialize(info))
  const type = privateKey.asymmetricKeyType
  const hash = type === 'ed25519' ? null : (options.hash ?? 'sha256')
  let signature: Buffer = sign(hash, signed, type === 'ec' ? { key: privateKey, dsaEncoding: 'der' } : privateKey)
  if (options.tamper) signature = options.tamper(signature)
  const algorithm = new asnX509.AlgorithmIdentifier({
    algorithm:
      options.algorithm ??
      (type === 'ec' ? '1.2.840.10045.4.3.2' : type === 'ed25519' ? '1.3.101.112' : '1.2.840.113549.1.1.11'),
  })
  if (type === 'rsa' && options.algorithm === undefined) algorithm.parameters = Uint8Array.of(5, 0).buffer
  const request = new asnCsr.CertificationRequest({ certificationRequestInfo: info, signatureAlgorithm: algorithm })
  request.signature = Uint8Array.from(signature).buffer
  return toPem(AsnConvert.serialize(request))
}

let ca: Ca
let issuer: CertificateIssuer
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-issue-'))
  ca = opensslCa('ec:P-256', 'mqtt-bootstrap issuing CA')
  issuer = issueCertificates({ ca: { cert: ca.cert, key: ca.key }, validitySeconds: DAY })
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('a P-256 CSR from openssl', () => {
  test('is answered a client certificate for its key, CN the deviceName, that openssl verifies against the CA', async () => {
    const keyPath = opensslKey('ec:P-256')
    const chain = await issued(issuer, opensslCsr(keyPath))
    const [leaf, issuing, ...rest] = blocks(chain)
    expect(rest).toEqual([])
    expect(issuing?.raw.equals(new X509Certificate(ca.cert).raw)).toBe(true)
    expect(opensslVerify(ca.certPath, chain)).toMatch(/: OK/)
    expect(spki(leaf?.publicKey as KeyObject).equals(spki(createPublicKey(readFileSync(keyPath))))).toBe(true)
    const text = opensslText(chain)
    expect(text).toMatch(/Subject: CN\s?=\s?device-001\n/)
    expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE/)
    expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature\n/)
    expect(text).toMatch(/X509v3 Extended Key Usage: \n\s+TLS Web Client Authentication\n/)
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/)
    expect(text).toMatch(/Version: 3 \(0x2\)/)
    // The issuer is the CA's subject, and the key identifiers link them.
    expect(leaf?.issuer).toBe(issuing?.subject)
    const caSki = /Subject Key Identifier: \n\s+(\S+)/.exec(opensslText(ca.cert))?.[1]
    expect(caSki).toBeDefined()
    expect(text).toContain(`X509v3 Authority Key Identifier: \n                ${caSki}`)
    expect(text).toMatch(/X509v3 Subject Key Identifier: \n\s+[0-9A-F:]{59}\n/)
  })

  test('that asks for CA:TRUE, another subject and names gets none of it: CA:FALSE, CN from the registry', async () => {
    const keyPath = opensslKey('ec:P-256')
    const csr = opensslCsr(keyPath, '/CN=root/O=Attacker', [
      'basicConstraints=critical,CA:TRUE',
      'keyUsage=critical,keyCertSign',
      'subjectAltName=DNS:bank.example',
    ])
    // The request did ask: openssl reads the extension request.
    const csrFile = path('ask.csr')
    writeFileSync(csrFile, csr)
    expect(openssl(['req', '-in', csrFile, '-noout', '-text'])).toMatch(/CA:TRUE/)
    const chain = await issued(issuer, csr)
    const text = opensslText(chain)
    expect(text).toMatch(/CA:FALSE/)
    expect(text).not.toMatch(/CA:TRUE|Certificate Sign|bank\.example|Attacker|CN\s?=\s?root/)
    expect(text).toMatch(/Subject: CN\s?=\s?device-001\n/)
    expect(blocks(chain)[0]?.ca).toBe(false)
    expect(opensslVerify(ca.certPath, chain)).toMatch(/: OK/)
    // Nor can the device act as a CA with it: what its key signs does not verify under the issuing CA.
    const leafPath = path('device.pem')
    writeFileSync(leafPath, blocks(chain)[0]?.toString() ?? '')
    const grandchild = path('grandchild.csr')
    writeFileSync(grandchild, opensslCsr(opensslKey('ec:P-256'), '/CN=forged'))
    const forged = path('forged.pem')
    openssl([
      'x509',
      '-req',
      '-in',
      grandchild,
      '-CA',
      leafPath,
      '-CAkey',
      keyPath,
      '-set_serial',
      '7',
      '-days',
      '1',
      '-out',
      forged,
    ])
    expect(() => openssl(['verify', '-CAfile', ca.certPath, '-untrusted', leafPath, forged])).toThrow(
      /invalid CA certificate|not a CA/i,
    )
  })

  test('the subject is the deviceName as given, in UTF-8', async () => {
    const chain = await issued(issuer, opensslCsr(opensslKey('ec:P-256')), {
      productKey: 'pk',
      deviceName: 'Zähler 7, Halle/B',
    })
    expect(opensslText(chain)).toContain('Subject: CN=Zähler 7, Halle/B\n')
    expect(blocks(chain)[0]?.subject).toBe('CN=Zähler 7\\, Halle/B')
  })

  test('every certificate has a serial of its own: 16 bytes, positive', async () => {
    const csr = opensslCsr(opensslKey('ec:P-256'))
    const serials = new Set<string>()
    for (let i = 0; i < 5; i++) serials.add(blocks(await issued(issuer, csr))[0]?.serialNumber ?? '')
    expect(serials.size).toBe(5)
    for (const serial of serials) expect(serial).toMatch(/^[4-7][0-9A-F]{31}$/)
  })
})

describe('RSA', () => {
  test('a 2048-bit CSR gets digitalSignature and keyEncipherment', async () => {
    const chain = await issued(issuer, opensslCsr(opensslKey('rsa:2048')))
    expect(opensslVerify(ca.certPath, chain)).toMatch(/: OK/)
    expect(opensslText(chain)).toMatch(/Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/)
  })

  test('an RSA CA signs with sha256WithRSAEncryption, and openssl verifies it', async () => {
    const rsaCa = opensslCa('rsa:2048', 'RSA issuing CA')
    const rsaIssuer = issueCertificates({ ca: { cert: rsaCa.cert, key: rsaCa.key }, validitySeconds: DAY })
    const chain = await issued(rsaIssuer, opensslCsr(opensslKey('ec:P-256')))
    expect(opensslText(chain)).toMatch(/Signature Algorithm: sha256WithRSAEncryption/)
    expect(opensslVerify(rsaCa.certPath, chain)).toMatch(/: OK/)
  })
})

describe('CSRs that are refused', () => {
  test.each([
    ['P-384', 'ec:P-384', /EC P-384 key/],
    ['RSA 1024', 'rsa:1024', /RSA 1024-bit key/],
    ['Ed25519', 'ed25519', /ed25519 key/],
  ])('a %s key (openssl)', async (_name, spec, problem) => {
    expect(await problemOf(issuer, opensslCsr(opensslKey(spec)))).toMatch(problem)
  })

  test('an RSA key with public exponent 1: its "signature" is the padded hash itself, made with no private key', async () => {
    // The forgery: with e = 1, s^e mod n = s, so the PKCS#1 v1.5 encoding of the hash (RFC 8017 9.2) verifies as its
    // own signature. Anyone could claim a certificate for a modulus whose key they do not hold.
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const { n } = publicKey.export({ format: 'jwk' }) as { n: string }
    const forged = createPublicKey({ key: { kty: 'RSA', n, e: 'AQ' }, format: 'jwk' })
    const info = new asnCsr.CertificationRequestInfo({
      version: 0,
      subject: new asnX509.Name([]),
      subjectPKInfo: AsnConvert.parse(spki(forged), asnX509.SubjectPublicKeyInfo),
      attributes: new asnCsr.Attributes([]),
    })
    const signed = Buffer.from(AsnConvert.serialize(info))
    const digestInfo = Buffer.concat([
      Buffer.from('3031300d060960864801650304020105000420', 'hex'), // DigestInfo of SHA-256 (RFC 8017 9.2 note 1)
      createHash('sha256').update(signed).digest(),
    ])
    const encoded = Buffer.concat([
      Buffer.from([0, 1]),
      Buffer.alloc(256 - 3 - digestInfo.length, 0xff),
      Buffer.from([0]),
      digestInfo,
    ])
    // What the server's check would have accepted: node:crypto verifies the forgery.
    expect(verify('sha256', signed, forged, encoded)).toBe(true)
    const algorithm = new asnX509.AlgorithmIdentifier({ algorithm: '1.2.840.113549.1.1.11' })
    algorithm.parameters = Uint8Array.of(5, 0).buffer
    const request = new asnCsr.CertificationRequest({ certificationRequestInfo: info, signatureAlgorithm: algorithm })
    request.signature = Uint8Array.from(encoded).buffer
    expect(await problemOf(issuer, toPem(AsnConvert.serialize(request)))).toMatch(/public exponent 1/)
  })

  test('a signature that does not verify (node-made, one bit flipped), while the same CSR unbroken passes', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    expect((await issuer.check(nodeCsr(privateKey))).ok).toBe(true)
    const flip = (signature: Buffer) => {
      const copy = Buffer.from(signature)
      copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 1
      return copy
    }
    expect(await problemOf(issuer, nodeCsr(privateKey, { tamper: flip }))).toMatch(/signature that does not verify/)
  })

  test("another key's signature over the request (proof of possession fails)", async () => {
    const csr = opensslCsr(opensslKey('ec:P-256'))
    const other = opensslCsr(opensslKey('ec:P-256'))
    const der = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64')
    const mine = AsnConvert.parse(der(csr), asnCsr.CertificationRequest)
    mine.signature = AsnConvert.parse(der(other), asnCsr.CertificationRequest).signature
    expect(await problemOf(issuer, toPem(AsnConvert.serialize(mine)))).toMatch(/does not verify/)
  })

  test("an algorithm that is not the key's (RSA key, ecdsa OID), SHA-1, Ed25519 by node, a version 2", async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
    expect((await issuer.check(nodeCsr(rsa))).ok).toBe(true)
    expect(await problemOf(issuer, nodeCsr(rsa, { algorithm: '1.2.840.10045.4.3.2' }))).toMatch(/another algorithm/)
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
    const sha1 = nodeCsr(ec, { algorithm: '1.2.840.10045.4.1', hash: 'sha1' })
    expect(await problemOf(issuer, sha1)).toMatch(/another algorithm than ecdsa-with-SHA256/)
    expect(await problemOf(issuer, nodeCsr(generateKeyPairSync('ed25519').privateKey))).toMatch(/ed25519/)
    expect(await problemOf(issuer, nodeCsr(ec, { version: 1 }))).toMatch(/version 1/)
  })

  test('what is not a CSR: not a string, not PEM, another PEM, garbage, too long, bytes after it', async () => {
    const csr = opensslCsr(opensslKey('ec:P-256'))
    for (const value of [undefined, null, 42, {}, ['csr']])
      expect(await problemOf(issuer, value)).toMatch(/not a string/)
    for (const value of [
      '',
      'garbage',
      ca.cert,
      csr.replace(/CERTIFICATE REQUEST/g, 'CERTIFICATE'),
      csr.slice(0, -30),
    ]) {
      expect(await problemOf(issuer, value)).toMatch(/not one PEM block/)
    }
    expect(await problemOf(issuer, toPem(Buffer.from('not DER at all')))).toMatch(/does not parse/)
    const der = Buffer.from(csr.replace(/-----[^-]+-----|\s/g, ''), 'base64')
    expect(await problemOf(issuer, toPem(Buffer.concat([der, Buffer.of(0, 0)])))).toMatch(/does not parse as DER/)
    expect(await problemOf(issuer, `${csr}${' '.repeat(8192)}`)).toMatch(/over 8192 bytes/)
    // White space around the block, CRLF line ends: still the same request.
    expect((await issuer.check(`\n\n${csr.replace(/\n/g, '\r\n')}\n`)).ok).toBe(true)
  })

  test('a problem never quotes the CSR', async () => {
    const csr = opensslCsr(opensslKey('ec:P-384'))
    const body = csr.split('\n')[1] as string
    expect(await problemOf(issuer, csr)).not.toContain(body.slice(0, 16))
  })
})

describe('validity', () => {
  test('from 5 minutes before the issue (clock skew) to validitySeconds after it, by the injected clock', async () => {
    let now = Date.now() + 3_600_000
    const clocked = issueCertificates({ ca, validitySeconds: 7200, clock: { now: () => now } })
    const leaf = blocks(await issued(clocked, opensslCsr(opensslKey('ec:P-256'))))[0] as X509Certificate
    const second = (ms: number) => Math.floor(ms / 1000) * 1000
    expect(Date.parse(leaf.validFrom)).toBe(second(now - 300_000))
    expect(Date.parse(leaf.validTo)).toBe(second(now + 7_200_000))
    now += 1000
    const next = blocks(await issued(clocked, opensslCsr(opensslKey('ec:P-256'))))[0] as X509Certificate
    expect(Date.parse(next.validTo)).toBe(second(now + 7_200_000))
  })

  test("never past the CA's notAfter", async () => {
    const long = issueCertificates({ ca, validitySeconds: 365 * DAY })
    const leaf = blocks(await issued(long, opensslCsr(opensslKey('ec:P-256'))))[0] as X509Certificate
    const issuing = new X509Certificate(ca.cert)
    expect(leaf.validTo).toBe(issuing.validTo)
    expect(opensslVerify(ca.certPath, leaf.toString())).toMatch(/: OK/)
  })

  test('a CA that has expired since the issuer was made: the issue fails (the server\'s "77777"), the check not', async () => {
    let now = Date.now()
    const clocked = issueCertificates({ ca, validitySeconds: DAY, clock: { now: () => now } })
    const checked = await clocked.check(opensslCsr(opensslKey('ec:P-256')))
    now += 3 * DAY * 1000
    if (!checked.ok) throw new Error(checked.problem)
    let error: unknown
    try {
      await clocked.issue(checked.request as CertificateRequest, DEVICE)
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(CertificateIssuingError)
    expect((error as CertificateIssuingError).code).toBe('CERTIFICATE_ISSUING_FAILED')
    expect((error as Error).message).toMatch(/issuing CA expired on/)
  })
})

describe('a chain: the issuing CA is an intermediate', () => {
  test('the answer is leaf, intermediate, root; openssl verifies it from the root', async () => {
    const root = opensslCa('ec:P-256', 'fleet root')
    const intermediate = opensslCa('ec:P-384', 'fleet issuing', root)
    const chained = issueCertificates({
      ca: { cert: `${intermediate.cert}\n${root.cert}`, key: intermediate.key },
      validitySeconds: DAY,
    })
    const chain = await issued(chained, opensslCsr(opensslKey('ec:P-256')))
    const [leaf, second, third, ...rest] = blocks(chain)
    expect(rest).toEqual([])
    expect(second?.subject).toBe('CN=fleet issuing')
    expect(third?.subject).toBe('CN=fleet root')
    expect(leaf?.checkIssued(second as X509Certificate)).toBe(true)
    expect(opensslVerify(root.certPath, chain, intermediate.certPath)).toMatch(/: OK/)
    // Without the intermediate openssl cannot build the path: the leaf is the intermediate's, not the root's.
    expect(() => opensslVerify(root.certPath, leaf?.toString() ?? '')).toThrow()
  })

  test('a chain out of order is a TypeError', () => {
    const root = opensslCa('ec:P-256', 'order root')
    const intermediate = opensslCa('ec:P-256', 'order issuing', root)
    const other = opensslCa('ec:P-256', 'unrelated root')
    expect(() =>
      issueCertificates({ ca: { cert: intermediate.cert + other.cert, key: intermediate.key }, validitySeconds: DAY }),
    ).toThrow(/certificate 1 is not issued by certificate 2/)
  })
})

describe('issueCertificates refuses at construction', () => {
  test('a certificate that is not a CA', () => {
    const leafCa = opensslCa('ec:P-256', 'not a CA', undefined, 'basicConstraints=critical,CA:FALSE\n')
    expect(() => issueCertificates({ ca: leafCa, validitySeconds: DAY })).toThrow(
      new TypeError('Expected `ca.cert` to be a CA certificate (CA:TRUE, and keyCertSign in any keyUsage)'),
    )
  })

  test('a CA whose keyUsage does not allow certificate signing', () => {
    const noSign = opensslCa(
      'ec:P-256',
      'no keyCertSign',
      undefined,
      'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n',
    )
    expect(() => issueCertificates({ ca: noSign, validitySeconds: DAY })).toThrow(
      /CA certificate \(CA:TRUE, and keyCertSign in any keyUsage\)/,
    )
  })

  test("a key that is not the CA's, or no key at all, without quoting it", () => {
    const other = opensslCa('ec:P-256', 'other')
    let error: unknown
    try {
      issueCertificates({ ca: { cert: ca.cert, key: other.key }, validitySeconds: DAY })
    } catch (caught) {
      error = caught
    }
    expect(error).toEqual(new TypeError('Expected `ca.key` to be the private key of `ca.cert`'))
    const broken =
      '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n'
    expect(() => issueCertificates({ ca: { cert: ca.cert, key: broken }, validitySeconds: DAY })).toThrow(
      /Expected `ca.key` to be a private key that parses/,
    )
    for (const key of [undefined, 42, createPublicKey(ca.key)]) {
      expect(() => issueCertificates({ ca: { cert: ca.cert, key } as never, validitySeconds: DAY })).toThrow(TypeError)
    }
    // A KeyObject is taken as well as PEM.
    expect(() =>
      issueCertificates({ ca: { cert: ca.cert, key: createPrivateKey(ca.key) }, validitySeconds: DAY }),
    ).not.toThrow()
  })

  test('an Ed25519 CA (no signature algorithm for it here)', () => {
    const edCa = opensslCa('ed25519', 'ed CA')
    expect(() => issueCertificates({ ca: edCa, validitySeconds: DAY })).toThrow(/an EC or RSA key, not ed25519/)
  })

  test('a CA that has expired by the clock', () => {
    const later = { now: () => Date.now() + 3 * DAY * 1000 }
    expect(() => issueCertificates({ ca, validitySeconds: DAY, clock: later })).toThrow(/valid now: it expired on/)
  })

  test('not a certificate, or none', () => {
    for (const cert of ['', 'text', ca.key, undefined]) {
      expect(() => issueCertificates({ ca: { cert, key: ca.key } as never, validitySeconds: DAY })).toThrow(TypeError)
    }
    expect(() => issueCertificates({ validitySeconds: DAY } as never)).toThrow(
      'Expected `ca` to be an object { cert, key }',
    )
  })

  test.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '3600', undefined])(
    'validitySeconds %s',
    (validitySeconds) => {
      expect(() => issueCertificates({ ca, validitySeconds } as never)).toThrow(
        new TypeError('Expected `validitySeconds` to be a positive whole number of seconds'),
      )
    },
  )

  test('a clock without now()', () => {
    expect(() => issueCertificates({ ca, validitySeconds: DAY, clock: {} as never })).toThrow(/now\(\) method/)
  })
})
