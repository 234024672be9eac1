/**
 * CSV as PostgreSQL's csvlog writes it: fields separated by commas, quoted with " when they hold
 * commas, quotes or newlines, "" for a quote inside. Works on bytes so every record keeps its exact
 * byte offset in the file: the ingester's exactly-once position is a byte offset. The bytes used
 * (" , \n) never occur inside a multi-byte UTF-8 character, so splitting bytes is safe.
 */
const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

export interface CsvRecord {
  fields: string[];
  /** byte offset just after this record's terminating newline */
  end: number;
}

/**
 * Complete records in buf, and the offset after the last one. A record still being written
 * (no newline yet, or an open quote) is left for the next read.
 */
export function splitCsvRecords(buf: Buffer, from = 0): { records: CsvRecord[]; consumed: number } {
  const records: CsvRecord[] = [];
  let fields: string[] = [];
  let fieldStart = from;
  let inQuotes = false;
  let quoted = false;
  let consumed = from;
  for (let i = from; i < buf.length; i++) {
    const b = buf[i];
    if (inQuotes) {
      if (b === QUOTE) {
        if (buf[i + 1] === QUOTE) i++;
        else inQuotes = false;
      }
      continue;
    }
    if (b === QUOTE) {
      inQuotes = true;
      quoted = true;
    } else if (b === COMMA) {
      fields.push(decodeField(buf, fieldStart, i, quoted));
      fieldStart = i + 1;
      quoted = false;
    } else if (b === LF) {
      const end = i > fieldStart && buf[i - 1] === CR ? i - 1 : i;
      fields.push(decodeField(buf, fieldStart, end, quoted));
      records.push({ fields, end: i + 1 });
      consumed = i + 1;
      fields = [];
      fieldStart = i + 1;
      quoted = false;
    }
  }
  return { records, consumed };
}

function decodeField(buf: Buffer, start: number, end: number, quoted: boolean): string {
  if (!quoted) return buf.toString('utf8', start, end);
  // "abc ""x"" def" -> abc "x" def ; text outside the quotes (not produced by PostgreSQL) is kept.
  const raw = buf.toString('utf8', start, end);
  const open = raw.indexOf('"');
  const close = raw.lastIndexOf('"');
  return raw.slice(0, open) + raw.slice(open + 1, close).replaceAll('""', '"') + raw.slice(close + 1);
}

/** One CSV record held in a string (pgaudit's payload is CSV inside a csvlog field). */
export function parseCsvLine(line: string): string[] | null {
  const { records } = splitCsvRecords(Buffer.from(`${line}\n`, 'utf8'));
  return records.length === 1 ? records[0]!.fields : null;
}
