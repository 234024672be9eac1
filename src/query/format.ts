import type { ArchivedRecord } from '../verify/file.js';

/** audit.audit_log's columns in table order (sql/migrations/001_audit_schema.sql, then 005's two). */
export const AUDIT_COLUMNS = [
  'id',
  'occurred_at',
  'tx_started_at',
  'source',
  'action',
  'outcome',
  'schema_name',
  'table_name',
  'row_id',
  'changed_columns',
  'session_user_name',
  'current_role_name',
  'app_user_id',
  'app_customer_id',
  'application_name',
  'client_addr',
  'client_port',
  'backend_pid',
  'txid',
  'statement',
  'error',
  'log_session_id',
  'log_line_num',
  'relation_name',
  'old_row_id',
] as const;

/** CSV and JSON lines: the record's place in the chain, then audit_log's columns. */
export const OUTPUT_COLUMNS = ['seq', 'chain', ...AUDIT_COLUMNS] as const;

export type Format = 'table' | 'csv' | 'json';

export interface RowWriter {
  row(r: ArchivedRecord): void;
  /** after the last row (the table prints its closing line) */
  end(): void;
}

function value(r: ArchivedRecord, col: string): string | null {
  const v = r[col];
  return v === null || v === undefined ? null : String(v);
}

/** One JSON object per line, audit_log column names, values as the server printed them. */
export function jsonLine(r: ArchivedRecord): string {
  const o: Record<string, string | number | null> = {};
  for (const c of OUTPUT_COLUMNS) o[c] = c === 'seq' ? r.seq : value(r, c);
  return JSON.stringify(o);
}

/** RFC 4180: quote when needed, double the quotes; an empty field is NULL, "" is an empty text. */
function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  return s === '' || /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const CSV_HEADER = OUTPUT_COLUMNS.join(',');

export function csvLine(r: ArchivedRecord): string {
  return OUTPUT_COLUMNS.map((c) => csvField(c === 'seq' ? r.seq : value(r, c))).join(',');
}

/** For a person: the columns that answer who, what, when, on which record; fixed widths so it streams. */
const TABLE: { title: string; width: number; get: (r: ArchivedRecord) => string }[] = [
  { title: 'when (UTC)', width: 19, get: (r) => (value(r, 'occurred_at') ?? '').slice(0, 19) },
  { title: 'action', width: 8, get: (r) => value(r, 'action') ?? '' },
  { title: 'outcome', width: 7, get: (r) => value(r, 'outcome') ?? '' },
  { title: 'db user', width: 14, get: (r) => value(r, 'session_user_name') ?? '' },
  { title: 'app user', width: 14, get: (r) => value(r, 'app_user_id') ?? '' },
  { title: 'customer', width: 8, get: (r) => value(r, 'app_customer_id') ?? '' },
  { title: 'table', width: 22, get: (r) => (r.table_name ? `${value(r, 'schema_name')}.${value(r, 'table_name')}` : '') },
  { title: 'row', width: 8, get: (r) => (r.old_row_id ? `${value(r, 'old_row_id')}→${value(r, 'row_id') ?? ''}` : (value(r, 'row_id') ?? '')) },
  { title: 'via', width: 8, get: (r) => value(r, 'source') ?? '' },
  { title: 'record', width: 9, get: (r) => String(r.seq) },
];

function cell(s: string, width: number): string {
  const flat = s.replace(/\s+/g, ' ');
  return flat.length > width ? `${flat.slice(0, width - 1)}…` : flat.padEnd(width);
}

export function createRowWriter(format: Format, write: (s: string) => void): RowWriter {
  if (format === 'json') return { row: (r) => write(`${jsonLine(r)}\n`), end: () => undefined };
  if (format === 'csv') {
    write(`${CSV_HEADER}\n`);
    return { row: (r) => write(`${csvLine(r)}\n`), end: () => undefined };
  }
  const line = (cells: string[]): string => `${cells.join('  ').trimEnd()}\n`;
  write(line(TABLE.map((c) => cell(c.title, c.width))));
  write(line(TABLE.map((c) => '-'.repeat(c.width))));
  let rows = 0;
  return {
    row: (r) => {
      rows++;
      write(line(TABLE.map((c) => cell(c.get(r), c.width))));
    },
    end: () => {
      if (rows === 0) write('(no matching events)\n');
    },
  };
}
