/**
 * The ASN.1 classes a CSR is built with: `@peculiar/asn1-csr`, an optional peer (issue 17), required on first use,
 * synchronously, as lazy.ts loads what a device needs late. Not `@peculiar/x509`: it registers singletons in
 * tsyringe's global container when imported (DESIGN.md "Certificates"), the app's own container among them.
 *
 * asn1-schema and asn1-x509 are required from asn1-csr's own location, not from this package's: asn1-csr's classes
 * are decorated with the schema of the copy it resolves, and `AsnConvert` of another copy (another version hoisted
 * beside it) would not know them.
 */
import { DependencyError } from '../errors.js'

/** The package to install for the `certificate` option (the name a DependencyError gives). */
export const ASN1_PACKAGE = '@peculiar/asn1-csr'

/** The modules a CSR needs, each from the copy asn1-csr itself uses. */
export interface Asn1 {
  readonly csr: typeof import('@peculiar/asn1-csr')
  readonly schema: typeof import('@peculiar/asn1-schema')
  readonly x509: typeof import('@peculiar/asn1-x509')
}

const { createRequire } = process.getBuiltinModule('node:module')
const load = createRequire(import.meta.url)

/** Loaded modules, by module id: each is required once per process. */
const loaded = new Map<string, Asn1>()

/**
 * The ASN.1 modules, required on the first call. `id` is asn1-csr's module id: a seam for the test of a missing
 * package. A package that cannot be found (asn1-csr, or a dependency of it) is a {@link DependencyError} naming
 * `@peculiar/asn1-csr`, which brings the others with it; any other failure to load is thrown as it is.
 * @param id the module to require as asn1-csr. @default '@peculiar/asn1-csr'
 */
export function loadAsn1(id: string = ASN1_PACKAGE): Asn1 {
  const cached = loaded.get(id)
  if (cached !== undefined) return cached
  let modules: Asn1
  try {
    const path = load.resolve(id)
    const beside = createRequire(path)
    modules = Object.freeze({
      csr: load(path) as Asn1['csr'],
      schema: beside('@peculiar/asn1-schema') as Asn1['schema'],
      x509: beside('@peculiar/asn1-x509') as Asn1['x509'],
    })
  } catch (error) {
    if ((error as { code?: unknown } | null)?.code === 'MODULE_NOT_FOUND') {
      throw new DependencyError(ASN1_PACKAGE, 'the certificate option', { cause: error })
    }
    throw error
  }
  loaded.set(id, modules) // only what loaded: a package installed after a failure is found by the next call
  return modules
}
