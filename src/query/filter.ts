import { timeKey, type TimeKey } from '../seal/event-time.js';
import { DIGEST_FORMAT, type Digest } from '../seal/digest.js';
import { mayContain, openIndex, tableNames, type OpenIndex } from '../seal/key-index.js';
import type { ArchivedRecord } from '../verify/file.js';
import { RECEIPT_SOURCE } from '../capture/ingest/receipt.js';
import { ATTEST_SOURCE } from '../capture/attest.js';

/**
 * What a compliance officer asks. Every field narrows; unset fields match everything. Times are
 * event times (occurred_at), from inclusive, to exclusive. Plain data, so an evidence package can
 * carry it and an offline check can apply it again.
 */
export interface Query {
  from: TimeKey | null;
  to: TimeKey | null;
  /** database role: matches the session user or the role in effect */
  dbUser: string | null;
  /** app.user_id as the application set it */
  appUser: string | null;
  /** app.customer_id */
  customer: string | null;
  /** schema.table, or a table name in any schema */
  table: string | null;
  rowId: string | null;
  /** upper case: SELECT, INSERT, UPDATE, DELETE, TRUNCATE, ... */
  actions: string[];
  outcome: 'success' | 'failure' | null;
  source: 'trigger' | 'pgaudit' | 'row-read' | null;
}

export const EVERYTHING: Query = {
  from: null,
  to: null,
  dbUser: null,
  appUser: null,
  customer: null,
  table: null,
  rowId: null,
  actions: [],
  outcome: null,
  source: null,
};

/** Only audit events (and row reads) answer questions; tamper, gap and marker records are reported separately. */
export function matches(r: ArchivedRecord, q: Query): boolean {
  if (r.op !== 'insert' && r.op !== 'read') return false;
  // Bookkeeping that verify reads, in which nobody was accessed: the ingester's receipts, the shipper's attestations.
  if (r.source === RECEIPT_SOURCE || r.source === ATTEST_SOURCE) return false;

  if (q.from !== null || q.to !== null) {
    const at = typeof r.occurred_at === 'string' ? timeKey(r.occurred_at) : null;
    if (at === null) return false;
    if (q.from !== null && at < q.from) return false;
    if (q.to !== null && at >= q.to) return false;
  }
  if (q.dbUser !== null && r.session_user_name !== q.dbUser && r.current_role_name !== q.dbUser) return false;
  if (q.appUser !== null && r.app_user_id !== q.appUser) return false;
  if (q.customer !== null && r.app_customer_id !== q.customer) return false;
  // A partition's events are recorded under the protected table, with the partition as relation_name:
  // either name finds them. The same names the key index holds (src/seal/key-index.ts).
  if (q.table !== null && !tableNames(r).includes(q.table)) return false;
  // An UPDATE that changed the key touched the row under its old key too.
  if (q.rowId !== null && r.row_id !== q.rowId && r.old_row_id !== q.rowId) return false;
  if (q.actions.length > 0 && !q.actions.includes(String(r.action))) return false;
  if (q.outcome !== null && r.outcome !== q.outcome) return false;
  if (q.source !== null && r.source !== q.source) return false;
  return true;
}

/** Whether a file's events (by its signed digest's time range) can hold a match: skip it otherwise. */
export function mayHold(d: Digest, q: Query): boolean {
  if (d.kind !== 'data') return false;
  // No event times: the file holds only tamper, gap or marker records. Read it: the answer must say
  // when the trail it searched was changed or broken in the partitions it covers.
  if (d.first_event_at === null || d.last_event_at === null) return true;
  const first = timeKey(d.first_event_at);
  const last = timeKey(d.last_event_at);
  if (first === null || last === null) return true; // unreadable times: read the file rather than guess
  return (q.from === null || last >= q.from) && (q.to === null || first < q.to);
}

/** A format-3 digest's key index, decoded; null for earlier formats and unreadable indexes (the file is read). */
export function indexOfDigest(d: Digest): OpenIndex | null {
  return d.format === DIGEST_FORMAT && d.kind === 'data' ? openIndex(d.index) : null;
}

/**
 * Whether the file's signed key index rules out every match: one key the query asks for that the
 * file does not hold. A file with tamper or gap records is always read (the answer must say the
 * trail it searched was changed or broken there). A false positive of the filter costs one file
 * read; a match whose key is not in the index cannot be, as matches() compares exactly the
 * values the index holds (recordKeys).
 */
export function indexRulesOut(index: OpenIndex | null, q: Query): boolean {
  if (index === null || index.index.tamper_or_gap > 0) return false;
  if (q.customer !== null && !mayContain(index, 'customer', q.customer)) return true;
  if (q.appUser !== null && !mayContain(index, 'app_user', q.appUser)) return true;
  if (q.dbUser !== null && !mayContain(index, 'db_user', q.dbUser)) return true;
  if (q.table !== null && !mayContain(index, 'table', q.table)) return true;
  if (q.rowId !== null && !mayContain(index, 'row', q.rowId)) return true;
  return false;
}

/** Whether the query asks for a key the key index holds (so most files may be skipped). */
export function asksIndexedKey(q: Query): boolean {
  return q.customer !== null || q.appUser !== null || q.dbUser !== null || q.table !== null || q.rowId !== null;
}

/** The query in words, for reports: "events from … to … by database user … on …". */
export function describe(q: Query): string {
  const parts: string[] = [];
  const t = (k: TimeKey): string => k.replace('.000000Z', 'Z');
  if (q.from || q.to) parts.push(`occurred ${q.from ? `from ${t(q.from)}` : ''}${q.from && q.to ? ' ' : ''}${q.to ? `before ${t(q.to)}` : ''}`);
  if (q.dbUser) parts.push(`database user ${q.dbUser}`);
  if (q.appUser) parts.push(`application user ${q.appUser}`);
  if (q.customer) parts.push(`customer ${q.customer}`);
  if (q.table) parts.push(`table ${q.table}`);
  if (q.rowId) parts.push(`row ${q.rowId}`);
  if (q.actions.length) parts.push(`action ${q.actions.join('/')}`);
  if (q.outcome) parts.push(`outcome ${q.outcome}`);
  if (q.source) parts.push(`source ${q.source}`);
  return parts.length ? `events: ${parts.join(', ')}` : 'all events';
}
