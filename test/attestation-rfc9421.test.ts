/**
 * RFC 9421's own published hmac-sha256 example (Appendix B.2.5, key from B.1.5), reproduced by the code that signs
 * the device's claims (signComponents: signClaim is built on it), and verified by this suite's independent verifier
 * (test/helpers/verify-claim.ts): each implementation checked against the RFC, not against the other.
 * http-message-signatures, a third, checks the device's claims in test/attestation-device.test.ts.
 */
import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { signComponents } from '../packages/mqtt-bootstrap/src/attestation/sign.js'
import { parseDictionary, verifyContentDigest, verifyHmacSignature } from './helpers/verify-claim.js'

interface Vector {
  keyId: string
  key: string
  label: string
  request: { method: string; targetUri: string; headers: Record<string, string>; body: string }
  components: string[]
  params: Array<[string, string | number]>
  signatureBase: string
  signatureInput: string
  signature: string
}

const vector = JSON.parse(readFileSync(new URL('./vectors/rfc9421-b25.json', import.meta.url), 'utf8')) as Vector
const key = Buffer.from(vector.key, 'base64')

describe('RFC 9421 Appendix B.2.5 (hmac-sha256, test-shared-secret)', () => {
  test('the device signer gives the published signature base, Signature-Input and Signature', async () => {
    const signed = await signComponents({
      label: vector.label,
      method: vector.request.method,
      url: vector.request.targetUri,
      headers: vector.request.headers,
      components: vector.components,
      params: vector.params,
      key,
    })
    expect(signed.base).toBe(vector.signatureBase)
    expect(signed.signatureInput).toBe(vector.signatureInput)
    expect(signed.signature).toBe(vector.signature)
  })

  test('the independent verifier accepts the published message, and rebuilds the same base', () => {
    const request = {
      ...vector.request,
      headers: { ...vector.request.headers, 'signature-input': vector.signatureInput, signature: vector.signature },
    }
    const verified = verifyHmacSignature(request, key)
    expect(verified).toMatchObject({
      label: 'sig-b25',
      components: vector.components,
      params: { created: 1618884473, keyid: vector.keyId },
    })
    expect(verified.base).toBe(vector.signatureBase)
  })

  test('the independent verifier refuses the message with one byte changed anywhere it covers', () => {
    const signed = { 'signature-input': vector.signatureInput, signature: vector.signature }
    const changed = [
      { ...vector.request, headers: { ...vector.request.headers, ...signed, date: 'Tue, 20 Apr 2021 02:07:56 GMT' } },
      {
        ...vector.request,
        targetUri: 'https://example.org/foo?param=Value&Pet=dog',
        headers: { ...vector.request.headers, ...signed },
      },
      {
        ...vector.request,
        headers: {
          ...vector.request.headers,
          ...signed,
          'signature-input': vector.signatureInput.replace('473', '474'),
        },
      },
      {
        ...vector.request,
        headers: {
          ...vector.request.headers,
          ...signed,
          signature: 'sig-b25=:qxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:',
        },
      },
    ]
    for (const request of changed) expect(() => verifyHmacSignature(request, key)).toThrow()
    // What the example does not cover may change (the body here: B.2.5 signs no Content-Digest).
    expect(() =>
      verifyHmacSignature({ ...vector.request, body: '{}', headers: { ...vector.request.headers, ...signed } }, key),
    ).not.toThrow()
  })

  test("the message's own Content-Digest (sha-512) is not one this verifier takes: it checks sha-256", () => {
    // The test-request's digest is sha-512 (RFC 9530 §2): a claim's must be sha-256, so it is refused as none.
    expect(parseDictionary(vector.request.headers['content-digest'] as string).has('sha-512')).toBe(true)
    expect(() => verifyContentDigest(vector.request)).toThrow(/no sha-256/)
  })
})
