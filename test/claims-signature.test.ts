/**
 * The claim verifier's reading of Signature-Input and Signature (packages/mqtt-bootstrap-server/src/claims/signature.ts):
 * its `@signature-params` text is what `structured-headers` serialises for the same field, whatever the parameters,
 * and anything but one well-formed signature is none.
 */
import { parseDictionary, serializeInnerList } from 'structured-headers'
import { describe, expect, test } from 'vitest'
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
