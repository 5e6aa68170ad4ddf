/**
 * Everything the README and the manual send a reader to exists: every relative link (and its #anchor, by GitHub's
 * heading slugs), every link to this repository on GitHub from the packages' READMEs (what npm shows), and every
 * repository path written in backticks (`examples/…`, `packages/…`, `docs/…`, `test/…`, `scripts/…`, `bench/…`).
 * Build output (`packages/<name>/dist/…`) is not in a clone: it must be in the package's published `files` instead.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative, resolve, sep } from 'node:path'
import { describe, expect, test } from 'vitest'

const ROOT = resolve(import.meta.dirname, '..')
/** What the packages' READMEs link to: the repository on GitHub (their package.json `repository`). */
const GITHUB = /^https:\/\/github\.com\/mqtt-bootstrap\/mqtt-bootstrap(?:\/(?:blob|tree)\/main\/([^#?]*))?(?:#(.*))?$/
const REPO_PATH = /(?:^|[\s(=[])((?:examples|packages|docs|test|scripts|bench)\/[^\s`'"),;\]]*)/g

interface Problem {
  file: string
  line: number
  what: string
}

/** The Markdown files checked: the README, docs/*.md and each package's README. */
function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => `docs/${name}`)
  const packages = readdirSync(join(ROOT, 'packages'))
    .map((name) => `packages/${name}/README.md`)
    .filter((path) => existsSync(join(ROOT, path)))
  return ['README.md', ...docs, ...packages]
}

/** Lines with fenced code blocks blanked (their `#` lines are not headings, their text not prose). */
function prose(text: string): string[] {
  let fenced = false
  return text.split('\n').map((line) => {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced
      return ''
    }
    return fenced ? '' : line
  })
}

/** GitHub's heading anchor: lower case, punctuation dropped (letters, digits, `_` and `-` kept), spaces to `-`. */
function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text
    .replace(/<[^>]+>/g, '')
    .trim()
    .toLowerCase()
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
}

/** The anchors of a Markdown text, numbered as GitHub numbers repeated headings (`x`, `x-1`, …). */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  for (const line of prose(text)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!heading?.[1]) continue
    const base = slug(heading[1])
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    result.add(count === 0 ? base : `${base}-${count}`)
  }
  return result
}

/**
 * The broken references of one Markdown text, whose repository path is `file`. `exists(path)` says whether a
 * repository path (relative to the root, `/`-separated) exists; `read(path)` gives a Markdown file's text.
 */
function check(
  file: string,
  text: string,
  exists: (path: string) => boolean,
  read: (path: string) => string,
): Problem[] {
  const problems: Problem[] = []
  const lines = prose(text)
  const target = (path: string, anchor: string | undefined, line: number, shown: string) => {
    if (path.startsWith('..') || path.startsWith('/')) {
      problems.push({ file, line, what: `${shown}: outside the repository` })
      return
    }
    if (path !== '' && !exists(path)) {
      problems.push({ file, line, what: `${shown}: no ${path}` })
      return
    }
    if (anchor === undefined || anchor === '') return
    const page = path === '' ? file : path
    if (!page.endsWith('.md')) return // an anchor into a file GitHub renders otherwise: not checked
    if (!anchors(read(page)).has(decodeURIComponent(anchor).toLowerCase())) {
      problems.push({ file, line, what: `${shown}: no heading #${anchor} in ${page}` })
    }
  }

  lines.forEach((content, index) => {
    const line = index + 1
    for (const [, href] of content.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      if (href === undefined) continue
      const github = GITHUB.exec(href)
      if (github) {
        // `#readme` is the repository's front page: README.md's own heading is not what it names.
        const anchor = github[2] === 'readme' ? undefined : github[2]
        target(
          normalize(github[1] ?? '')
            .replace(/\/$/, '')
            .replace(/^\.$/, ''),
          anchor,
          line,
          href,
        )
        continue
      }
      if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue // another site, mailto:
      const [path = '', anchor] = href.split('#')
      const resolved = path === '' ? '' : toRepoPath(join(dirname(file), decodeURIComponent(path)))
      target(resolved, anchor, line, href)
    }
    for (const [, span] of content.matchAll(/`([^`]+)`/g)) {
      for (const [, found] of (span ?? '').matchAll(REPO_PATH)) {
        const path = (found ?? '').replace(/[.:]+$/, '')
        if (/[*<>…{}$]|\.\.\./.test(path)) continue // a pattern or a placeholder, not a path
        const build = /^packages\/([^/]+)\/dist(\/|$)/.exec(path)
        if (build) {
          const manifest = `packages/${build[1]}/package.json`
          const files = exists(manifest) ? (JSON.parse(read(manifest)) as { files?: string[] }).files : undefined
          if (!files?.includes('dist')) problems.push({ file, line, what: `\`${path}\`: not published` })
          continue
        }
        if (!exists(path.replace(/\/$/, ''))) problems.push({ file, line, what: `\`${path}\`: no such path` })
      }
    }
  })
  return problems
}

/** A path relative to the root, `/`-separated; `..…` when it leaves the repository. */
function toRepoPath(path: string): string {
  return relative(ROOT, resolve(ROOT, path)).split(sep).join('/')
}

const onDisk = (path: string) => existsSync(join(ROOT, path))
const readRepo = (path: string) => (statSync(join(ROOT, path)).isFile() ? readFileSync(join(ROOT, path), 'utf8') : '')

describe('the README and docs/', () => {
  const files = markdownFiles()

  test('are all found (the README, the manual, the packages’ READMEs)', () => {
    expect(files).toEqual(expect.arrayContaining(['README.md', 'docs/api.md', 'docs/security.md']))
    expect(files.length).toBeGreaterThan(8)
  })

  test.each(files)('%s: every link, anchor and repository path resolves', (file) => {
    expect(check(file, readRepo(file), onDisk, readRepo)).toEqual([])
  })

  test('the README stays the front door: at most 400 lines', () => {
    expect(readRepo('README.md').split('\n').length).toBeLessThanOrEqual(400)
  })
})

describe('the checker', () => {
  const page = [
    '# Title',
    '## Migrating from `mqtt.connectAsync()`',
    '## Result codes of PointAccess.request()',
    '## Options',
    '## Options',
    '```sh',
    '# not a heading',
    'see `examples/in-a-code-block.ts`',
    '```',
  ].join('\n')
  const tree = new Set(['README.md', 'docs/a.md', 'examples/basic-device.ts', 'packages/x/package.json'])
  const read = (path: string) => (path === 'packages/x/package.json' ? '{"files":["src"]}' : page)
  const run = (text: string, file = 'docs/b.md') => check(file, text, (p) => tree.has(p), read)

  test('takes GitHub’s slugs: code spans, punctuation and repeated headings', () => {
    expect([...anchors(page)]).toEqual([
      'title',
      'migrating-from-mqttconnectasync',
      'result-codes-of-pointaccessrequest',
      'options',
      'options-1',
    ])
  })

  test('passes what resolves', () => {
    const good = [
      '[a](a.md) [b](a.md#options-1) [c](#result-codes-of-pointaccessrequest) [d](../README.md)',
      '![e](../examples/basic-device.ts) `examples/basic-device.ts` `npx tsx examples/basic-device.ts`',
      '[f](https://example.com/x) [g](https://github.com/mqtt-bootstrap/mqtt-bootstrap#readme)',
      '[h](https://github.com/mqtt-bootstrap/mqtt-bootstrap/blob/main/docs/a.md#title) `packages/*/dist/`',
    ].join('\n')
    expect(run(good)).toEqual([])
  })

  test('finds every kind of broken reference, with its line', () => {
    const bad = [
      '[missing file](nothere.md)',
      '[missing anchor](a.md#no-such-heading)',
      '[missing local anchor](#nope)',
      'run `examples/gone.ts` or `npm test -- test/gone.test.ts`',
      '[escapes](../../etc/passwd)',
      '[github](https://github.com/mqtt-bootstrap/mqtt-bootstrap/blob/main/docs/gone.md)',
      '`packages/x/dist/index.mjs`',
    ].join('\n')
    expect(run(bad).map((p) => [p.line, p.what])).toEqual([
      [1, 'nothere.md: no docs/nothere.md'],
      [2, 'a.md#no-such-heading: no heading #no-such-heading in docs/a.md'],
      [3, '#nope: no heading #nope in docs/b.md'],
      [4, '`examples/gone.ts`: no such path'],
      [4, '`test/gone.test.ts`: no such path'],
      [5, '../../etc/passwd: outside the repository'],
      [6, 'https://github.com/mqtt-bootstrap/mqtt-bootstrap/blob/main/docs/gone.md: no docs/gone.md'],
      [7, '`packages/x/dist/index.mjs`: not published'],
    ])
  })
})
