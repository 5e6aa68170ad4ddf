#!/usr/bin/env node
/**
 * The `mqtt-bootstrap` command (commander): provision, check, serve, demo, keys, registry. Exit codes are in io.ts (EXIT) and the
 * README. Secrets are printed only with --show-secrets.
 */
import { basename } from 'node:path'
import { Command, CommanderError, Option } from 'commander'
import { InvalidOptionError } from 'mqtt-bootstrap'
// Bundled into dist/cli.mjs by the build, read from the checkout under tsx: right in both places.
import packageJson from '../../package.json' with { type: 'json' }
import { checkCommand } from './check.js'
import { runDemo } from './demo.js'
import { collectHeader, EXIT, UsageError } from './io.js'
import { addKeysCommands } from './keys.js'
import { provisionCommand } from './provision.js'
import { addRegistryCommands } from './registry.js'
import { serveCommand } from './serve.js'

const { version } = packageJson

/** The package's bins, both this file: usage names the one the operator typed. */
const BINS = ['mqtt-bootstrap', 'mqtt-bootstrap-server']

/** `mqtt-bootstrap-server` when run as that bin; `mqtt-bootstrap` otherwise (`node dist/cli.mjs`, tsx, a .cmd shim). */
function programName(script: string | undefined): string {
  const name = basename(script ?? '').replace(/\.(?:[cm]?js|ts|cmd|ps1)$/i, '')
  return BINS.includes(name) ? name : 'mqtt-bootstrap'
}

function program(): Command {
  const cli = new Command(programName(process.argv[1]))
    .description('Provision IoT device credentials over HTTPS, check provisioning servers, run a reference one.')
    .version(version)
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')

  const transport = (command: Command) =>
    command
      .option('--ca <file>', 'CA certificate(s) to trust for the server (PEM)')
      .option('--cert <file>', 'client certificate for mutual TLS (PEM)')
      .option('--key <file>', 'client private key for mutual TLS (PEM)')
      .option('--header <name:value>', 'extra request header (repeatable)', collectHeader)
      .option('--timeout <ms>', 'per-request timeout in ms')

  transport(
    cli
      .command('provision')
      .description('make one PointAccess request and print the result code and the configuration')
      .argument('<url>', 'the provisioning server, https://…')
      .requiredOption('--data <json>', 'what identifies the device, as JSON')
      .option('--allow-insecure-http', 'allow an http:// URL (tests only)')
      .option('--key-file <file>', 'sign the claim with the device key in this file (base64, mode 0600; - reads stdin)')
      .option('--key-id <id>', 'the key id it signs with (default: the value of --data, when it has one field)')
      .option('--show-secrets', 'print deviceSecret and productSecret instead of [redacted]')
      .option('--json', 'print JSON'),
  )
    .addHelpText(
      'after',
      '\nExit codes: 0 "00000", 2 usage, 3 "77777" (transient), 4 "99999" (invalid answer), 5 refused,\n' +
        '6 an HTTP status outside the contract (404, 403, a redirect: not a provisioning endpoint?),\n' +
        '7 TLS verification failed (a private CA: --ca <file>).',
    )
    .action(async (url: string, flags) => {
      process.exitCode = await provisionCommand(url, flags)
    })

  transport(
    cli
      .command('check')
      .description("check a provisioning server's conformance to the contract, check by check")
      .argument('<url>', 'the provisioning server, https://…')
      .requiredOption('--data <json>', 'identity of a device the server knows, as JSON')
      .option('--unknown-data <json>', 'identity of a device the server must refuse (default: a random IMEI)')
      .option('--max-latency <ms>', 'the longest acceptable answer for the known device, TLS included', '2000')
      .option('--key-file <file>', "sign the known device's claims with its key (base64, mode 0600; - reads stdin)")
      .option('--key-id <id>', 'the key id it signs with (default: the value of --data, when it has one field)')
      .option('--group-key-file <file>', "derive the device's key from the group key (mode 0600; - reads stdin)")
      .option('--certificate', "send a CSR with the known device's claim and check the certificate answered")
      .option('--json', 'print the report as JSON'),
  )
    .addHelpText(
      'after',
      [
        '',
        "With a device key (--key-file, or --group-key-file to derive it and another device's) the known device's",
        'claim is signed, and the checker also tries an unsigned claim, the same signed request twice, a body changed',
        'after signing and another device\'s key: each must be refused ("10004"/"10005", HTTP 401).',
        '',
        "With --certificate the known device's claim carries a CSR (a P-256 key made for the check, as the device's",
        'certificate option sends it; --data must be an object): its certificate must be for that key, CN the',
        "answer's deviceName, not a CA, and chain to the CA sent after it; a CSR with a broken signature must be refused.",
        '',
        'Exit codes: 0 conforms (warnings allowed), 1 a check failed, 2 usage (bad arguments, an unreadable key file).',
      ].join('\n'),
    )
    .action(async (url: string, flags) => {
      process.exitCode = await checkCommand(url, flags)
    })

  cli
    .command('serve')
    .description('run the reference provisioning server over a device registry file or database, over HTTPS')
    .option(
      '--registry <file>',
      'the device registry (JSON: https://github.com/mqtt-bootstrap/mqtt-bootstrap/blob/main/docs/provisioning-server.md)',
    )
    .option('--database <url>', 'or the PostgreSQL registry, postgres://user@host:port/database (see registry --help)')
    .option('--group-key-file <file>', "with --database: claims signed with this group key's keys (mode 0600)")
    .option(
      '--identity <field>',
      "with --database: the request's field naming the device (default: the database's, imei)",
    )
    .addOption(
      new Option('--attestation <none>', 'with --database: claims NOT authenticated (instead of a group key)').choices([
        'none',
      ]),
    )
    .addOption(
      new Option('--claims <who>', 'with --database: who gets a triplet (any-signed: every signed claim)').choices([
        'allow-list',
        'any-signed',
      ]),
    )
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free one)', '8443')
    .option('--path <path>', 'URL path of the provisioning endpoint', '/bootstrap')
    .option('--cert <file>', 'server certificate (PEM); without it one is generated with its own CA')
    .option('--key <file>', 'server private key (PEM)')
    .addOption(
      new Option('--ca-out <file>', 'the generated CA for clients (kept: a restart reuses it)').default(
        'mqtt-bootstrap-ca.pem',
      ),
    )
    .option('--ca-key <file>', "the generated CA's private key, mode 0600 (default: <ca-out>.key)")
    .option('--san <name>', 'another name or address for the generated certificate (repeatable)', collect, [])
    .option(
      '--origin <url>',
      'the public origin devices sign claims for, behind a proxy (e.g. https://provision.example.com)',
    )
    .option(
      '--trust-proxy <cidr>',
      'a proxy (address or CIDR) whose X-Forwarded-For names the client, for the abuse limits (repeatable)',
      collect,
      [],
    )
    .option(
      '--client-ca <file>',
      "factory CA certificate(s) (PEM): a device's mutual-TLS client certificate from it, naming its identity in its CN, proves its claim",
    )
    .option('--no-limits', 'turn off the abuse limits on failed claims (429 past 10 a minute per address or identity)')
    .option('--issuing-ca <file>', "issue certificates for devices' CSRs with this CA certificate (PEM; or a chain)")
    .option('--issuing-key <file>', "the issuing CA's private key (PEM, mode 0600)")
    .option(
      '--certificate-validity <seconds>',
      'how long an issued certificate is valid (default: 2592000, 30 days; never past the CA)',
    )
    .addHelpText(
      'after',
      [
        '',
        'Without --cert, the CA is generated on the first start and written, once the server listens, to --ca-out',
        'and --ca-key; later starts reuse it (devices that trust it keep working). Nothing is ever overwritten.',
        '',
        'One line per request on stdout: time peer method path status code identity, e.g.',
        '  2026-05-04T10:00:00.000Z 127.0.0.1 POST /bootstrap 200 00000 8600…(15)',
        "(identity: the registry's match fields, first 4 characters and length); failed TLS handshakes as",
        '  2026-05-04T10:00:01.000Z 127.0.0.1 TLS handshake failed (<reason>)',
        '',
        'With --database, serve makes or updates its tables, takes the attestation, the broker and who may claim from',
        'it (registry configure; the options above win), and keeps nonces, limits and re-claims there, so that several',
        'serve processes on one database answer as one. The database gone later: devices get "77777", HTTP 503 and',
        'Retry-After, and serve goes on (and serves again once it is back).',
        '',
        'With --issuing-ca and --issuing-key, a claim that carries "csr" (a PEM PKCS#10 request for a P-256 or RSA',
        '2048+ key) is answered device.certificate too: CN the deviceName, a client certificate, never a CA. An unusable',
        'CSR is refused "10008" before the registry is asked.',
        '',
        'Exit codes: 0 stopped by SIGINT/SIGTERM, 1 could not listen (a busy port), write the CA or reach the database,',
        '2 usage, a bad registry (or one that declares no "attestation"), a database with no attestation or broker',
        'configured, a bad --cert/--key/--client-ca/--group-key-file/--issuing-ca/--issuing-key (also a key file others',
        'can read), or a CA file without its key.',
      ].join('\n'),
    )
    .action(async (flags) => {
      process.exitCode = await serveCommand(flags)
    })

  cli
    .command('demo')
    .description('provisioning server, broker and device boot on 127.0.0.1, then an offline boot from the cache')
    .addHelpText('after', '\nExit codes: 0 every step worked, 1 otherwise. Needs the aedes package.')
    .action(async () => {
      process.exitCode = await runDemo()
    })

  addKeysCommands(cli)
  addRegistryCommands(cli)
  return cli
}

async function main(argv: string[]): Promise<void> {
  // `mqtt-bootstrap serve --help | head`: a reader that went away is the end of the output, not a crash.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK)
      process.exit(EXIT.FAILED) // an output that cannot be written to: nothing more can be said there
    })
  }
  try {
    await program().parseAsync(argv)
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      process.exitCode = error.exitCode === 0 ? EXIT.OK : EXIT.USAGE
    } else if (error instanceof UsageError || error instanceof InvalidOptionError) {
      // The library's own bad-option errors name the option.
      console.error(`error: ${error.message}`)
      process.exitCode = EXIT.USAGE
    } else {
      console.error(`error: ${(error as Error).message}`)
      process.exitCode = EXIT.FAILED
    }
  }
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value]
}

// Bounded: a one-shot command ends within its own timeouts; this is the backstop (serve runs until a signal).
const command = process.argv[2]
if (command !== 'serve') {
  setTimeout(() => {
    console.error('error: gave up after 5 minutes')
    process.exit(EXIT.FAILED)
  }, 300_000).unref()
}

main(process.argv).then(() => {
  // The process ends by itself once its sockets are closed; should one linger (an idle keep-alive), do not wait.
  setTimeout(() => process.exit(), 1000).unref()
})
