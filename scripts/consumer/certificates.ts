/**
 * The `certificate` option's optional peer (issue 17), as a device app meets it: without `@peculiar/asn1-csr` a CSR
 * is a DependencyError naming the package (ESM and CJS builds); once the app installs it, both builds make a CSR.
 * Runs in the newest-mqtt app after its other checks, so the install budget is measured without the peer.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AppChecks } from './app.js'
import { npmInstall } from './app.js'
import { step } from './run.js'

const esm = `import { createCertificateRequest, createDeviceKey } from 'mqtt-bootstrap/contract'
try {
  console.log(createCertificateRequest(await createDeviceKey('p256')).split('\\n')[0])
} catch (error) {
  console.log(error.name, error.code, error.packageName)
}
`
const cjs = `const { createCertificateRequest, createDeviceKey } = require('mqtt-bootstrap/contract')
createDeviceKey('p256').then((key) => {
  try {
    console.log(createCertificateRequest(key).split('\\n')[0])
  } catch (error) {
    console.log(error.name, error.code, error.packageName)
  }
})
`
const MISSING = /^DependencyError ERR_DEPENDENCY_MISSING @peculiar\/asn1-csr$/m
const MADE = /^-----BEGIN CERTIFICATE REQUEST-----$/m

export async function checkCertificatePeer({ label, dir }: AppChecks, peerSpec: string): Promise<void> {
  await writeFile(join(dir, 'csr.mjs'), esm)
  await writeFile(join(dir, 'csr.cjs'), cjs)
  const run = (what: string, file: string, expect: RegExp) =>
    step(`${label}: ${what}`, process.execPath, [file], dir, { timeout: 30_000, expect })
  await run('without @peculiar/asn1-csr, ESM: a CSR is a DependencyError naming it', 'csr.mjs', MISSING)
  await run('without @peculiar/asn1-csr, CJS: a CSR is a DependencyError naming it', 'csr.cjs', MISSING)
  if (!(await npmInstall(`${label}: npm install ${peerSpec}`, dir, [peerSpec]))) return
  await run('with the peer, ESM: a PKCS#10 CSR', 'csr.mjs', MADE)
  await run('with the peer, CJS: a PKCS#10 CSR', 'csr.cjs', MADE)
}
