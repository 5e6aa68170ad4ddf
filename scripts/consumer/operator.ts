/**
 * The operator's side, from the server tarball: `npx mqtt-bootstrap-server serve …` in an empty directory (no
 * package.json, nothing installed), and both bins of an installed server tarball.
 *
 * `mqtt-bootstrap-server` depends on `mqtt-bootstrap` at exactly its own version. Until both are published, npx finds
 * that version only when the device tarball is named beside the server's: `npx --package <server.tgz> --package
 * <device.tgz> …` installs both into one npx project, where the device package satisfies the server's dependency.
 * (The server tarball alone fails with E404 for mqtt-bootstrap@<version>.) Once published, `npx mqtt-bootstrap-server`.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { execute, fail, INSTALL_FLAGS, pass, type Service, startService, step, verdict } from './run.js'

const OPERATOR_DEVICE = {
  productKey: 'a1OperatorPK',
  deviceName: 'operator-1',
  deviceSecret: 'operator-secret-0001',
}

export interface Tarballs {
  device: string
  server: string
}

/** `npx -y --package <server> --package <device> <bin> …args`, as an operator runs it. */
function npx(tarballs: Tarballs, bin: string, args: readonly string[]): [string, string[]] {
  const packages = ['--package', tarballs.server, '--package', tarballs.device]
  return ['npx', ['-y', ...INSTALL_FLAGS, ...packages, bin, ...args]]
}

/** npx's projects (in npm's cache, `_npx/<hash>`) made for these tarballs: removed at the end, like the temp dirs. */
export async function removeNpxProjects(work: string): Promise<void> {
  const cache = (await execute('npm', ['config', 'get', 'cache'], work, 30_000)).stdout.trim()
  if (cache === '') return
  const root = join(cache, '_npx')
  for (const hash of await readdir(root).catch(() => [] as string[])) {
    const manifest = await readFile(join(root, hash, 'package.json'), 'utf8').catch(() => '')
    if (manifest.includes(work)) await rm(join(root, hash), { recursive: true, force: true })
  }
}

/** Whether 127.0.0.1:port refuses a TCP connection (nothing listens any more); 5 s at most. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 5_000 })
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

export async function checkNpx(work: string, tarballs: Tarballs): Promise<void> {
  const empty = join(work, 'operator-empty')
  const files = join(work, 'operator-files')
  await mkdir(empty)
  await mkdir(files)
  const registry = join(files, 'devices.json')
  const ca = join(files, 'ca.pem')
  await writeFile(
    registry,
    JSON.stringify({
      version: 1,
      attestation: 'none', // unsigned claims: serve refuses a registry that does not say
      defaults: { connect: { host: 'mqtts://broker.example.com:8883', qos: 1, cleanSession: 1 } },
      devices: [{ match: { imei: '860000000000042' }, device: OPERATOR_DEVICE }],
    }),
  )
  const [command, help] = npx(tarballs, 'mqtt-bootstrap-server', ['serve', '--help'])
  const helped = await step('npx (empty dir): mqtt-bootstrap-server serve --help', command, help, empty, {
    timeout: 180_000,
    expect: /--registry <file>[\s\S]*--port <port>/,
  })
  if (helped === undefined) return

  const serveName = 'npx (empty dir): mqtt-bootstrap-server serve on 127.0.0.1, a free port'
  const started = Date.now()
  let server: Service
  const [, serveArgs] = npx(tarballs, 'mqtt-bootstrap-server', [
    'serve',
    '--registry',
    registry,
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--ca-out',
    ca,
  ])
  try {
    const listening = /listening on (https:\/\/127\.0\.0\.1:(\d+)\/bootstrap)/
    server = await startService(command, serveArgs, empty, listening, { timeout: 120_000, group: true })
  } catch (error) {
    fail(serveName, (error as Error).message)
    return
  }
  pass(serveName, started)
  const url = server.ready[1] ?? ''
  try {
    const [, known] = npx(tarballs, 'mqtt-bootstrap', ['provision', url, '--data', '{"imei":"860000000000042"}'])
    const out = await step(
      'npx: mqtt-bootstrap provision against it (--ca, the CA serve wrote)',
      command,
      [...known, '--ca', ca, '--json'],
      empty,
      { timeout: 60_000, expect: /"code": "00000"[\s\S]*"deviceName": "operator-1"/ },
    )
    if (out?.includes(OPERATOR_DEVICE.deviceSecret)) fail('npx: provision output', 'the device secret was printed')

    const refusedAt = Date.now()
    const [, unknown] = npx(tarballs, 'mqtt-bootstrap', ['provision', url, '--data', '{"imei":"1"}', '--ca', ca])
    const refused = await execute(command, unknown, empty, 60_000)
    verdict(
      'npx: mqtt-bootstrap provision of an unknown device is refused (exit 5)',
      refusedAt,
      refused.exit === 5 ? undefined : `exit ${refused.exit}\n${refused.stdout}${refused.stderr}`,
    )
  } finally {
    const stoppingAt = Date.now()
    const code = await server.stop()
    const log = server.output()
    const closed = await refused(Number(server.ready[2]))
    const problems = [
      server.forced() ? 'something of it was still running 5 s after SIGTERM (killed)' : undefined,
      closed ? undefined : 'its port still accepts connections',
      /SIGTERM: stopping/.test(log) ? undefined : 'it did not say it was stopping',
      /POST \/bootstrap 200 00000/.test(log) && /POST \/bootstrap 200 10001/.test(log)
        ? undefined
        : 'its access log lacks the two requests',
    ].filter((problem) => problem !== undefined)
    verdict(
      'npx: serve stops on SIGTERM (to its process group, as Ctrl-C) and logged both requests',
      stoppingAt,
      problems.length === 0 ? undefined : `${problems.join('; ')}\n${log}`,
      `npx exited ${code}`,
    )
  }
  const [, demo] = npx(tarballs, 'mqtt-bootstrap-server', ['demo'])
  await step('npx (empty dir): mqtt-bootstrap-server demo', command, demo, empty, {
    timeout: 120_000,
    expect: /demo finished: every step worked/,
  })
  const left = await readdir(empty)
  verdict('npx: the operator dir is still empty', Date.now(), left.length === 0 ? undefined : left.join(', '))
}

/** `mqtt-bootstrap` and `mqtt-bootstrap-server` from an installed server tarball: --help, --version, demo. */
export async function checkBins(serverApp: string, version: string): Promise<void> {
  for (const bin of ['mqtt-bootstrap', 'mqtt-bootstrap-server']) {
    const path = join(serverApp, 'node_modules', '.bin', bin)
    await step(`installed server tarball: ${bin} --help`, path, ['--help'], serverApp, {
      timeout: 30_000,
      expect: /provision[\s\S]*check[\s\S]*serve[\s\S]*demo/,
    })
    await step(`installed server tarball: ${bin} --version`, path, ['--version'], serverApp, {
      timeout: 30_000,
      expect: new RegExp(`^${version.replaceAll('.', '\\.')}\\s*$`),
    })
    await step(`installed server tarball: ${bin} demo`, path, ['demo'], serverApp, {
      timeout: 60_000,
      expect: /demo finished: every step worked/,
    })
  }
}
