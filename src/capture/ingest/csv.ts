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

/** One CSV record held in a string (pgaudit's payload is CSV inside a csvlog field), or null when it is not one whole record. */
export function parseCsvLine(line: string): string[] | null {
  const records = new CsvRecordStream(0, Number.POSITIVE_INFINITY).push(Buffer.from(`${line}\n`, 'utf8'));
  return records.length === 1 ? records[0]!.fields : null;
}

/** A record read by CsvRecordStream: its fields (each cut to the stream's limit) and byte range. */
export interface StreamedRecord {
  fields: string[];
  /** byte offsets in the file: [start, end), end just after the terminating newline */
  start: number;
  end: number;
  /** some field was longer than the limit and was cut */
  truncated: boolean;
}

/**
 * csvlog records from a file read in chunks, in bounded memory: a field is kept up to
 * `maxFieldBytes` and the rest of it is only scanned, not held, so one 560 MB statement costs what
 * a 64 KB one does (a string of it could not even be made: V8 strings stop at 2^29 - 24
 * characters). Feed it the file's bytes in order from `start`; it returns each record as its
 * newline arrives.
 */
export class CsvRecordStream {
  private pos: number;
  private recordStart: number;
  private fields: string[] = [];
  private parts: Buffer[] = [];
  private fieldBytes = 0;
  private truncated = false;
  /** 0: outside quotes; 1: inside quotes; 2: a quote seen inside quotes ("" or the closing one?) */
  private state: 0 | 1 | 2 = 0;
  /**
   * The field's bytes while they are one run of the current chunk: decoded straight from the
   * chunk at the field's end, without a copy (most fields; copies were a third of the CPU).
   */
  private runChunk: Buffer | null = null;
  private runFrom = 0;
  private runTo = 0;

  constructor(
    start: number,
    private readonly maxFieldBytes: number,
  ) {
    this.pos = start;
    this.recordStart = start;
  }

  /** Where the record being read began: every byte before it was returned in a record. */
  get openRecordStart(): number {
    return this.recordStart;
  }

  /** The offset just after the bytes fed so far. */
  get position(): number {
    return this.pos;
  }

  push(chunk: Buffer): StreamedRecord[] {
    const out: StreamedRecord[] = [];
    const base = this.pos;
    let seg = 0; // start of the run of field bytes not yet kept
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.state === 2) {
        if (b === QUOTE) {
          // "" inside quotes: one quote
          this.keep(LITERAL_QUOTE, 0, 1);
          this.state = 1;
          seg = i + 1;
          continue;
        }
        this.state = 0; // the quote closed the quoted part: read this byte as outside quotes
        seg = i;
      }
      if (this.state === 1) {
        if (b === QUOTE) {
          this.keep(chunk, seg, i);
          this.state = 2;
          seg = i + 1;
        }
        continue;
      }
      if (b === QUOTE) {
        this.keep(chunk, seg, i);
        this.state = 1;
        seg = i + 1;
      } else if (b === COMMA) {
        this.keep(chunk, seg, i);
        this.endField();
        seg = i + 1;
      } else if (b === LF) {
        this.keep(chunk, seg, i > seg && chunk[i - 1] === CR ? i - 1 : i);
        this.endField();
        const end = base + i + 1;
        out.push({ fields: this.fields, start: this.recordStart, end, truncated: this.truncated });
        this.fields = [];
        this.truncated = false;
        this.recordStart = end;
        seg = i + 1;
      }
    }
    if (this.state !== 2) this.keep(chunk, seg, chunk.length);
    this.settle(); // the caller reuses the chunk's memory: copy what the open field holds of it
    this.pos = base + chunk.length;
    return out;
  }

  /**
   * The record open now, ended where its bytes stop (the source cut it short: rds-logs.ts): the
   * fields read so far, the last as far as it arrived. The stream goes on as at a record's start.
   * Null when no record is open.
   */
  cutShort(): StreamedRecord | null {
    if (this.pos === this.recordStart) return null;
    this.endField();
    const record = { fields: this.fields, start: this.recordStart, end: this.pos, truncated: true };
    this.fields = [];
    this.truncated = false;
    this.state = 0;
    this.recordStart = this.pos;
    return record;
  }

  private settle(): void {
    const c = this.runChunk;
    if (c === null) return;
    this.runChunk = null;
    this.parts.push(Buffer.from(c.subarray(this.runFrom, this.runTo)));
  }

  /** Keep chunk[from, to) in the current field, up to the limit. */
  private keep(chunk: Buffer, from: number, to: number): void {
    if (to <= from) return;
    const room = this.maxFieldBytes - this.fieldBytes;
    const n = Math.min(Math.max(room, 0), to - from);
    if (n < to - from) this.truncated = true;
    if (n === 0) return;
    if (this.runChunk === null && this.parts.length === 0) {
      this.runChunk = chunk;
      this.runFrom = from;
      this.runTo = from + n;
    } else {
      this.settle();
      this.parts.push(Buffer.from(chunk.subarray(from, from + n)));
    }
    this.fieldBytes += n;
  }

  private endField(): void {
    // A cut may split a multi-byte character: the decoder then ends the field with U+FFFD.
    const c = this.runChunk;
    if (c !== null && this.parts.length === 0) {
      this.fields.push(c.toString('utf8', this.runFrom, this.runTo));
      this.runChunk = null;
    } else {
      this.settle();
      this.fields.push(this.parts.length === 1 ? this.parts[0]!.toString('utf8') : Buffer.concat(this.parts, this.fieldBytes).toString('utf8'));
    }
    this.parts = [];
    this.fieldBytes = 0;
  }
}

const LITERAL_QUOTE = Buffer.from('"');
