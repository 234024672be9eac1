import type { RowText } from './record.js';

/** What a read record says in `source`: a row returned through the policy (sql/migrations/008, 009). */
export const ROW_READ_SOURCE = 'row-read';

/** Longest message text kept in a malformed read record. */
const MALFORMED_MAX = 2000;

/** A read message's values, before they become a record's fields. */
interface ReadMessage {
  schema: string;
  table: string;
  key: string;
  sessionUser: string;
  currentRole: string;
  appUser: string | null;
  appCustomer: string | null;
  at: string;
  pid: number | null;
  application: string | null;
  /** the partition the row is stored in (layout 2), when the table is partitioned */
  relation: string | null;
}

/**
 * A row read, from the message audit.note_read() wrote, as the record's fields, named like
 * audit_log's columns so `query` filters them alike. A message that is not what note_read() writes
 * (only a superuser or audit_owner can emit one) is kept whole as `malformed`, never dropped and
 * never read as a valid event.
 */
export function readRow(content: Buffer): { row: RowText; malformed: string | null } {
  const text = content.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const m = Array.isArray(parsed) ? fromArray(parsed) : parsed !== null && typeof parsed === 'object' ? fromObject(parsed as Record<string, unknown>) : null;
  return {
    row: {
      occurred_at: m?.at ?? null,
      source: ROW_READ_SOURCE,
      action: 'SELECT',
      outcome: 'success',
      schema_name: m?.schema ?? null,
      table_name: m?.table ?? null,
      row_id: m?.key ?? null,
      // Only rows of partitioned tables carry one; other read records keep the fields they always had.
      ...(m?.relation ? { relation_name: m.relation } : {}),
      session_user_name: m?.sessionUser ?? null,
      current_role_name: m?.currentRole ?? null,
      app_user_id: m?.appUser ?? null,
      app_customer_id: m?.appCustomer ?? null,
      application_name: m?.application ?? null,
      backend_pid: m?.pid != null ? String(m.pid) : null,
    },
    malformed: m ? null : text.slice(0, MALFORMED_MAX),
  };
}

const isText = (v: unknown): v is string => typeof v === 'string';
const orNull = (v: unknown): string | null => (isText(v) && v !== '' ? v : null);

/**
 * Version 9's message (sql/migrations/009), layout 1: `[1, table, key, session_user, role setting,
 * app.user_id, app.customer_id, statement start, pid, application_name]`; version 11's layout 2 adds
 * the partition the row is stored in (a regclass, or null when the table is not partitioned). The
 * table is a regclass printed schema-qualified; the role setting is `none` when the session did not
 * SET ROLE (the role in effect is then the login); the time is JSON's ISO 8601 with the session's
 * UTC offset.
 */
function fromArray(a: unknown[]): ReadMessage | null {
  const [version, rel, key, su, role, au, ac, at, pid, app, part] = a;
  if (!((version === 1 && a.length === 10) || (version === 2 && a.length === 11))) return null;
  if (!isText(rel) || !isText(key) || !isText(su) || !isText(role) || !isText(at)) return null;
  if (!(au === null || isText(au)) || !(ac === null || isText(ac)) || !(app === null || isText(app)) || !Number.isSafeInteger(pid)) return null;
  if (!(part === undefined || part === null || (isText(part) && QUALIFIED_NAME.test(part)))) return null;
  const name = splitQualifiedName(rel);
  const time = isoTime(at);
  if (!name || !time) return null;
  return {
    schema: name[0],
    table: name[1],
    key,
    sessionUser: su,
    currentRole: role === 'none' ? su : role,
    appUser: orNull(au),
    appCustomer: orNull(ac),
    at: time,
    pid: pid as number,
    application: orNull(app),
    relation: isText(part) ? part : null,
  };
}

/** Version 8's message: an object with short keys, the time already in UTC. Still read: the slot may hold some at an upgrade. */
function fromObject(m: Record<string, unknown>): ReadMessage | null {
  const { s, t, k, su, cu, au, ac, at, pid, app } = m;
  const time = eventTime(isText(at) ? at : null);
  if (!isText(s) || !isText(t) || !isText(k) || !isText(su) || !isText(cu) || !time) return null;
  return {
    schema: s,
    table: t,
    key: k,
    sessionUser: su,
    currentRole: cu,
    appUser: orNull(au),
    appCustomer: orNull(ac),
    at: time,
    pid: Number.isSafeInteger(pid) ? (pid as number) : null,
    application: orNull(app),
    relation: null,
  };
}

const NAME_PART = '("(?:[^"]|"")+"|[^".]+)';
const QUALIFIED_NAME = new RegExp(`^${NAME_PART}\\.${NAME_PART}$`);
const unquote = (p: string) => (p.startsWith('"') ? p.slice(1, -1).replaceAll('""', '"') : p);
let lastName: { text: string; parts: [string, string] | null } = { text: '', parts: null };

/**
 * `schema.table` as PostgreSQL prints a qualified name: each part bare or double-quoted with `""`
 * for a quote. Null unless exactly two parts. (The rows of one scan name one table: the last answer
 * is kept.)
 */
export function splitQualifiedName(text: string): [string, string] | null {
  if (text === lastName.text) return lastName.parts;
  const m = QUALIFIED_NAME.exec(text);
  const parts: [string, string] | null = m ? [unquote(m[1]!), unquote(m[2]!)] : null;
  lastName = { text, parts };
  return parts;
}

/**
 * The archive spells times as the server prints a timestamptz in UTC (`2026-11-29 03:46:23.6925+00`:
 * trailing zeros of the fraction dropped), so records of every path compare alike.
 */
function utcText(epochSeconds: number, fraction: string): string {
  const d = new Date(epochSeconds * 1000).toISOString(); // 2026-11-29T03:46:23.000Z
  return spelled(`${d.slice(0, 10)} ${d.slice(11, 19)}`, fraction);
}

/** `YYYY-MM-DD HH:MM:SS` in UTC and a fraction's digits, as the archive spells them. */
function spelled(dateTime: string, fraction: string): string {
  const f = fraction.replace(/0+$/, '');
  return `${dateTime}${f ? `.${f}` : ''}+00`;
}

const ISO_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?([+-])(\d{2}):(\d{2})(?::(\d{2}))?$/;
let lastTime: { text: string; utc: string | null } = { text: '', utc: null };

/**
 * JSON's timestamptz, `2026-11-29T04:46:23.6925+01:00` (an offset of the session's time zone), in
 * UTC. The rows of one statement share its start: the last answer is kept (a 1,000-row read spent
 * a third of the shipper's time per message here before).
 */
export function isoTime(text: string): string | null {
  if (text === lastTime.text) return lastTime.utc;
  const t = ISO_TIME.exec(text);
  let utc: string | null = null;
  if (t) {
    const [, y, mo, d, h, mi, s, fraction = '', sign, oh, om, os = '0'] = t;
    const local = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) / 1000;
    const offset = (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os));
    utc = utcText(local - offset, fraction);
  }
  lastTime = { text, utc };
  return utc;
}

/** Version 8's time: the statement's start in UTC as `YYYY-MM-DD HH:MM:SS.ffffff`. */
export function eventTime(text: string | null): string | null {
  const t = text === null ? null : /^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?$/.exec(text);
  return t ? spelled(t[1]!, t[2] ?? '') : null;
}
