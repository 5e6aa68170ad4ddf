/** A throwaway CA and the certificates the tests need, signed by it (EC keys: generated in milliseconds). */
import { generate } from 'selfsigned'

export interface TlsFixture {
  /** The CA certificate a client trusts. */
  ca: string
  /** Server certificate for 127.0.0.1, ::1, localhost and provision.test. */
  cert: string
  key: string
  /** Server certificate for another name only (wrong.example). */
  wrongHost: { cert: string; key: string }
  /** A client certificate for mutual TLS. */
  client: { cert: string; key: string }
  /** A server certificate for `*.fleet.test` only (a wildcard). */
  wildcard: { cert: string; key: string }
}

const ec = { keyType: 'ec', algorithm: 'sha256' } as const

async function leaf(
  ca: { key: string; cert: string },
  cn: string,
  altNames: Array<{ type: 2; value: string } | { type: 7; ip: string }>,
) {
  const pems = await generate([{ name: 'commonName', value: cn }], {
    ...ec,
    ca,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  })
  return { cert: pems.cert, key: pems.private }
}

let fixture: Promise<TlsFixture> | undefined

export function tlsFixture(): Promise<TlsFixture> {
  fixture ??= (async () => {
    const root = await generate([{ name: 'commonName', value: 'mqtt-bootstrap test CA' }], {
      ...ec,
      extensions: [
        { name: 'basicConstraints', cA: true, critical: true },
        { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      ],
    })
    const ca = { key: root.private, cert: root.cert }
    const server = await leaf(ca, 'localhost', [
      { type: 2, value: 'localhost' },
      { type: 2, value: 'provision.test' }, // a name only a proxy can resolve (test/proxy.test.ts)
      { type: 7, ip: '127.0.0.1' },
      { type: 7, ip: '127.0.0.2' }, // a loopback address that NO_PROXY decides about (test/proxy.test.ts)
      { type: 7, ip: '::1' },
    ])
    const wrongHost = await leaf(ca, 'wrong.example', [{ type: 2, value: 'wrong.example' }])
    const client = await leaf(ca, 'device-001', [{ type: 2, value: 'device-001' }])
    const wildcard = await leaf(ca, '*.fleet.test', [{ type: 2, value: '*.fleet.test' }])
    return { ca: root.cert, ...server, wrongHost, client, wildcard }
  })()
  return fixture
}
