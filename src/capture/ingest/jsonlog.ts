import type { StreamedRecord } from './csv.js';

/**
 * PostgreSQL's jsonlog (15+): one JSON object per line, flat, string and number values, keys left
 * out when empty; newlines inside values are escaped, so a newline byte ends a record. Read in
 * bounded memory like csvlog (csv.ts): a value is kept up to `maxFieldBytes` of its JSON text and
 * the rest is only scanned. Each record comes out as the csvlog columns it holds (toLogLine reads
 * both the same way), so everything after the parser is shared.
 */

/** jsonlog keys to csvlog columns (the server documentation's order; csvlog.ts). */
const COLUMN: Record<string, number> = {
  timestamp: 0,
  user: 1,
  dbname: 2,
  pid: 3,
  session_id: 5,
  line_num: 6,
  ps: 7,
  session_start: 8,
  vxid: 9,
  txid: 10,
  error_severity: 11,
  state_code: 12,
  message: 13,
  detail: 14,
  hint: 15,
  internal_query: 16,
  internal_position: 17,
  context: 18,
  statement: 19,
  cursor_position: 20,
  application_name: 22,
  backend_type: 23,
  leader_pid: 24,
  query_id: 25,
};
const COLUMNS = 26;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LF = 0x0a;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const COLON = 0x3a;
const COMMA = 0x2c;

type State =
  | 'record' // before the object's {
  | 'key?' // before a key (or the closing })
  | 'key' // inside a key
  | 'colon'
  | 'value?' // before a value
  | 'string' // inside a string value
  | 'escape' // after a backslash inside a string
  | 'bare' // inside a number or literal
  | 'next' // after a value: , or }
  | 'end' // after the closing }: only the newline
  | 'bad'; // not jsonlog: skip to the newline

export class JsonlogRecordStream {
  private pos: number;
  private recordStart: number;
  private state: State = 'record';
  private key: number[] = [];
  private value: Buffer[] = [];
  private valueBytes = 0;
  /** bytes of the current \u escape still to come (it is kept whole or not at all) */
  private escapeLeft = 0;
  private fields: Map<string, string> = new Map();
  private truncated = false;

  constructor(
    start: number,
    private readonly maxFieldBytes: number,
  ) {
    this.pos = start;
    this.recordStart = start;
  }

  get openRecordStart(): number {
    return this.recordStart;
  }

  get position(): number {
    return this.pos;
  }

  push(chunk: Buffer): StreamedRecord[] {
    const out: StreamedRecord[] = [];
    const base = this.pos;
    let seg = 0; // start of the current value's bytes not yet kept
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === LF) {
        // Always the record's end: the server escapes newlines in values, so one inside an open
        // value (a torn write) ends a record that is not jsonlog, and costs that record only.
        if (this.state !== 'end') this.state = 'bad';
        out.push(this.finish(base + i + 1));
        seg = i + 1;
        continue;
      }
      switch (this.state) {
        case 'record':
          if (b === OPEN) this.state = 'key?';
          else if (!isSpace(b)) this.state = 'bad';
          break;
        case 'key?':
          if (b === QUOTE) {
            this.state = 'key';
            this.key = [];
          } else if (b === CLOSE) this.state = 'end';
          else if (!isSpace(b)) this.state = 'bad';
          break;
        case 'key':
          if (b === QUOTE) this.state = 'colon';
          else if (this.key.length < 64) this.key.push(b);
          break;
        case 'colon':
          if (b === COLON) this.state = 'value?';
          else if (!isSpace(b)) this.state = 'bad';
          break;
        case 'value?':
          if (b === QUOTE) {
            this.state = 'string';
            seg = i + 1;
          } else if (!isSpace(b)) {
            this.state = 'bare';
            seg = i;
          }
          break;
        case 'string':
          if (b === BACKSLASH) {
            this.keep(chunk, seg, i);
            seg = i;
            this.state = 'escape';
          } else if (b === QUOTE) {
            this.endValue(chunk, seg, i, true);
            this.state = 'next';
          }
          break;
        case 'escape':
          // The backslash and what follows are kept together: \n, \", \\, or \uXXXX (6 bytes).
          if (this.escapeLeft > 0) {
            this.escapeLeft--;
            if (this.escapeLeft === 0) {
              this.keep(chunk, seg, i + 1, 6);
              seg = i + 1;
              this.state = 'string';
            }
          } else if (b === 0x75 /* u */) this.escapeLeft = 4;
          else {
            this.keep(chunk, seg, i + 1, 2);
            seg = i + 1;
            this.state = 'string';
          }
          break;
        case 'bare':
          if (b === COMMA || b === CLOSE) {
            this.endValue(chunk, seg, i);
            this.state = b === COMMA ? 'key?' : 'end';
          }
          break;
        case 'next':
          if (b === COMMA) this.state = 'key?';
          else if (b === CLOSE) this.state = 'end';
          else if (!isSpace(b)) this.state = 'bad';
          break;
        case 'end':
          if (!isSpace(b)) this.state = 'bad';
          break;
        case 'bad':
          break;
      }
    }
    if (this.state === 'string') this.keep(chunk, seg, chunk.length);
    else if (this.state === 'escape')
      this.keep(chunk, seg, chunk.length, chunk.length - seg); // an escape split by the chunk: kept as one piece
    else if (this.state === 'bare') this.keep(chunk, seg, chunk.length);
    this.pos = base + chunk.length;
    return out;
  }

  /** Keep chunk[from, to) of the current value, up to the limit; `whole`: only all of it or nothing (an escape). */
  private keep(chunk: Buffer, from: number, to: number, whole = 0): void {
    if (to <= from) return;
    const room = this.maxFieldBytes - this.valueBytes;
    let n = Math.min(Math.max(room, 0), to - from);
    if (whole > 0 && n < to - from) n = 0;
    if (n < to - from) this.truncated = true;
    if (n === 0) return;
    this.value.push(Buffer.from(chunk.subarray(from, from + n)));
    this.valueBytes += n;
  }

  private endValue(chunk: Buffer, from: number, to: number, string = false): void {
    this.keep(chunk, from, to);
    const raw = Buffer.concat(this.value, this.valueBytes).toString('utf8');
    this.value = [];
    this.valueBytes = 0;
    const key = Buffer.from(this.key).toString('latin1');
    let text: string;
    if (string) {
      try {
        text = JSON.parse(`"${raw}"`) as string;
      } catch {
        text = raw; // a cut inside an escape cannot happen (escapes are kept whole); anything else is the server's bytes as they are
      }
    } else text = raw.trim();
    this.fields.set(key, text);
  }

  private finish(end: number): StreamedRecord {
    const ok = this.state === 'end';
    const f = this.fields;
    let fields: string[] = [];
    if (ok) {
      fields = Array.from({ length: COLUMNS }, () => '');
      for (const [key, value] of f) {
        const col = COLUMN[key];
        if (col !== undefined) fields[col] = value;
      }
      // jsonlog leaves state_code out when it is 0, which csvlog writes as 00000 (PostgreSQL 15, jsonlog.c).
      if (!f.has('state_code')) fields[12] = '00000';
      const host = f.get('remote_host');
      if (host !== undefined) fields[4] = f.has('remote_port') ? `${host}:${f.get('remote_port')!}` : host;
      const where = [f.get('func_name'), f.get('file_name') && `${f.get('file_name')!}:${f.get('file_line_num') ?? ''}`].filter(Boolean).join(', ');
      fields[21] = where;
    }
    const record: StreamedRecord = { fields, start: this.recordStart, end, truncated: this.truncated };
    this.state = 'record';
    this.fields = new Map();
    this.truncated = false;
    this.key = [];
    this.value = [];
    this.valueBytes = 0;
    this.escapeLeft = 0;
    this.recordStart = end;
    return record;
  }
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0d;
}
