/**
 * The ASN.1 libraries certificate issuing is built on, loaded when the first issuer or checker needs them (a server
 * that issues nothing never pays for them). Always the copies `@peculiar/asn1-csr` itself resolves: its classes are
 * the ones AsnConvert must see (schemas are kept per class, so a second copy of asn1-x509 would not be understood).
 * Not `@peculiar/x509` (it writes tsyringe's global container at import), not pkijs (ESM-only): DESIGN.md
 * "Certificates".
 */
import { createRequire } from 'node:module'

/** The three asn1-* packages and asn1js, as asn1-csr resolves them. */
export interface Asn1 {
  csr: typeof import('@peculiar/asn1-csr')
  x509: typeof import('@peculiar/asn1-x509')
  schema: typeof import('@peculiar/asn1-schema')
  /** The BER parser under asn1-schema: for the exact bytes of a Name (see {@link rawName}). */
  asn1js: typeof import('asn1js')
}

let loaded: Asn1 | undefined

/** The libraries, required on first use. */
export function asn1(): Asn1 {
  if (loaded === undefined) {
    // CJS build: __filename; ESM: import.meta.url (as postgres/migrate.ts finds its directory).
    const here = createRequire(typeof __filename === 'string' ? __filename : import.meta.url)
    const csrPath = here.resolve('@peculiar/asn1-csr')
    const fromCsr = createRequire(csrPath)
    const schemaPath = fromCsr.resolve('@peculiar/asn1-schema')
    loaded = {
      csr: fromCsr(csrPath),
      x509: fromCsr('@peculiar/asn1-x509'),
      schema: fromCsr(schemaPath),
      asn1js: createRequire(schemaPath)('asn1js'),
    }
  }
  return loaded
}

/**
 * A Name that serializes to exactly `der`: the issuing CA's subject, byte for byte, as the issuer of what it signs.
 * Chain building compares the two (RFC 5280 6.1), and a Name parsed and encoded again need not be the same bytes.
 * asn1-schema writes any value with toASN()/fromASN() through its own toASN() (its IAsnConvertible seam).
 */
export function rawName(der: Uint8Array): InstanceType<Asn1['x509']['Name']> {
  const { asn1js } = asn1()
  const bytes = Uint8Array.from(der).buffer
  const convertible = {
    toASN: () => asn1js.fromBER(bytes).result,
    fromASN: () => {
      throw new TypeError('a raw Name is written, never read')
    },
  }
  return convertible as unknown as InstanceType<Asn1['x509']['Name']>
}

/** The DER of `value` (an asn1-schema object) as a Buffer. */
export function encode(value: unknown): Buffer {
  return Buffer.from(asn1().schema.AsnConvert.serialize(value))
}
