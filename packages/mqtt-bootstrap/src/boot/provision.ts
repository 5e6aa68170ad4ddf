/**
 * The provision phase: the cached configuration, else the server's (retried: transient failures, "77777", with
 * backoff and Retry-After), then dynamic registration when the answer carries a productSecret and no deviceSecret.
 */

import { lifetimeOf, noteLifetime } from '../certificates/schedule.js'
import { type DeviceConfig, ResultCode } from '../contract.js'
import { secretsOf, withoutEchoes } from '../echoes.js'
import { withUrl } from '../error-urls.js'
import { ProvisioningError } from '../errors.js'
import { requestConfig } from '../point-access.js'
import { redactUrl } from '../redact.js'
import { withRetry } from '../retry.js'
import type { Provisioned } from '../session-hooks.js'
import type { ClientCertificate } from '../transport/http-transport.js'
import { readCache, readEntry } from './cache.js'
import { acceptCertificate, certificateClaim } from './certificate.js'
import { type BootContext, type FailureSink, retryLoop } from './context.js'
import { register } from './register.js'

/** The cached configuration, else the server's. */
export async function load(
  context: BootContext,
  sink: FailureSink,
  signal: AbortSignal | undefined,
): Promise<Provisioned> {
  const cached = await readCache(context)
  if (cached === undefined) {
    await startupJitter(context, signal)
    return claim(context, sink, signal)
  }
  context.report.provisioned(cached, 'cache')
  return { config: cached, source: 'cache' }
}

/**
 * After `rejected` was refused by the broker: credentials a concurrent call (or process) has already put in the
 * cache, else fresh ones from the server. The refused entry is not deleted: it is overwritten once new credentials
 * arrive, and kept if provisioning fails.
 */
export async function replace(
  context: BootContext,
  sink: FailureSink,
  rejected: DeviceConfig,
  signal: AbortSignal | undefined,
): Promise<Provisioned> {
  const current = await readEntry(context).catch(() => undefined)
  if (current !== undefined && !sameCredentials(current, rejected)) {
    context.report.provisioned(current, 'cache')
    return { config: current, source: 'cache' }
  }
  context.report.cache({ action: 'invalidate', key: context.options.cacheKey, reason: 'auth-rejected' })
  await startupJitter(context, signal)
  return claim(context, sink, signal, rejected)
}

/** Before this bootstrap's first provisioning request only: a fleet powered on at once spreads out. */
async function startupJitter(context: BootContext, signal: AbortSignal | undefined): Promise<void> {
  const { memory, options, seams } = context
  if (memory.jittered || options.startupJitterMs === 0) return
  memory.jittered = true
  const delayMs = Math.floor(seams.clock.random() * options.startupJitterMs)
  context.report.startupJitter(delayMs)
  await seams.clock.sleep(delayMs, signal)
}

/**
 * Provision from the server (retried). `refused` is the configuration this one replaces, if any: the one the broker
 * has just refused, or one being renewed (its secrets are not quoted, nor registered for again). `renewal`: this is
 * one (boot/renew.ts), with the TLS client certificate of the request while the current one is valid; a secret it
 * registers is not cached here (the session caches it once the broker accepted it).
 */
export async function claim(
  context: BootContext,
  sink: FailureSink,
  signal: AbortSignal | undefined,
  refused?: DeviceConfig,
  renewal?: { proof: ClientCertificate | undefined },
): Promise<Provisioned> {
  const { options, seams, report, memory } = context
  const { url, headers } = options
  memory.shownUrl ??= redactUrl(url)
  const shown = memory.shownUrl
  // With `certificate`, a key pair made now and the data plus its CSR (one per provisioning, shared by the retries).
  const csr = options.certificate && (await certificateClaim(options.data, options.certificate))
  // Checked at the door (resolveOptions): serialised once per provisioning, never on a cached boot.
  const body = csr ? csr.body : JSON.stringify(options.data)
  const secrets = refused === undefined ? [] : secretsOf(refused)
  const request = { url: new URL(url), body, headers, signal, secrets, clientCertificate: renewal?.proof }
  const config = await withRetry(
    async (attempt) => {
      report.provisioning(shown, attempt)
      try {
        const answer = await requestConfig(
          { ...request, attestation: options.attestation },
          options.transportOptions,
          seams,
        )
        const now = seams.clock.now()
        try {
          // acceptCertificate() notes the lifetime its chain check found.
          const accepted = csr ? acceptCertificate(answer, csr, now) : withoutUnaskedCertificate(answer)
          if (!csr) noteLifetime(accepted, now)
          return unexpired(accepted, now)
        } catch (error) {
          throw withUrl(error, request.url)
        }
      } catch (error) {
        // Re-provisioning after a rejection: a refusal's message and code may echo the refused secrets.
        throw refused === undefined ? error : withoutEchoes(error, secretsOf(refused))
      }
    },
    retryLoop(context, 'provision', sink, signal),
  )
  // With `certificate`, the certificate is the credential: there is no secret to register for.
  if (config.device.deviceSecret === '' && options.certificate === undefined) {
    const registered = await register(context, sink, config, signal, refused, renewal === undefined)
    noteLifetime(registered, seams.clock.now())
    return { config: registered, source: 'server' }
  }
  report.provisioned(config, 'server')
  return { config, source: 'server' }
}

/**
 * An answer to a device that sent no CSR: a certificate in it is of no use (the device has no key for it), and one
 * with a certificate instead of any secret leaves the device nothing to connect with: `"99999"`.
 */
function withoutUnaskedCertificate(config: DeviceConfig): DeviceConfig {
  const { deviceSecret, productSecret, certificate } = config.device
  if (certificate === undefined || deviceSecret !== '' || productSecret !== null) return config
  throw invalidAnswer('has a certificate and no secret, and the device sent no CSR (no `certificate` option)')
}

/**
 * `config`, unless its secret has already expired by the device's clock: then a `"99999"`, as for an expired
 * certificate (the same server would answer the same: not retried).
 */
function unexpired(config: DeviceConfig, now: number): DeviceConfig {
  const lifetime = lifetimeOf(config)
  if (lifetime !== undefined && lifetime.expiresAt <= now) throw invalidAnswer('has an expiresAt already past')
  return config
}

function invalidAnswer(why: string): ProvisioningError {
  return new ProvisioningError('ERR_PROVISION_INVALID_RESPONSE', `provisioning answer ${why}`, {
    resultCode: ResultCode.INVALID_RESPONSE,
    transient: false,
    status: 200,
  })
}

function sameCredentials(a: DeviceConfig, b: DeviceConfig): boolean {
  return (
    a.device.productKey === b.device.productKey &&
    a.device.deviceName === b.device.deviceName &&
    a.device.deviceSecret === b.device.deviceSecret &&
    a.device.certificate === b.device.certificate &&
    a.connect.host === b.connect.host
  )
}
