/**
 * A provisioning server that issues a new deviceSecret at every claim, with an `expiresAt` (issue 18), for the secret
 * renewal tests (test/secret-renewal.test.ts, test/secret-renewal.slow.test.ts), on the suite's test env: the aedes
 * broker learns each secret as it is issued (or not, to refuse it), and `signer()` tells which claim's secret signed
 * a CONNECT the broker saw.
 */
import { randomBytes } from 'node:crypto'
import { verifyAliyunCredentials } from '../../packages/mqtt-bootstrap/src/index.js'
import type { ConnectRecord } from './broker.js'
import type { TestEnv } from './env.js'
import { configAnswer, DEVICE, json } from './https-server.js'

/** One claim the server answered: the secret it issued, when (by the issuing clock) and until when. */
export interface Issued {
  secret: string
  answeredAt: number
  expiresAt: number | undefined
}

export interface Issuing {
  /** How long the secret lives from the answer; `null`: no `expiresAt` at all. @default one minute */
  lifetimeMs?: number | null
  /** Whether the broker accepts the new secret from then on (in place of the previous one). @default true */
  brokerAccepts?: boolean
  /** The offset `expiresAt` is written with. @default 'Z' */
  zone?: 'Z' | '+08:00'
  /** The clock the answer's time is read from (the device's, when it runs ahead). @default Date */
  clock?: { now(): number }
}

const HOUR = 3_600_000
const CID = `${DEVICE.productKey}.${DEVICE.deviceName}`

/** `ms` as an RFC 3339 date-time in `zone`. */
export function rfc3339(ms: number, zone: 'Z' | '+08:00'): string {
  return zone === 'Z' ? new Date(ms).toISOString() : new Date(ms + 8 * HOUR).toISOString().replace('Z', '+08:00')
}

export function secretIssuer(env: TestEnv) {
  /** The claims answered in this test, in order. */
  const issued: Issued[] = []
  return {
    issued,
    /** From now on, the server answers every claim with a new secret (see Issuing). */
    issue({ lifetimeMs = 60_000, brokerAccepts = true, zone = 'Z', clock = Date }: Issuing = {}): void {
      env.server.handle((_request, response) => {
        const secret = `S3cr3t-renewed-${issued.length + 1}-${randomBytes(12).toString('hex')}`
        const answeredAt = clock.now()
        const expiresAt = lifetimeMs === null ? undefined : answeredAt + lifetimeMs
        issued.push({ secret, answeredAt, expiresAt })
        if (brokerAccepts) env.broker.secrets.set(CID, secret)
        const lifetime = expiresAt === undefined ? {} : { expiresAt: rfc3339(expiresAt, zone) }
        json(response, 200, configAnswer({ host: env.broker.host }, { ...DEVICE, deviceSecret: secret, ...lifetime }))
      })
    },
    /**
     * Which claim's secret signed a CONNECT the broker saw: 1 for the first claim's, 2 for the next, …; 0 for none
     * of them (checked as the broker checks, by recomputing the aliyun signature).
     */
    signer(connect: ConnectRecord): number {
      const signed = (secret: string) =>
        verifyAliyunCredentials(connect, () => secret, { maxSkewMs: Number.POSITIVE_INFINITY }) !== undefined
      return issued.findIndex(({ secret }) => signed(secret)) + 1
    },
    /** After each test: nothing issued, the broker back on the env's own secret. */
    reset(): void {
      issued.length = 0
      env.broker.secrets.set(CID, DEVICE.deviceSecret)
    },
  }
}
