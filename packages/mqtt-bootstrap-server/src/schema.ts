/**
 * The provisioning contract as a machine-readable document: JSON Schema (draft-07) for the request body and the
 * answer, and the result-code table. Generated from the very valibot schemas the device validates answers with
 * (contract.ts), so the published contract and the library cannot drift. `npm run schema` writes it to
 * schema/provisioning.schema.json, shipped in the package as `mqtt-bootstrap/schema.json`.
 */
import { toJsonSchema } from '@valibot/to-json-schema'
import { codePointLimit, contractSchemas, ResultCode } from 'mqtt-bootstrap/contract'
import { PEM as CSR_PEM, MAX_CSR_BYTES } from './certificates/csr.js'

export const RESULT_CODES = Object.freeze([
  { code: ResultCode.SUCCESS, meaning: 'configuration received; result holds it', retry: false },
  {
    code: ResultCode.TRANSIENT,
    meaning: 'transient: network, timeout, TLS handshake, HTTP 5xx/408/429, or the server answered "77777"',
    retry: true,
  },
  {
    code: ResultCode.INVALID_RESPONSE,
    meaning: 'an answer came but could not be understood (not JSON, no code, "00000" with an invalid result)',
    retry: false,
  },
  { code: '(any other string)', meaning: "the server's own refusal (unknown device, …), passed through", retry: false },
])

/** Draft-07 JSON Schema of one valibot schema, without its own `$schema` (the document has one). */
function fragment(schema: Parameters<typeof toJsonSchema>[0]): Record<string, unknown> {
  const { $schema: _, ...rest } = toJsonSchema(schema, {
    errorMode: 'throw',
    // The contract's length limits count code points, exactly as JSON Schema's maxLength does.
    overrideAction: ({ valibotAction, jsonSchema }) => {
      const limit = codePointLimit(valibotAction)
      return limit === undefined ? undefined : { ...jsonSchema, maxLength: limit }
    },
  }) as Record<string, unknown>
  return rest
}

/** The whole document. */
export function provisioningSchema(): Record<string, unknown> {
  const { Answer, DeviceConfig } = contractSchemas()
  const envelope = fragment(Answer)
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    // The document as a whole validates an answer; the parts are in definitions.
    $ref: '#/definitions/response',
    $id: 'https://mqtt-bootstrap.dev/schema/provisioning.schema.json',
    title: 'mqtt-bootstrap provisioning contract (PointAccess)',
    description:
      'POST <url> over HTTPS with Content-Type: application/json and the device identity as the body; the answer is ' +
      'a JSON envelope with a result code, and for "00000" the device triplet and how to connect. Every string is ' +
      'one MQTT allows in a UTF-8 string: no C0 or C1 controls, U+007F, lone surrogates or noncharacters (the ' +
      'patterns say so, and mean the same with or without the u flag).',
    definitions: {
      request: {
        title: 'Request body',
        description:
          'What identifies the device (IMEI, serial, …): any JSON value, typically an object. A device that asks for ' +
          'a certificate (its `certificate` option) adds `csr`, and the answer then carries `device.certificate`.',
        // Any value, and when it is an object with `csr`, that is a CSR (a server refuses any other with "10008").
        anyOf: [
          { not: { type: 'object' } },
          {
            type: 'object',
            properties: {
              csr: {
                description:
                  'A PKCS#10 certificate request (RFC 2986) in PEM for a key the device made itself (P-256, or RSA of ' +
                  '2048 bits or more), signed with it. Its subject and extensions are not used: the certificate is ' +
                  'issued to the deviceName, and is never a CA.',
                type: 'string',
                maxLength: MAX_CSR_BYTES,
                pattern: CSR_PEM.source,
              },
            },
          },
        ],
      },
      deviceConfig: { title: 'result of a "00000" answer', ...fragment(DeviceConfig) },
      response: {
        title: 'Answer',
        ...envelope,
        if: { properties: { code: { const: ResultCode.SUCCESS } }, required: ['code'] },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then keyword; this object is never awaited
        then: { required: ['result'], properties: { result: { $ref: '#/definitions/deviceConfig' } } },
      },
      resultCode: {
        title: 'Result codes',
        description: 'The codes of PointAccess.request() and what the device does with them.',
        anyOf: RESULT_CODES.map(({ code, meaning, retry }) =>
          code.startsWith('(')
            ? { type: 'string', description: `${meaning}; not retried` }
            : { const: code, description: `${meaning}; ${retry ? 'retried' : 'not retried'}` },
        ),
      },
    },
  }
}
