/**
 * The one RFC 9421 signature a claim carries, read from its Signature-Input and Signature fields, and the signature
 * base it must be the HMAC of (RFC 9421 §2.5). The fields are Structured Fields (RFC 8941), parsed by
 * `structured-headers`: anything that is not a well-formed dictionary of exactly one member each, with the same
 * label, is no signature. The base is built for the claim's own three components only (`@method`, `@target-uri`,
 * `content-digest`): a signature over anything else is refused by the verifier before any key is asked for.
 *
 * Why not `http-message-signatures`' verifyMessage, which the tests verify against (test/claims-verify.test.ts):
 * measured among the server's requests it cost about 160 µs of the 218 µs a verification took here, most of it
 * general machinery a claim does not need (a base for any component, re-parsing each component's name); this path
 * costs a fraction of it (docs/provisioning-server.md "Signed claims", `BENCH_ONLY=claims npm run bench`).
 */
import { parseDictionary, serializeInnerList } from 'structured-headers'

/** A claim's signature as sent: its label, covered components and parameters, the bytes, and its params' text. */
export interface ClaimSignature {
  label: string
  components: string[]
  params: Map<string, unknown>
  signature: Buffer
  /** The `@signature-params` value: the inner list as RFC 8941 serialises it. */
  paramsText: string
}

/** The signature of a claim, or `undefined` when there is none or it is malformed (both: an invalid signature). */
export function readSignature(
  input: string | string[] | undefined,
  signature: string | string[] | undefined,
): ClaimSignature | undefined {
  if (input === undefined || signature === undefined) return undefined
  let inputs: ReturnType<typeof parseDictionary>
  let signatures: ReturnType<typeof parseDictionary>
  try {
    inputs = parseDictionary(joined(input))
    signatures = parseDictionary(joined(signature))
  } catch {
    return undefined
  }
  if (inputs.size !== 1 || signatures.size !== 1) return undefined
  const [[label, member]] = inputs as unknown as [[string, unknown]]
  const signed = signatures.get(label)
  if (!isInnerList(member) || signed === undefined || isInnerList(signed)) return undefined
  const [bytes, signatureParams] = signed
  if (!(bytes instanceof ArrayBuffer) || signatureParams.size !== 0) return undefined
  const components: string[] = []
  for (const [name, itemParams] of member[0]) {
    // A component with parameters (`;sf`, `;key`, `;req`) names another value than the claim's own.
    if (typeof name !== 'string' || itemParams.size !== 0) return undefined
    components.push(name)
  }
  return {
    label,
    components,
    params: member[1],
    signature: Buffer.from(bytes),
    paramsText: paramsText(components, member),
  }
}

/**
 * The inner list serialised (RFC 8941 §4.1.1.1): component names and parameters that are strings or integers, what
 * a claim holds, written directly; anything else by `structured-headers`, which serialises any item (and costs
 * several times as much: this runs on every claim).
 */
function paramsText(components: string[], member: Parameters<typeof serializeInnerList>[0]): string {
  let text = `(${components.map(sfString).join(' ')})`
  for (const [name, value] of member[1]) {
    if (typeof value === 'string' && PRINTABLE.test(value)) text += `;${name}=${sfString(value)}`
    else if (Number.isSafeInteger(value)) text += `;${name}=${value as number}`
    else return serializeInnerList(member)
  }
  return text
}

/** What the parser gives for an sf-string holds printable ASCII only; checked again before it is written as one. */
const PRINTABLE = /^[\x20-\x7e]*$/

const sfString = (value: string) => `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`

/** The signature base of a claim's signature over its three components, in the order the signature lists them. */
export function signatureBase(
  { components, paramsText }: ClaimSignature,
  values: Readonly<Record<string, string>>,
): string | undefined {
  let base = ''
  for (const name of components) {
    const value = values[name]
    if (value === undefined) return undefined
    base += `"${name}": ${value}\n`
  }
  return `${base}"@signature-params": ${paramsText}`
}

function joined(field: string | string[]): string {
  return Array.isArray(field) ? field.join(', ') : field
}

function isInnerList(member: unknown): member is [Array<[unknown, Map<string, unknown>]>, Map<string, unknown>] {
  return Array.isArray(member) && Array.isArray(member[0])
}
