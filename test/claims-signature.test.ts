/**
 * The claim verifier's reading of Signature-Input and Signature (packages/mqtt-bootstrap-server/src/claims/signature.ts):
 * its `@signature-params` text is what `structured-headers` serialises for the same field, whatever the parameters,
 * and anything but one well-formed signature is none.
 */
import { parseDictionary, serializeInnerList } from 'structured-headers'
import { describe, expect, test } from 'vitest'
import { hostMatcher } from '../packages/mqtt-bootstrap-server/src/claims/message.js'
import { readSignature } from '../packages/mqtt-bootstrap-server/src/claims/signature.js'

const SIG = 'sig1=:qxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:'

describe('readSignature', () => {
  test.each([
    'sig1=("@method" "@target-uri" "content-digest");created=1700000000;nonce="qxemNKAhTwI0ODVfPCHL_Q";alg="hmac-sha256";keyid="860000000000001"',
    'sig1=("content-digest" "@method");keyid="a \\"quoted\\" \\\\ id";created=-5',
    'sig1=("@method");created=1;flag;tag=token;ratio=1.5;bytes=:AAE=:',
    'sig1=(  "@method"   "@target-uri"  );created=1700000000',
    'sig1=()',
  ])('the params text of %s is the structured-headers serialisation', (input) => {
    const member = parseDictionary(input).get('sig1') as Parameters<typeof serializeInnerList>[0]
    expect(readSignature(input, SIG)?.paramsText).toBe(serializeInnerList(member))
  })

  test.each([
    ['no input', undefined, SIG],
    ['no signature', 'sig1=("@method");created=1', undefined],
    ['two signatures', 'sig1=("@method"), sig2=("@method")', `${SIG}, sig2=:AAAA:`],
    ['labels that differ', 'sig2=("@method");created=1', SIG],
    ['a component with parameters', 'sig1=("content-digest";sf);created=1', SIG],
    ['an item, not an inner list', 'sig1="@method";created=1', SIG],
    ['a signature that is no byte sequence', 'sig1=("@method")', 'sig1="abc"'],
    ['a signature with parameters', 'sig1=("@method")', `${SIG};x=1`],
    ['unparseable fields', 'sig1=("@method"', SIG],
  ])('%s: no signature', (_name, input, signature) => {
    expect(readSignature(input, signature)).toBeUndefined()
  })
})

describe('hostMatcher (signedClaims({ hosts }))', () => {
  const at = (url: string) => new URL(url)
  test('a name matches on any port; name:port on that port only; *.domain one label more', () => {
    const named = hostMatcher(['provision.example', '127.0.0.1:8443', '*.fleet.example', '[::1]'])
    expect(named(at('https://provision.example/b'))).toBe(true)
    expect(named(at('https://PROVISION.example:8443/b'))).toBe(true) // a port mapping in front: any port
    expect(named(at('https://127.0.0.1:8443/b'))).toBe(true)
    expect(named(at('https://127.0.0.1/b'))).toBe(false)
    expect(named(at('https://a.fleet.example:9443/b'))).toBe(true)
    expect(named(at('https://fleet.example/b'))).toBe(false)
    expect(named(at('https://a.b.fleet.example/b'))).toBe(false)
    expect(named(at('https://[::1]:8443/b'))).toBe(true)
    expect(named(at('https://other.example/b'))).toBe(false)
  })

  test.each(['https://a.example', 'a.example/path', 'user@a.example', '', '*', 'a.*.example', '::1'])(
    '%j is no host: a TypeError',
    (entry) => {
      expect(() => hostMatcher([entry])).toThrow(/hosts/)
    },
  )
})
