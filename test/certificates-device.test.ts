/**
 * The device side of certificates (issue 17), judged by another implementation, the openssl command line: the key
 * the device makes, the PKCS#10 request it sends (openssl verifies its signature and reads its key, and signs it as a
 * CA would: the request is usable end to end), and the check of the chain a server answers with, which never throws
 * on hostile input and never quotes it. The missing optional peer is a typed error naming the package.
 */
import { spawnSync } from 'node:child_process'
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { loadAsn1 } from '../packages/mqtt-bootstrap/src/certificates/asn1.js'
import {
  checkCertificateChain,
  MAX_CHAIN_BYTES,
  MAX_CHAIN_CERTIFICATES,
  publicKeyOf,
} from '../packages/mqtt-bootstrap/src/certificates/chain.js'
import {
  createCertificateRequest,
  createDeviceKey,
  type DeviceKey,
} from '../packages/mqtt-bootstrap/src/certificates/csr.js'
import { DependencyError } from '../packages/mqtt-bootstrap/src/errors.js'
import { suite } from './helpers/exposure.js'
import { type OpensslCa, opensslCa } from './helpers/openssl-ca.js'

const dir = mkdtempSync(join(tmpdir(), 'mqtt-bootstrap-certificates-device-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

/** Run openssl: its exit status, and its output with stderr after stdout (`req -verify` says OK or failure there). */
function openssl(args: string[]): { status: number | null; out: string; stdout: string } {
  const run = spawnSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000, encoding: 'utf8' })
  return { status: run.status, out: `${run.stdout}${run.stderr}`, stdout: run.stdout }
}
function file(text: string | Buffer): string {
  const path = join(dir, `file-${++files}`)
  writeFileSync(path, text)
  return path
}

/** The private key's secret parts, for test/setup.ts to look for in whatever the library showed. */
function secretsOf(key: DeviceKey): void {
  suite.secret(createPrivateKey(key.privateKeyPem).export({ format: 'jwk' }).d)
  suite.secret(key.privateKeyPem.replace(/-----[A-Z ]+-----|\n/g, ''))
}
/** Record an error for test/setup.ts to search for secrets, and return it. */
function thrown(run: () => unknown): unknown {
  try {
    run()
  } catch (error) {
    suite.objects.push(error)
    return error
  }
  throw new Error('expected a throw')
}

let key: DeviceKey
let other: DeviceKey
let csr: string
beforeAll(async () => {
  ;[key, other] = await Promise.all([createDeviceKey('p256'), createDeviceKey('p256')])
  secretsOf(key)
  secretsOf(other)
  csr = createCertificateRequest(key)
})

describe('createDeviceKey', () => {
  test('makes a P-256 key pair: PKCS#8 PEM and the SPKI DER of its public key, a new one each time', () => {
    const privateKey = createPrivateKey(key.privateKeyPem)
    expect(privateKey.asymmetricKeyType).toBe('ec')
    expect(privateKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    expect(key.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
    expect(Buffer.isBuffer(key.publicKeyDer)).toBe(true)
    expect(key.publicKeyDer.equals(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }))).toBe(true)
    expect(other.privateKeyPem).not.toBe(key.privateKeyPem)
    expect(other.publicKeyDer.equals(key.publicKeyDer)).toBe(false)
  })

  test('refuses another key type with a TypeError', async () => {
    for (const keyType of ['rsa', 'P-256', '', undefined]) {
      await expect(createDeviceKey(keyType as never)).rejects.toThrow(TypeError)
    }
  })
})

describe('createCertificateRequest', () => {
  test('openssl verifies its signature, and reads the device key from it', () => {
    expect(csr).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]+\n-----END CERTIFICATE REQUEST-----\n$/)
    const path = file(csr)
    const verified = openssl(['req', '-in', path, '-verify', '-noout'])
    // openssl 3.0 exits 0 even when the signature is bad: its words say which.
    expect(verified.status, verified.out).toBe(0)
    expect(verified.out).toMatch(/self-signature verify OK/)
    expect(verified.out).not.toMatch(/failure/)
    const pubkey = openssl(['req', '-in', path, '-pubkey', '-noout'])
    expect(pubkey.status).toBe(0)
    expect(pubkey.stdout).toBe(createPublicKey(key.privateKeyPem).export({ type: 'spki', format: 'pem' }))
  })

  test('a request whose signature is changed fails openssl verification (the check above can fail)', () => {
    const der = Buffer.from(csr.replace(/-----[A-Z ]+-----|\n/g, ''), 'base64')
    der[der.length - 5]! ^= 0x01 // inside the signature's s
    const path = file(
      `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`,
    )
    const verified = openssl(['req', '-in', path, '-verify', '-noout']).out
    expect(verified).toMatch(/self-signature verify failure/)
    expect(verified).not.toMatch(/verify OK/)
  })

  test('version 0, an empty subject, no attributes, ecdsa-with-SHA256; 64-character lines', () => {
    const text = openssl(['req', '-in', file(csr), '-noout', '-text']).out
    expect(text).toMatch(/Version: 1 \(0x0\)/)
    expect(text).toMatch(/Subject:\s*\n/)
    expect(text).toMatch(/Signature Algorithm: ecdsa-with-SHA256/)
    expect(text).toMatch(/ASN1 OID: prime256v1/)
    const { csr: asn1, schema } = loadAsn1()
    const parsed = schema.AsnConvert.parse(
      Buffer.from(csr.replace(/-----[A-Z ]+-----|\n/g, ''), 'base64'),
      asn1.CertificationRequest,
    )
    expect(parsed.certificationRequestInfo.version).toBe(0)
    expect(parsed.certificationRequestInfo.subject.length).toBe(0)
    expect(parsed.certificationRequestInfo.attributes.length).toBe(0)
    expect(parsed.signatureAlgorithm.algorithm).toBe('1.2.840.10045.4.3.2')
    expect(parsed.signatureAlgorithm.parameters).toBeUndefined()
    const body = csr.split('\n').slice(1, -2)
    expect(body.length).toBeGreaterThan(1)
    for (const line of body.slice(0, -1)) expect(line).toHaveLength(64)
    expect(body.at(-1)!.length).toBeLessThanOrEqual(64)
  })

  test('carries nothing of the private key', () => {
    const d = Buffer.from(createPrivateKey(key.privateKeyPem).export({ format: 'jwk' }).d!, 'base64url')
    const der = Buffer.from(csr.replace(/-----[A-Z ]+-----|\n/g, ''), 'base64')
    expect(der.includes(d)).toBe(false)
    expect(d).toHaveLength(32)
  })

  test('refuses a key that is not a matching P-256 pair, quoting nothing of it', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const rsaPem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    suite.secret(rsaPem.replace(/-----[A-Z ]+-----|\n/g, ''))
    const bad: DeviceKey[] = [
      { privateKeyPem: key.privateKeyPem, publicKeyDer: other.publicKeyDer },
      { privateKeyPem: rsaPem, publicKeyDer: rsa.publicKey.export({ type: 'spki', format: 'der' }) },
      { privateKeyPem: 'not a key', publicKeyDer: key.publicKeyDer },
      { privateKeyPem: key.privateKeyPem, publicKeyDer: 'x' as never },
    ]
    for (const input of bad) expect(thrown(() => createCertificateRequest(input))).toBeInstanceOf(TypeError)
  })
})

describe('loadAsn1', () => {
  test('a missing package is a DependencyError naming @peculiar/asn1-csr', () => {
    const error = thrown(() => loadAsn1('@peculiar/asn1-csr-not-installed')) as DependencyError
    expect(error).toBeInstanceOf(DependencyError)
    expect(error.code).toBe('ERR_DEPENDENCY_MISSING')
    expect(error.packageName).toBe('@peculiar/asn1-csr')
    expect(error.transient).toBe(false)
    expect(error.message).toContain('npm install @peculiar/asn1-csr')
    expect((error.cause as { code?: string }).code).toBe('MODULE_NOT_FOUND')
  })

  test('loads once, and the schema and x509 classes are the ones asn1-csr uses', () => {
    const require = createRequire(import.meta.url)
    const csrPath = require.resolve('@peculiar/asn1-csr')
    const beside = createRequire(csrPath)
    const modules = loadAsn1()
    expect(loadAsn1()).toBe(modules)
    expect(modules.csr).toBe(require(csrPath))
    expect(modules.schema).toBe(beside('@peculiar/asn1-schema'))
    expect(modules.x509).toBe(beside('@peculiar/asn1-x509'))
  })
})

describe('checkCertificateChain', () => {
  let ca: OpensslCa
  let otherCa: OpensslCa
  let leaf: string
  let chain: string
  let notBefore: number
  let notAfter: number
  beforeAll(() => {
    ca = opensslCa('Device Test CA')
    otherCa = opensslCa('Other Test CA')
    suite.secret(ca.key.replace(/-----[A-Z ]+-----|\n/g, ''))
    leaf = ca.issue(csr, 'device-1', 1) // openssl signs the module's own request: it is usable end to end
    chain = leaf + ca.cert
    // The validity as openssl reads it (not node:crypto's parser).
    const dates = openssl(['x509', '-in', file(leaf), '-noout', '-startdate', '-enddate']).out
    notBefore = Date.parse(/notBefore=(.+)/.exec(dates)![1]!)
    notAfter = Date.parse(/notAfter=(.+)/.exec(dates)![1]!)
  })
  afterAll(() => {
    ca?.close()
    otherCa?.close()
  })

  test("a certificate for the device's key, with its CA or alone, is ok with its validity", () => {
    expect(notAfter - notBefore).toBe(86_400_000)
    expect(Math.abs(notBefore - Date.now())).toBeLessThan(60_000)
    for (const pem of [chain, leaf]) {
      expect(checkCertificateChain(pem, key.publicKeyDer, Date.now())).toEqual({ ok: true, notBefore, notAfter })
    }
  })

  test("another key's certificate is a problem", () => {
    expect(checkCertificateChain(chain, other.publicKeyDer, Date.now())).toEqual({
      ok: false,
      problem: "the certificate is not for the device's key",
    })
  })

  test('valid from notBefore to notAfter, both included', () => {
    const at = (now: number) => checkCertificateChain(chain, key.publicKeyDer, now)
    expect(at(notBefore - 1)).toEqual({ ok: false, problem: 'the certificate is not valid yet' })
    expect(at(notBefore).ok).toBe(true)
    expect(at(notAfter).ok).toBe(true)
    expect(at(notAfter + 1)).toEqual({ ok: false, problem: 'the certificate has expired' })
  })

  test('a chain in the wrong order, or with a CA that did not issue it, or a leaf as issuer, is a problem', () => {
    const second = createCertificateRequest(other)
    const otherLeaf = ca.issue(second, 'device-2', 1)
    const problems = [ca.cert + leaf, leaf + otherCa.cert, leaf + otherLeaf, leaf + ca.cert + otherCa.cert]
    for (const pem of problems) {
      const result = checkCertificateChain(pem, key.publicKeyDer, Date.now())
      expect(result.ok, JSON.stringify(result)).toBe(false)
    }
  })

  test("an issuer with the CA's name but another key is a problem (the signature is verified)", () => {
    const impostor = opensslCa('Device Test CA')
    try {
      expect(checkCertificateChain(leaf + impostor.cert, key.publicKeyDer, Date.now())).toEqual({
        ok: false,
        problem: 'certificate 1 of the chain is not issued by certificate 2',
      })
    } finally {
      impostor.close()
    }
  })

  test("an issuer with the CA's key but another name is a problem (the names must chain)", () => {
    const renamed = openssl(['req', '-x509', '-new', '-key', file(ca.key), '-subj', '/CN=Renamed CA', '-days', '2'])
    expect(renamed.status, renamed.out).toBe(0)
    expect(checkCertificateChain(leaf + renamed.stdout, key.publicKeyDer, Date.now())).toEqual({
      ok: false,
      problem: 'certificate 1 of the chain is not issued by certificate 2',
    })
  })

  test('an issuer that is not a CA is a problem, even when it signed', () => {
    const otherLeaf = ca.issue(createCertificateRequest(other), 'device-2', 1)
    const issued = openssl([
      'x509',
      '-req',
      '-days',
      '1',
      '-set_serial',
      '9',
      '-in',
      file(csr),
      '-CA',
      file(otherLeaf),
      '-CAkey',
      file(other.privateKeyPem),
    ])
    expect(issued.status, issued.out).toBe(0)
    expect(checkCertificateChain(issued.stdout + otherLeaf, key.publicKeyDer, Date.now())).toEqual({
      ok: false,
      problem: 'certificate 2 of the chain is not a CA',
    })
  })

  test('a three-certificate chain is checked link by link', () => {
    const intermediateKey = file('')
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', intermediateKey])
    const intermediateCsr = file('')
    openssl(['req', '-new', '-key', intermediateKey, '-subj', '/CN=Intermediate', '-out', intermediateCsr])
    const caExt = file('basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n')
    const caCert = file(ca.cert)
    const caKey = file(ca.key)
    const intermediate = file('')
    const signed = (args: string[]) => openssl(['x509', '-req', '-days', '1', '-set_serial', '7', ...args])
    expect(
      signed(['-in', intermediateCsr, '-CA', caCert, '-CAkey', caKey, '-extfile', caExt, '-out', intermediate]).status,
    ).toBe(0)
    const deviceCsr = file(csr)
    const issued = signed(['-in', deviceCsr, '-CA', intermediate, '-CAkey', intermediateKey, '-subj', '/CN=device-3'])
    expect(issued.status).toBe(0)
    const intermediatePem = readFileSync(intermediate, 'utf8')
    const three = issued.stdout + intermediatePem + ca.cert
    expect(checkCertificateChain(three, key.publicKeyDer, Date.now()).ok).toBe(true)
    const missing = checkCertificateChain(issued.stdout + ca.cert, key.publicKeyDer, Date.now())
    expect(missing).toEqual({ ok: false, problem: 'certificate 1 of the chain is not issued by certificate 2' })
  })

  test(`at most ${MAX_CHAIN_CERTIFICATES} certificates and ${MAX_CHAIN_BYTES} bytes`, () => {
    const check = (pem: string) => checkCertificateChain(pem, key.publicKeyDer, Date.now())
    // The root is self-issued: repeating it keeps every link valid, so only the count can refuse.
    const eight = leaf + ca.cert.repeat(MAX_CHAIN_CERTIFICATES - 1)
    expect(check(eight).ok).toBe(true)
    expect(check(eight + ca.cert)).toEqual({ ok: false, problem: 'the certificate chain has more than 8 certificates' })
    const full = chain + '\n'.repeat(MAX_CHAIN_BYTES - chain.length)
    expect(check(full).ok).toBe(true)
    expect(check(`${full}\n`)).toEqual({ ok: false, problem: 'the certificate chain is longer than 32768 bytes' })
    // Bytes, not characters: text between blocks is allowed, but counts in UTF-8.
    const accents = chain + 'é'.repeat(Math.floor((MAX_CHAIN_BYTES - chain.length) / 2) + 1)
    expect(accents.length).toBeLessThanOrEqual(MAX_CHAIN_BYTES)
    expect(check(accents)).toEqual({ ok: false, problem: 'the certificate chain is longer than 32768 bytes' })
  })

  test('hostile input is a problem, never a throw, and never quoted', () => {
    const body = leaf.split('\n')[1]!
    const der = Buffer.from(leaf.replace(/-----[A-Z ]+-----|\n/g, ''), 'base64')
    const block = (bytes: Buffer) =>
      `-----BEGIN CERTIFICATE-----\n${bytes.toString('base64')}\n-----END CERTIFICATE-----\n`
    const inputs: unknown[] = [
      '',
      'garbage that is not PEM at all',
      key.privateKeyPem,
      leaf + key.privateKeyPem,
      csr,
      leaf.slice(0, leaf.length / 2),
      leaf.replace(body, body.slice(0, 61)), // base64 cut short
      leaf.replace(body, `${body.slice(0, 60)}!!!!`),
      block(der.subarray(0, der.length - 16)), // DER cut short, on a base64 boundary
      block(Buffer.concat([der, Buffer.from([0])])), // a byte after the certificate
      `-----END CERTIFICATE-----\n${leaf}`,
      '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n',
      `-----BEGIN CERTIFICATE-----\n${leaf}`,
      undefined,
      42,
      Buffer.from(leaf),
    ]
    for (const input of inputs) {
      const result = checkCertificateChain(input as string, key.publicKeyDer, Date.now())
      expect(result.ok, String(input).slice(0, 40)).toBe(false)
      if (!result.ok) {
        expect(result.problem).not.toContain(body.slice(0, 16))
        expect(result.problem).not.toContain('garbage')
        expect(result.problem).not.toContain('MIG')
      }
    }
    expect(checkCertificateChain(chain, 'key' as never, Date.now()).ok).toBe(false)
    expect(checkCertificateChain(chain, key.publicKeyDer, Number.NaN).ok).toBe(false)
  })

  test('each kind of damage is named', () => {
    const body = leaf.split('\n')[1]!
    const der = Buffer.from(leaf.replace(/-----[A-Z ]+-----|\n/g, ''), 'base64')
    const block = (bytes: Buffer) =>
      `-----BEGIN CERTIFICATE-----\n${bytes.toString('base64')}\n-----END CERTIFICATE-----\n`
    const signature = Buffer.from(der)
    signature[signature.length - 3]! ^= 0x01 // inside the CA's signature: the leaf still parses, and names its issuer
    const named: Array<[string, string]> = [
      ['', 'the certificate chain has no PEM certificate'],
      ['garbage', 'the certificate chain has no PEM certificate'],
      [key.privateKeyPem, 'the certificate chain has a PEM block that is not a CERTIFICATE'],
      [leaf + key.privateKeyPem, 'the certificate chain has a PEM block that is not a CERTIFICATE'],
      [leaf.replace(body, body.slice(0, 61)), 'certificate 1 of the chain is not base64'],
      [leaf.slice(0, leaf.length / 2), 'a PEM block of the certificate chain is cut short'],
      [`-----END CERTIFICATE-----\n${leaf}`, 'the certificate chain has a malformed PEM boundary'],
      [block(Buffer.concat([der, Buffer.from([0])])), 'certificate 1 of the chain does not parse'],
      [chain.replace(leaf, block(signature)), 'certificate 1 of the chain is not issued by certificate 2'],
    ]
    for (const [pem, problem] of named) {
      expect(checkCertificateChain(pem, key.publicKeyDer, Date.now()), problem).toEqual({ ok: false, problem })
    }
  })

  test('random damage to a chain is named by a check, never the catch-all for an exception (300 mutations)', () => {
    let seed = 17
    const random = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
      return seed % n
    }
    const alphabet = 'ABCxyz019+/=-\n '
    let refused = 0
    for (let round = 0; round < 300; round++) {
      const chars = [...chain]
      for (let edits = 1 + random(3); edits > 0; edits--)
        chars[random(chars.length)] = alphabet[random(alphabet.length)]!
      const result = checkCertificateChain(chars.join(''), key.publicKeyDer, Date.now())
      // Each damage is named by a check of its own: the catch-all (an exception inside the checks) never answers.
      if (!result.ok) expect(result.problem).not.toBe('the certificate chain could not be checked')
      if (!result.ok) refused++
    }
    expect(refused).toBeGreaterThan(200)
  })
})

describe('publicKeyOf', () => {
  test("the SPKI DER of a private key's public half", () => {
    expect(publicKeyOf(key.privateKeyPem).equals(key.publicKeyDer)).toBe(true)
    expect(publicKeyOf(other.privateKeyPem).equals(key.publicKeyDer)).toBe(false)
  })

  test('a TypeError for what is not a private key, quoting nothing', () => {
    const publicPem = createPublicKey(key.privateKeyPem).export({ type: 'spki', format: 'pem' }) as string
    const damaged = key.privateKeyPem.replace(/\n[A-Za-z0-9+/]{10}/, '\n')
    for (const input of ['', 'garbage', publicPem, damaged]) {
      const error = thrown(() => publicKeyOf(input)) as Error
      expect(error).toBeInstanceOf(TypeError)
      expect(error.message).toBe('Expected a PEM private key')
    }
  })
})
