/**
 * The register phase (dynamic registration): the server answered a productSecret and no deviceSecret, and the
 * registration strategy exchanges it for the device's secret (retried like provisioning), which is stored before
 * anything else happens: the service issues it once, and a device that connected with it cannot register again.
 *
 * It is stored twice: under the bootstrap's cache key, and under the device's identity (productKey, deviceName),
 * which outlives a change of provisioning URL or data and `invalidate()`; a secret found there is used instead of
 * registering again (unless it is the one the broker has just refused). Should it not be storable, the boot fails
 * rather than connect with a secret it would lose (an unactivated device can still register again later). The
 * product secret is not kept. A renewal (`cache` false) leaves the cache key to the session, which writes it once the
 * broker has accepted the new secret: the identity entry holds it meanwhile.
 */
import { type DeviceConfig, frozenValidated, parseDeviceConfig } from '../contract.js'
import { secretsOf, withoutEchoes } from '../echoes.js'
import { RegistrationError } from '../errors.js'
import { noDeviceSecretError, noRegistration } from '../registration/strategy.js'
import { withRetry } from '../retry.js'
import { keyOf } from '../store/credential-store.js'
import { storeError } from './cache.js'
import { type BootContext, type FailureSink, retryLoop } from './context.js'

/** The device's secret for `provisioned` (an answer with a productSecret); see the module's comment. */
export async function register(
  context: BootContext,
  sink: FailureSink,
  provisioned: DeviceConfig,
  signal: AbortSignal | undefined,
  refused: DeviceConfig | undefined,
  cache = true,
): Promise<DeviceConfig> {
  const { options, seams, report } = context
  const { store, clock, registration: strategy } = seams
  const { productKey, deviceName, productSecret } = provisioned.device
  if (strategy === noRegistration) throw noDeviceSecretError(options.url)
  const identity = registrationKey(productKey, deviceName)
  const complete = (deviceSecret: unknown) =>
    parseDeviceConfig({
      device: { productKey, deviceName, deviceSecret, productSecret: null },
      connect: provisioned.connect,
    })
  /** A secret this device was issued before (by this process or another sharing the store), unless refused. */
  const earlier = async (): Promise<DeviceConfig | undefined> => {
    const entry = await store.get(identity).catch(() => undefined)
    const secret = entry?.config?.device?.deviceSecret
    if (typeof secret !== 'string' || secret === '' || secret === refused?.device.deviceSecret) return undefined
    const parsed = complete(secret)
    return parsed.ok ? frozenValidated(parsed.value) : undefined
  }
  let config = await earlier()
  let issued = false
  if (config === undefined) {
    if (store.persistent === false) report.registrationNote(productKey, deviceName, 'in-memory')
    config = await withRetry(
      async (attempt) => {
        // Another process sharing the store may have registered the device meanwhile.
        const found = attempt > 1 ? await earlier() : undefined
        if (found !== undefined) return found
        report.registering(strategy.name, productKey, deviceName, attempt)
        const answer = await strategy
          .register(
            { productKey, deviceName, productSecret: productSecret ?? '', host: provisioned.connect.host },
            { signal, now: () => clock.now() },
          )
          .catch((error: unknown) => {
            // The strategy knows the productSecret; the secret the broker refused is known here only.
            throw withoutEchoes(error, [productSecret, ...(refused === undefined ? [] : secretsOf(refused))])
          })
        const parsed = complete(answer?.deviceSecret)
        if (!parsed.ok || parsed.value.device.deviceSecret === '') {
          throw new RegistrationError('ERR_REGISTER_INVALID_RESPONSE', 'registration gave no usable deviceSecret', {
            transient: false,
          })
        }
        issued = true
        return frozenValidated(parsed.value)
      },
      retryLoop(context, 'register', sink, signal),
    )
  }
  if (issued) {
    try {
      await store.set(identity, { config, savedAt: clock.now() })
    } catch (cause) {
      throw storeError(
        cause,
        'cannot store the registered device secret; not connecting with a secret that would be lost',
      )
    }
  } else {
    report.registrationNote(productKey, deviceName, 'earlier')
  }
  if (cache) await cacheRegistered(context, config)
  if (issued) report.registered(strategy.name, productKey, deviceName)
  report.provisioned(config, 'server')
  return config
}

/** Where a registered device secret is kept besides the cache key: by the device's identity alone. */
function registrationKey(productKey: string, deviceName: string): string {
  return keyOf('urn:mqtt-bootstrap:registered', { productKey, deviceName })
}

/** Cache what registration gave: the identity entry holds it already, so a failure here is not fatal. */
async function cacheRegistered(context: BootContext, config: DeviceConfig): Promise<void> {
  const { options, seams, report, memory } = context
  try {
    await seams.store.set(options.cacheKey, { config, savedAt: seams.clock.now() })
    report.cache({ action: 'write', key: options.cacheKey })
    memory.stored = config
  } catch (cause) {
    // The identity entry holds it: the next boot finds it there.
    report.nonFatal(storeError(cause, 'cannot write the credential cache'))
  }
}
