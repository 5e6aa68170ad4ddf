/**
 * The codes a refusal may carry: any code of the contract's form but the three it reserves (`"00000"`, `"77777"`,
 * `"99999"`). One rule for the handler's answers, the verifier's refusals (claims/verdict.ts), the registry file's
 * `refuse` entries and the checker's judgement of a server's refusals.
 */
import { contractSchemas, ResultCode } from 'mqtt-bootstrap/contract'
import * as v from 'valibot'

const RESERVED_CODES: ReadonlySet<string> = new Set(Object.values(ResultCode))

/** Why `code` cannot be a refusal code, or `undefined`: the contract's code, and none of the three reserved ones. */
export function refusalCodeProblem(code: unknown): string | undefined {
  if (!v.is(contractSchemas().Code, code)) return 'must be a string of 1 to 64 printable characters'
  if (RESERVED_CODES.has(code)) return `must not be "${code}", a code the contract reserves`
  return undefined
}
