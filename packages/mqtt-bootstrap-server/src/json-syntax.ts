/**
 * Where a JSON text's first syntax error is, without quoting the text (a device registry holds secrets): V8's
 * messages quote the text around the error, and give no position for most errors.
 */

/** 1-based line and column (in UTF-16 units) of `offset` in `text`. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let start = 0
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++
    start = i + 1
  }
  return { line, column: offset - start + 1 }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y

/**
 * Where the first syntax error of `text` is (its length when the text ends too early), by a scan of the JSON grammar
 * without recursion (a deeply nested file cannot overflow the stack). V8's messages give no position for most errors
 * (`Unexpected token`), and quote the text: the position is found here instead.
 */
export function syntaxErrorOffset(text: string): number {
  const open: string[] = [] // the closing bracket of each container the scan is in
  let i = 0
  const skipSpace = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++
  }
  /** Past a string at i; false at an error (i is then where it is). */
  const string = (): boolean => {
    if (text[i] !== '"') return false
    i++
    while (i < text.length) {
      const c = text.charCodeAt(i)
      if (c === 0x22) {
        i++
        return true
      }
      if (c < 0x20) return false
      if (c === 0x5c) {
        ESCAPE.lastIndex = i
        if (!ESCAPE.test(text)) return false
        i = ESCAPE.lastIndex
      } else i++
    }
    return false
  }
  /** Past a string, number or literal at i; false at an error. */
  const scalar = (): boolean => {
    if (text[i] === '"') return string()
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, i)) {
        i += literal.length
        return true
      }
    }
    NUMBER.lastIndex = i
    if (!NUMBER.test(text)) return false
    i = NUMBER.lastIndex
    return true
  }
  let next: 'value' | 'member' | 'after' = 'value'
  for (;;) {
    if (next === 'after') {
      skipSpace()
      const close = open.at(-1)
      if (close === undefined) return i // a complete value, then more text (or the end: nothing was wrong)
      if (text[i] === close) {
        open.pop()
        i++
      } else if (text[i] === ',') {
        i++
        next = close === '}' ? 'member' : 'value'
      } else return i
      continue
    }
    skipSpace()
    if (next === 'member') {
      if (!string()) return i
      skipSpace()
      if (text[i] !== ':') return i
      i++
      skipSpace()
    }
    const c = text[i]
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']'
      i++
      skipSpace()
      if (text[i] === close) {
        i++
        next = 'after'
      } else {
        open.push(close)
        next = close === '}' ? 'member' : 'value'
      }
    } else if (scalar()) next = 'after'
    else return i
  }
}
