import { timeKey, type TimeKey } from '../seal/event-time.js';
import type { Query } from '../query/filter.js';

export const ACTIONS = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'COPY', 'EXECUTE', 'REFERENCES', 'MERGE'] as const;
const SOURCES = ['trigger', 'pgaudit', 'row-read'] as const;

/** A form's fields as the browser sent them (application/x-www-form-urlencoded). */
export type FormBody = Record<string, string | string[] | undefined>;

export const one = (b: FormBody, k: string): string => {
  const v = b[k];
  return (Array.isArray(v) ? (v[0] ?? '') : (v ?? '')).trim();
};
const many = (b: FormBody, k: string): string[] => {
  const v = b[k];
  return (Array.isArray(v) ? v : v ? [v] : []).map((s) => s.trim()).filter(Boolean);
};

/** A question the person got wrong, said in the form's words. */
export class FormError extends Error {}

function time(b: FormBody, k: string, label: string): TimeKey | null {
  const v = one(b, k);
  if (v === '') return null;
  const t = timeKey(v);
  if (t === null)
    throw new FormError(`${label} takes a date or time such as 2026-03-01 or 2026-03-01T08:00:00Z (UTC unless it says otherwise), not ${JSON.stringify(v)}`);
  return t;
}

/** The search form as a query (the same filters `query` takes). */
export function queryFrom(b: FormBody): Query {
  const from = time(b, 'from', 'From');
  const to = time(b, 'to', 'To');
  if (from && to && from >= to) throw new FormError('From is not before To');
  const actions = many(b, 'action').map((a) => a.toUpperCase());
  const unknown = actions.filter((a) => !(ACTIONS as readonly string[]).includes(a));
  if (unknown.length) throw new FormError(`${unknown.join(', ')} is not an audited action`);
  const outcome = one(b, 'outcome');
  if (outcome !== '' && outcome !== 'success' && outcome !== 'failure') throw new FormError('Outcome is success or failure');
  const source = one(b, 'source');
  if (source !== '' && !(SOURCES as readonly string[]).includes(source)) throw new FormError('Source is trigger, pgaudit or row-read');
  const text = (k: string) => one(b, k) || null;
  return {
    from,
    to,
    dbUser: text('db_user'),
    appUser: text('app_user'),
    customer: text('customer'),
    table: text('table'),
    rowId: text('row_id'),
    actions,
    outcome: (outcome || null) as Query['outcome'],
    source: (source || null) as Query['source'],
  };
}

/** The patient access report's question: one customer, a date range (at most six years and a day). */
export function reportQueryFrom(b: FormBody): Query {
  const customer = one(b, 'customer');
  if (customer === '') throw new FormError('Patient (customer id) is required: the report is about one patient');
  const from = time(b, 'from', 'From');
  const to = time(b, 'to', 'To');
  if (!from || !to) throw new FormError('From and To are required: the report covers a date range (at most six years)');
  if (from >= to) throw new FormError('From is not before To');
  if (Date.parse(to) - Date.parse(from) > (6 * 366 + 1) * 86_400_000) throw new FormError('the range is longer than six years: HIPAA asks for six');
  return { from, to, dbUser: null, appUser: null, customer, table: null, rowId: null, actions: [], outcome: null, source: null };
}

/** The query as the form's fields, to carry it from one page to the next (in the body, never the URL). */
export function fieldsOf(q: Query): Record<string, string | string[]> {
  const f: Record<string, string | string[]> = {};
  const t = (k: TimeKey) => k.replace('.000000Z', 'Z');
  if (q.from) f.from = t(q.from);
  if (q.to) f.to = t(q.to);
  if (q.dbUser) f.db_user = q.dbUser;
  if (q.appUser) f.app_user = q.appUser;
  if (q.customer) f.customer = q.customer;
  if (q.table) f.table = q.table;
  if (q.rowId) f.row_id = q.rowId;
  if (q.actions.length) f.action = q.actions;
  if (q.outcome) f.outcome = q.outcome;
  if (q.source) f.source = q.source;
  return f;
}
