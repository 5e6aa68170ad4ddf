/**
 * CSV as RFC 4180 has it, for `keys derive --csv`: comma-separated fields, a field in double quotes may hold commas,
 * line breaks and `""` (one quote); CRLF or LF line ends; a UTF-8 byte order mark at the start is dropped. Strict: a
 * quote inside an unquoted field, text after a closing quote, or a quote left open is an error naming the line, since
 * a list of identities that half-parses gives devices keys for identities they do not have.
 */
import { UsageError } from './io.js'

export interface CsvRecord {
  /** The line the record starts on, from 1 (a quoted field may run over several lines). */
  line: number
  fields: string[]
}

/** Every record of `text`, empty lines left out. Throws a UsageError naming `source` and the line. */
export function parseCsv(text: string, source: string): CsvRecord[] {
  const input = text.startsWith('\uFEFF') ? text.slice(1) : text
  const records: CsvRecord[] = []
  let line = 1
  let i = 0
  while (i < input.length) {
    const start = line
    const from = i
    const fields: string[] = []
    for (;;) {
      let field = ''
      if (input[i] === '"') {
        i++
        for (;;) {
          const quote = input.indexOf('"', i)
          if (quote === -1) throw new UsageError(`${source} line ${start}: a quoted field is never closed`)
          field += input.slice(i, quote)
          i = quote + 1
          if (input[i] !== '"') break
          field += '"'
          i++
        }
        for (const c of field) if (c === '\n') line++
        if (i < input.length && input[i] !== ',' && input[i] !== '\n' && input[i] !== '\r') {
          throw new UsageError(`${source} line ${line}: text after a closing quote (a field's quotes are its own)`)
        }
      } else {
        let end = i
        while (end < input.length && input[end] !== ',' && input[end] !== '\n' && input[end] !== '\r') end++
        field = input.slice(i, end)
        if (field.includes('"')) {
          throw new UsageError(
            `${source} line ${line}: a quote inside an unquoted field (quote the field, double the quote)`,
          )
        }
        i = end
      }
      fields.push(field)
      if (input[i] !== ',') break
      i++
    }
    // An empty line is no record (nor is the end of a file that ends with a line break: the loop ends first).
    if (i > from) records.push({ line: start, fields })
    if (input[i] === '\r') i++
    if (input[i] === '\n') i++
    else if (i < input.length) throw new UsageError(`${source} line ${line}: a carriage return inside a line`)
    line++
  }
  return records
}

/** One CSV line (with its LF): a field is quoted when it must be, or when it has spaces at either end. */
export function csvLine(fields: readonly string[]): string {
  return `${fields.map((field) => (/[",\r\n]|^\s|\s$/.test(field) ? `"${field.replaceAll('"', '""')}"` : field)).join(',')}\n`
}
