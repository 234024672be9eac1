import type { RowText } from './record.js';

/** What a read record says in `source`: a row returned through the policy (sql/migrations/008). */
export const ROW_READ_SOURCE = 'row-read';

/** Longest message text kept in a malformed read record. */
const MALFORMED_MAX = 2000;

/**
 * A row read, from the message audit.note_read() wrote (JSON with short keys, to keep WAL small),
 * as the record's fields, named like audit_log's columns so `query` filters them alike. A message
 * that is not what note_read() writes (only a superuser or audit_owner can emit one) is kept whole
 * as `malformed`, never dropped and never read as a valid event.
 */
export function readRow(content: Buffer): { row: RowText; malformed: string | null } {
  const text = content.toString('utf8');
  let m: Record<string, unknown> | null = null;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) m = parsed as Record<string, unknown>;
  } catch {
    m = null;
  }
  const str = (k: string): string | null => (m && typeof m[k] === 'string' ? m[k] : null);
  const at = eventTime(str('at'));
  const pid = m && Number.isSafeInteger(m.pid) ? String(m.pid) : null;
  const valid = m !== null && at !== null && str('s') !== null && str('t') !== null && str('k') !== null && str('su') !== null && str('cu') !== null;
  return {
    row: {
      occurred_at: at,
      source: ROW_READ_SOURCE,
      action: 'SELECT',
      outcome: 'success',
      schema_name: str('s'),
      table_name: str('t'),
      row_id: str('k'),
      session_user_name: str('su'),
      current_role_name: str('cu'),
      app_user_id: str('au'),
      app_customer_id: str('ac'),
      application_name: str('app'),
      backend_pid: pid,
    },
    malformed: valid ? null : text.slice(0, MALFORMED_MAX),
  };
}

/**
 * note_read() writes the statement's start in UTC as `YYYY-MM-DD HH:MM:SS.ffffff`; the archive
 * spells times as the server prints a timestamptz in UTC (`2026-11-29 03:46:23.6925+00`: trailing
 * zeros of the fraction dropped), so records of both paths compare alike.
 */
export function eventTime(text: string | null): string | null {
  const t = text === null ? null : /^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?$/.exec(text);
  if (!t) return null;
  const fraction = (t[2] ?? '').replace(/0+$/, '');
  return `${t[1]}${fraction ? `.${fraction}` : ''}+00`;
}
