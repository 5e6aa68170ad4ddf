/**
 * An independent signer of claims (issue 14: the server's verifier is checked against an implementation other than
 * the one it uses). No http-message-signatures, no structured-headers: the signature base is built here as RFC 9421
 * §2.5 says, line by line, and signed with node:crypto's HMAC-SHA256; Content-Digest per RFC 9530 §2.
 *
 * Every part can be made wrong on purpose (the components, the alg, the parameters, the digest), for the refusals.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'

export interface ClaimSpec {
  /** HMAC key: bytes, or base64 of them (a derived key). */
  key: Uint8Array | string
  keyId?: string | undefined
  method?: string
  url: string
  /** The body as sent (what Content-Digest covers unless `digest` says otherwise). */
  body: string
  /** Unix seconds. */
  created?: number | undefined
  /** `null`: no nonce parameter. @default 16 random bytes, base64url */
  nonce?: string | null | undefined
  /** `null`: no alg parameter. @default 'hmac-sha256' */
  alg?: string | null
  /** @default ["@method", "@target-uri", "content-digest"] */
  components?: readonly string[]
  /** @default 'sig1' */
  label?: string
  /** The Content-Digest header sent instead of the body's own. */
  digest?: string
  /** Other header fields a component may cover (lower-case names). */
  headers?: Record<string, string>
}

export interface SignedClaim {
  headers: { 'content-digest': string; 'signature-input': string; signature: string }
  nonce: string | null
  /** The signature base that was signed. */
  base: string
}

export const CLAIM_COMPONENTS = ['@method', '@target-uri', 'content-digest'] as const

/** RFC 9530: `sha-256=:<base64 of SHA-256(body)>:`. */
export function contentDigestOf(body: string | Buffer): string {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`
}

/** An RFC 8941 sf-string: quoted, with `"` and `\` escaped (only printable ASCII is allowed inside). */
function sfString(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new Error(`not an sf-string: ${JSON.stringify(value)}`)
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

export function signClaimIndependently(spec: ClaimSpec): SignedClaim {
  const method = spec.method ?? 'POST'
  const components = spec.components ?? CLAIM_COMPONENTS
  const digest = spec.digest ?? contentDigestOf(spec.body)
  const fields: Record<string, string> = { 'content-digest': digest, ...spec.headers }
  const nonce = spec.nonce === undefined ? randomBytes(16).toString('base64url') : spec.nonce
  // §2.2: derived components.
  const value = (name: string): string => {
    if (name === '@method') return method.toUpperCase()
    if (name === '@target-uri') return new URL(spec.url).href
    if (name === '@authority') return new URL(spec.url).host
    if (name === '@path') return new URL(spec.url).pathname
    const field = fields[name]
    if (field === undefined) throw new Error(`no field ${name} to cover`)
    return field.trim()
  }
  // §2.3: the inner list of components, then the parameters in this order.
  let params = `(${components.map(sfString).join(' ')})`
  if (spec.created !== undefined) params += `;created=${spec.created}`
  if (nonce !== null) params += `;nonce=${sfString(nonce)}`
  if (spec.alg !== null) params += `;alg=${sfString(spec.alg ?? 'hmac-sha256')}`
  if (spec.keyId !== undefined) params += `;keyid=${sfString(spec.keyId)}`
  // §2.5: one line per component, `"name": value`, then the signature parameters line; LF between, none at the end.
  const lines = components.map((name) => `${sfString(name)}: ${value(name)}`)
  lines.push(`"@signature-params": ${params}`)
  const base = lines.join('\n')
  const key = typeof spec.key === 'string' ? Buffer.from(spec.key, 'base64') : spec.key
  const signature = createHmac('sha256', key).update(base, 'utf8').digest('base64')
  const label = spec.label ?? 'sig1'
  return {
    headers: {
      'content-digest': digest,
      'signature-input': `${label}=${params}`,
      signature: `${label}=:${signature}:`,
    },
    nonce,
    base,
  }
}
