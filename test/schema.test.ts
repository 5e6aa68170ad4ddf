/**
 * The published contract (packages/mqtt-bootstrap/schema/provisioning.schema.json) is generated from the schemas the library validates with;
 * these tests keep the committed file current and check, with an independent JSON Schema validator (ajv), that the
 * document and the library accept exactly the same answers.
 */
import { readFileSync } from 'node:fs'
import { Ajv } from 'ajv'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { ProvisioningError } from '../packages/mqtt-bootstrap/src/index.js'
import { interpretAnswer } from '../packages/mqtt-bootstrap/src/point-access.js'
import { provisioningSchema, RESULT_CODES } from '../packages/mqtt-bootstrap-server/src/index.js'
import { body } from './helpers/answers.js'
import { configAnswer, DEVICE } from './helpers/https-server.js'

const committed = JSON.parse(
  readFileSync(new URL('../packages/mqtt-bootstrap/schema/provisioning.schema.json', import.meta.url), 'utf8'),
)

// ajv with its defaults (strict, lengths in code points): the document is what any validator gets.
const ajv = new Ajv()
const validResponse = ajv.compile(committed)

/** What the library makes of an HTTP 200 answer with this JSON body: understood or not ("99999"). */
function libraryUnderstands(json: unknown): boolean {
  const outcome = interpretAnswer({ status: 200, headers: {}, body: JSON.stringify(json) }, 0)
  return !(outcome instanceof ProvisioningError && outcome.resultCode === '99999')
}

describe('the published contract', () => {
  test('the committed provisioning.schema.json is current (run `npm run schema` after changing the contract)', () => {
    expect(committed).toEqual(provisioningSchema())
  })

  test('it carries the result-code table', () => {
    const table = committed.definitions.resultCode.anyOf as Array<{ const?: string; description: string }>
    expect(table.map((row) => row.const)).toEqual(['00000', '77777', '99999', undefined])
    expect(RESULT_CODES.map((c) => c.code)).toEqual(['00000', '77777', '99999', '(any other string)'])
    expect(table[1]?.description).toMatch(/retried$/)
  })

  test('lengths count code points in both: 1024 emoji pass, 1025 do not', () => {
    const withSecret = (deviceSecret: string) => configAnswer({ host: 'b:1' }, { ...DEVICE, deviceSecret })
    for (const [secret, expected] of [
      ['😀'.repeat(1024), true],
      ['😀'.repeat(1025), false],
      ['é'.repeat(1025), false],
    ] as const) {
      expect(validResponse(withSecret(secret))).toBe(expected)
      expect(libraryUnderstands(withSecret(secret))).toBe(expected)
    }
  })

  test('examples: a valid answer, a refusal, a busy answer pass; broken ones fail, in both', () => {
    const samples: unknown[] = [
      configAnswer({ host: 'broker.example:1883' }),
      configAnswer({ host: 'mqtts://b.example/x', qos: 2, cleanSession: false }, { ...DEVICE, productSecret: 'p' }),
      { code: '10001', message: 'unknown device' },
      { code: '77777' },
      { code: '00000' },
      configAnswer({ host: 'ftp://b' }),
      configAnswer({ host: 'b', qos: 7 }),
      { code: 1 },
      [],
      'x',
      configAnswer({ host: 'b:1' }, { ...DEVICE, expiresAt: '2026-12-02T10:00:00+08:00' }),
      configAnswer({ host: 'b:1' }, { ...DEVICE, expiresAt: '2026-12-02 10:00:00' }),
    ]
    const verdicts = samples.map((sample) => [validResponse(sample), libraryUnderstands(sample)])
    expect(verdicts.map(([schema]) => schema)).toEqual([
      true,
      true,
      true,
      true,
      false,
      false,
      false,
      false,
      false,
      false,
      true,
      false,
    ])
    for (const [schema, library] of verdicts) expect(schema).toBe(library)
  })

  test('5,000 generated answers: the JSON Schema and the library agree on every one', () => {
    let valid = 0
    fc.assert(
      fc.property(body, (text) => {
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          return // not JSON: outside what a schema can judge
        }
        const schema = validResponse(json)
        if (schema) valid++
        expect(schema, JSON.stringify(validResponse.errors)).toBe(libraryUnderstands(json))
      }),
      { numRuns: 5000 },
    )
    expect(valid).toBeGreaterThan(500)
  })
})
