/**
 * The fleet chart: devices connected over time, and the provisioning server's requests per second, start-up
 * jitter off against on (the raw fleet as a reference). Plain SVG: two panels of polylines, axes and a legend.
 */
import type { FleetRun } from '../fleet.js'

const WIDTH = 760
const PANEL = 220
const MARGIN = { left: 64, right: 16, top: 34, bottom: 36 }
const COLORS: Record<FleetRun['kind'], string> = {
  raw: '#888888',
  'hand-rolled': '#e09f3e',
  'jitter-off': '#d1495b',
  'jitter-on': '#2e86ab',
}
const LEGEND_ROW = 18
const TICK_S = 0.1

export function fleetChart(runs: FleetRun[]): string {
  const devices = Math.max(...runs.map((run) => run.devices))
  const shown = runs.filter((run) => run.devices === devices)
  const seconds = Math.max(...shown.map((run) => run.connectedOverTime.length)) * TICK_S
  // Requests per second over the last second (a sliding window of ten ticks): per-tick counts are too spiky to read.
  const rate = (run: FleetRun) =>
    run.requestsOverTime.map((_, i, counts) => counts.slice(Math.max(0, i - 9), i + 1).reduce((a, b) => a + b, 0))
  const provisioned = shown.filter((run) => run.kind !== 'raw')
  const peak = Math.max(1, ...provisioned.flatMap(rate))
  const height = MARGIN.top + 2 * (PANEL + MARGIN.bottom + MARGIN.top) + 10 + LEGEND_ROW
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>Fleet power-on of ${devices} devices: connected devices and provisioning requests per second over time</title>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    panel(
      0,
      `Fleet power-on, ${devices} devices: connected devices`,
      seconds,
      devices,
      shown.map((run) => [run, run.connectedOverTime] as const),
    ),
    panel(
      PANEL + MARGIN.bottom + MARGIN.top,
      'Provisioning server: requests per second',
      seconds,
      peak,
      provisioned.map((run) => [run, rate(run)] as const),
    ),
    legend(shown),
    '</svg>',
  ]
  return `${parts.join('\n')}\n`
}

function panel(
  offset: number,
  title: string,
  seconds: number,
  maxY: number,
  series: ReadonlyArray<readonly [FleetRun, number[]]>,
): string {
  const top = MARGIN.top + offset
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right
  const x = (s: number) => MARGIN.left + (s / seconds) * plotWidth
  const y = (v: number) => top + PANEL - (v / maxY) * PANEL
  const out = [`<text x="${MARGIN.left}" y="${top - 12}" font-size="14" font-weight="bold">${title}</text>`]
  out.push(
    `<line x1="${MARGIN.left}" y1="${top + PANEL}" x2="${WIDTH - MARGIN.right}" y2="${top + PANEL}" stroke="#333"/>`,
  )
  out.push(`<line x1="${MARGIN.left}" y1="${top}" x2="${MARGIN.left}" y2="${top + PANEL}" stroke="#333"/>`)
  for (let i = 0; i <= 4; i++) {
    const value = (maxY * i) / 4
    out.push(`<text x="${MARGIN.left - 6}" y="${y(value) + 4}" text-anchor="end">${Math.round(value)}</text>`)
    out.push(`<line x1="${MARGIN.left}" y1="${y(value)}" x2="${WIDTH - MARGIN.right}" y2="${y(value)}" stroke="#eee"/>`)
  }
  const step = seconds > 20 ? 5 : seconds > 8 ? 2 : 1
  for (let s = 0; s <= seconds; s += step) {
    out.push(`<text x="${x(s)}" y="${top + PANEL + 16}" text-anchor="middle">${s} s</text>`)
  }
  for (const [run, values] of series) {
    const points = values.map((v, i) => `${x(i * TICK_S).toFixed(1)},${y(v).toFixed(1)}`).join(' ')
    out.push(`<polyline fill="none" stroke="${COLORS[run.kind]}" stroke-width="1.8" points="${points}"/>`)
  }
  return out.join('\n')
}

function legend(runs: FleetRun[]): string {
  const labels: Record<FleetRun['kind'], string> = {
    raw: 'raw mqtt.js, credentials in hand',
    'hand-rolled': 'hand-rolled fetch + mqtt.js, no library',
    'jitter-off': 'mqtt-bootstrap, start-up jitter off',
    'jitter-on': 'mqtt-bootstrap, start-up jitter on',
  }
  return runs
    .map((run, i) => {
      const x = MARGIN.left + (i % 2) * 330
      const y = MARGIN.top + 2 * (PANEL + MARGIN.bottom + MARGIN.top) - 8 + Math.floor(i / 2) * LEGEND_ROW
      return `<rect x="${x}" y="${y - 6}" width="14" height="4" fill="${COLORS[run.kind]}"/><text x="${x + 20}" y="${y}">${labels[run.kind]}</text>`
    })
    .join('\n')
}
