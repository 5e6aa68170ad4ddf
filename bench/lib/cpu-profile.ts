/**
 * Where a cached boot's CPU goes: V8's sampling profiler over many boots, each sample charged to the innermost frame
 * of mqtt-bootstrap's build on its stack (with what that frame called: Node, crypto, EventEmitter), mapped back to
 * src/ through the build's source maps. mqtt.js's own connect work (below our connector's call to mqtt.connect,
 * which raw `mqtt.connectAsync()` does too) is set apart, and so are samples with no frame of ours (socket I/O,
 * mqtt.js parsing the CONNACK, the broker, GC): the same profile of a raw loop shows how much of those is common.
 */
import { readFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { SourceMap } from 'node:module'
import { fileURLToPath } from 'node:url'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
  columnNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}
export interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

/** Profile `count` runs of `run` (sampling every `intervalUs`). */
export async function profileRuns(run: () => Promise<unknown>, count: number, intervalUs = 100): Promise<CpuProfile> {
  const session = new Session()
  session.connect()
  try {
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: intervalUs })
    await session.post('Profiler.start')
    for (let i = 0; i < count; i++) await run()
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: CpuProfile }
    return profile
  } finally {
    session.disconnect()
  }
}

const OURS = /\/mqtt-bootstrap\/dist\//
const PACKAGE = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//

export interface Frame {
  /** Function (src/file.ts:line), or a bucket name for work outside our code. */
  name: string
  /** µs per run. */
  us: number
  share: number
}

export interface Attribution {
  runs: number
  /** µs of CPU per run, idle excluded. */
  totalUs: number
  /** Charged to our code (innermost frame of ours, its callees included), µs per run. */
  oursUs: number
  /** mqtt.js's work inside mqtt.connect(), called by our connector as raw connectAsync calls it (raw: by connectAsync). */
  mqttConnectUs: number
  /** Our frames by self time (their non-ours callees included). */
  self: Frame[]
  /** Our frames by inclusive time (our callees included, mqtt.connect excluded). */
  inclusive: Frame[]
  /** Samples with no frame of ours: by the innermost package on the stack, else Node or V8's bucket. */
  outside: Frame[]
}

/** Charge every sample of `profiles` (see the module comment); `runs` in all of them together. */
export function attribute(profiles: CpuProfile[], runs: number, top = 20): Attribution {
  const names = new SourceNames()
  const self = new Map<string, number>()
  const inclusive = new Map<string, number>()
  const outside = new Map<string, number>()
  const add = (map: Map<string, number>, key: string, us: number) => map.set(key, (map.get(key) ?? 0) + us)
  let total = 0
  let ours = 0
  let mqttConnect = 0
  for (const profile of profiles) {
    const parent = new Map<number, number>()
    const byId = new Map<number, ProfileNode>()
    for (const node of profile.nodes) {
      byId.set(node.id, node)
      for (const child of node.children ?? []) parent.set(child, node.id)
    }
    profile.samples.forEach((id, i) => {
      const us = profile.timeDeltas[i + 1] ?? profile.timeDeltas[i] ?? 0
      const stack: CallFrame[] = [] // leaf first
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frame = byId.get(at)?.callFrame
        if (frame !== undefined && frame.functionName !== '(root)') stack.push(frame)
      }
      const leaf = stack[0]
      if (leaf?.functionName === '(idle)') return
      total += us
      const innermost = stack.findIndex((frame) => OURS.test(frame.url))
      if (innermost === -1 && stack.some(isMqttConnect)) {
        mqttConnect += us // raw connectAsync's own call
        return
      }
      if (innermost === -1) {
        const pkg = stack.map((frame) => PACKAGE.exec(frame.url)?.[1]).find((name) => name !== undefined)
        const bucket = pkg ?? (leaf?.functionName.startsWith('(') ? leaf.functionName : '(node, no package frame)')
        add(outside, bucket, us)
        return
      }
      // mqtt.connect() itself, called from our code: what raw connectAsync pays too.
      const below = stack[innermost - 1]
      if (below !== undefined && isMqttConnect(below)) {
        mqttConnect += us
        return
      }
      ours += us
      add(self, names.of(stack[innermost] as CallFrame), us)
      const seen = new Set<string>()
      for (const frame of stack.slice(innermost)) {
        if (!OURS.test(frame.url)) continue
        const name = names.of(frame)
        if (!seen.has(name)) add(inclusive, name, us)
        seen.add(name)
      }
    })
  }
  const frames = (map: Map<string, number>, n: number) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, us: round(us / runs), share: round(us / total, 3) }))
  return {
    runs,
    totalUs: round(total / runs),
    oursUs: round(ours / runs),
    mqttConnectUs: round(mqttConnect / runs),
    self: frames(self, top),
    inclusive: frames(inclusive, top),
    outside: frames(outside, 12),
  }
}

/** mqtt.js's connect() (build/lib/connect/index.js), which both connectProvisioned and connectAsync call. */
const isMqttConnect = (frame: CallFrame) =>
  frame.functionName === 'connect' && /\/node_modules\/mqtt\/build\/lib\/connect\/index\.js$/.test(frame.url)

const round = (value: number, digits = 1) => Number(value.toFixed(digits))

/** `function (src/file.ts:line)` for a frame of the build, through its source map (read once per file). */
class SourceNames {
  readonly #maps = new Map<string, SourceMap | undefined>()

  of(frame: CallFrame): string {
    const name = frame.functionName || '(anonymous)'
    const map = this.#mapOf(frame.url)
    const entry = map?.findEntry(frame.lineNumber, frame.columnNumber) as
      | { originalSource?: string; originalLine?: number }
      | undefined
    if (entry?.originalSource === undefined)
      return `${name} (${frame.url.replace(/.*\/dist\//, 'dist/')}:${frame.lineNumber + 1})`
    const source = entry.originalSource.replace(/.*?\/src\//, 'src/')
    return `${name} (${source}:${(entry.originalLine ?? 0) + 1})`
  }

  #mapOf(url: string): SourceMap | undefined {
    if (!this.#maps.has(url)) {
      try {
        this.#maps.set(url, new SourceMap(JSON.parse(readFileSync(`${fileURLToPath(url)}.map`, 'utf8'))))
      } catch {
        this.#maps.set(url, undefined)
      }
    }
    return this.#maps.get(url)
  }
}

/** A table of frames for the console. */
export function frameLines(frames: Frame[]): string {
  return frames
    .map((f) => `${f.us.toFixed(1).padStart(7)} µs  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`)
    .join('\n')
}
