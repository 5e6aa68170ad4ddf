/**
 * fast-check generators of provisioning answers as a server might send them: mostly near the contract, with wrong
 * types, missing and extra fields, huge strings, __proto__ and constructor keys, qos 7, hosts with odd schemes.
 */
import fc from 'fast-check'

// Building blocks: values of every JSON type, some of them near misses of the real thing.
const oddString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('', ' ', '\u0000', 'a\nb', '__proto__', 'constructor', 'toString', '\uFEFF', '\uD800'),
  fc.nat({ max: 70_000 }).map((n) => 'x'.repeat(n)), // huge strings
  fc.integer({ min: 1000, max: 1100 }).map((n) => '😀'.repeat(n)), // near the 1024 limit, 2 UTF-16 units each
  fc.integer({ min: 60, max: 70 }).map((n) => 'é'.repeat(n)), // near the 64-character code limit
)
const scalar = fc.oneof(oddString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null))
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, scalar, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 4 }),
  object: fc.dictionary(fc.oneof(oddString, fc.constantFrom('__proto__', 'constructor', 'prototype')), tie('value'), {
    maxKeys: 4,
  }),
})).value

/** Mostly the valid value, sometimes something odd, sometimes missing (undefined: JSON.stringify drops the key). */
const field = <T>(valid: fc.Arbitrary<T>, odd: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 8, arbitrary: valid },
    { weight: 1, arbitrary: odd },
    { weight: 1, arbitrary: fc.constant(undefined) },
  )

const host = fc.oneof(
  fc.constantFrom(
    'broker.example:1883',
    'mqtts://broker.example:8883',
    'ws://broker.example/mqtt',
    '[::1]:1883',
    'b',
    'MQTTS://UPPER.example',
    'mqtt://[2001:db8::1]:1883',
  ),
  fc.constantFrom(
    'ftp://broker.example',
    'javascript:alert(1)',
    'file:///etc/passwd',
    'mqtt://user:pw@broker.example',
    'mqtt://broker.example/?clientId=evil',
    'http://broker.example',
    'broker.example:99999',
    '[:::::]:1883',
    '[1.2.3.4]',
    'a..b',
    'bröker.example',
    '',
  ),
)
const device = fc.record({
  productKey: field(fc.constantFrom('a1PK', 'pk-2'), fc.oneof(oddString, scalar)),
  deviceName: field(fc.constantFrom('dev-1', 'meter_0002'), fc.oneof(oddString, scalar)),
  deviceSecret: field(fc.constantFrom('s3cret', 'x'.repeat(64)), fc.oneof(oddString, scalar)),
  productSecret: fc.oneof(fc.constant(undefined), fc.constant(null), fc.constant('ps'), oddString, scalar),
  __proto__: fc.oneof(fc.constant(undefined), fc.constant({ polluted: true })),
  constructor: fc.oneof(fc.constant(undefined), jsonValue),
})
const connect = fc.record({
  qos: field(fc.constantFrom(0, 1, 2), fc.oneof(fc.constantFrom(7, -1, 1.5, '1', true, null), scalar)),
  host: field(host, scalar),
  cleanSession: field(fc.constantFrom(0, 1, true, false), fc.oneof(fc.constantFrom(2, '1', null), scalar)),
  extra: fc.oneof(fc.constant(undefined), jsonValue),
})
export const answer = fc.oneof(
  {
    weight: 9,
    arbitrary: fc.record({
      code: field(fc.constantFrom('00000', '00000', '00000', '77777', '10001'), fc.oneof(oddString, scalar)),
      result: field(fc.record({ device: field(device, jsonValue), connect: field(connect, jsonValue) }), jsonValue),
      message: fc.oneof(fc.constant(undefined), jsonValue),
    }),
  },
  { weight: 1, arbitrary: jsonValue },
)

/** The body as the server would send it: JSON text with __proto__ keys kept as real keys, or not JSON at all. */
export const body = fc.oneof(
  { weight: 8, arbitrary: answer.map((value) => JSON.stringify(value, protoAsKey)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: answer.map((value) => JSON.stringify(value, protoAsKey).slice(0, -3)) },
)
export const status = fc.oneof(
  { weight: 4, arbitrary: fc.constant(200) },
  { weight: 1, arbitrary: fc.constantFrom(201, 204, 301, 400, 401, 404, 408, 429, 500, 503) },
)

/** fc.record's __proto__ becomes an own data property; make sure JSON.stringify keeps it as one. */
function protoAsKey(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value
  return Object.fromEntries(Object.entries(Object.getOwnPropertyDescriptors(value)).map(([k, d]) => [k, d.value]))
}
