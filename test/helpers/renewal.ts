/**
 * Helpers of the renewal tests (issue 18), shared by the certificate's (test/certificates-renewal.test.ts) and the
 * secret's (test/secret-renewal.slow.test.ts): wait for one event within a bound.
 */
import type { BootstrapEvents, MqttBootstrap } from '../../packages/mqtt-bootstrap/src/index.js'

/** The next `name` event (matching `accept`), or a failure after `timeoutMs`: no test waits forever. */
export function next<K extends keyof BootstrapEvents>(
  bootstrap: MqttBootstrap,
  name: K,
  accept: (event: Parameters<BootstrapEvents[K]>[0]) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<Parameters<BootstrapEvents[K]>[0]> {
  return new Promise((resolve, reject) => {
    const listener = (event: Parameters<BootstrapEvents[K]>[0]) => {
      if (!accept(event)) return
      clearTimeout(timer)
      bootstrap.off(name, listener as never)
      resolve(event)
    }
    const timer = setTimeout(() => {
      bootstrap.off(name, listener as never)
      reject(new Error(`no ${name} event in ${timeoutMs} ms`))
    }, timeoutMs)
    bootstrap.on(name, listener as never)
  })
}
