import type { LogAuditEvent, PendingRead, ReadContextLine, SessionContext } from './pgaudit.js';

/**
 * Who a read was for, as the server recorded it. A pgaudit line of a table with audit_read_context
 * is held (in its session's saved context) until the line audit.read_context() writes in the same
 * read: the executor runs that policy as the scan checks its first row, after pgaudit has logged the
 * statement, in the same session, transaction and statement. A read held when no such line can come
 * any more is written with app_context 'unknown':
 * - its transaction ended (a line of its session with another virtual transaction id);
 * - its session ran another statement (pgaudit's statement ID changed) or the same query again;
 * - it waited longer than the ingester's wait (a read that returned no row never has the line).
 * Pure functions on a session's context: each returns the new context and the events now final.
 */
export interface Settled {
  context: SessionContext;
  done: LogAuditEvent[];
}

/** Before any line of a session: its held reads of other transactions are final. */
export function endTransactions(ctx: SessionContext | undefined, vxid: string): Settled | null {
  const pending = ctx?.pending;
  if (!pending?.some((p) => p.vxid !== vxid)) return null;
  return split(ctx!, (p) => p.vxid === vxid);
}

/**
 * Hold a read. Reads of earlier statements are final, and so are earlier runs of the same text in
 * this statement (a function's query run again gets a new substatement ID); the other relations of
 * one statement share its IDs and each get a line of their own.
 */
export function holdRead(ctx: SessionContext, read: Omit<PendingRead, 'heldAt'>, now: number): Settled {
  const settled = split(ctx, (p) => p.statementId === read.statementId && (p.statement !== read.statement || p.substatementId === read.substatementId));
  settled.context.pending = [...(settled.context.pending ?? []), { ...read, heldAt: now }];
  return settled;
}

/** The server's context line: it attributes the oldest held read of the same statement. */
export function attribute(ctx: SessionContext | undefined, line: ReadContextLine): Settled | null {
  const pending = ctx?.pending ?? [];
  const i = pending.findIndex((p) => p.vxid === line.vxid && sameStatement(p.statement, line));
  if (i < 0) return null; // a direct call of audit.read_context(), or a read already written as unknown
  const read = pending[i]!;
  const event: LogAuditEvent = { ...read.event, appUserId: line.user, appCustomerId: line.customer, appContext: null };
  const rest = pending.filter((_, j) => j !== i);
  return { context: withPending(ctx!, rest), done: [event] };
}

/** Reads held since before `before` (ms): final, as unknown. */
export function expire(ctx: SessionContext, before: number): Settled | null {
  if (!ctx.pending?.some((p) => p.heldAt < before)) return null;
  return split(ctx, (p) => p.heldAt >= before);
}

/**
 * Whether the context line was written in the statement pgaudit logged. A read inside a function
 * (run through SPI) is named in the line's context (`SQL statement "<text>"`); a read at top level
 * ran in the statement the client sent. `EXECUTE name` runs what `PREPARE name AS ...` prepared, and
 * pgaudit logs the PREPARE's text. `statement` may be cut (ending in "…"): its kept part must match.
 */
export function sameStatement(statement: string, line: ReadContextLine): boolean {
  const cut = statement.endsWith('…');
  const text = cut ? statement.slice(0, -1) : statement;
  if (line.nested !== null) {
    if (!line.nested.startsWith(text)) return false;
    return cut || line.nested.slice(text.length) === '"' || line.nested.startsWith('"\n', text.length);
  }
  if (cut ? line.query.startsWith(text) : line.query === text) return true;
  const prepared = /^\s*PREPARE\s+("(?:[^"]|"")+"|[^\s(]+)/i.exec(text)?.[1];
  const executed = /^\s*EXECUTE\s+("(?:[^"]|"")+"|[^\s(;]+)/i.exec(line.query)?.[1];
  return prepared !== undefined && executed !== undefined && sameName(prepared, executed);
}

function sameName(a: string, b: string): boolean {
  const norm = (n: string): string => (n.startsWith('"') ? n.slice(1, -1).replaceAll('""', '"') : n.toLowerCase());
  return norm(a) === norm(b);
}

function split(ctx: SessionContext, keep: (p: PendingRead) => boolean): Settled {
  const pending = ctx.pending ?? [];
  return { context: withPending(ctx, pending.filter(keep)), done: pending.filter((p) => !keep(p)).map((p) => p.event) };
}

function withPending(ctx: SessionContext, pending: PendingRead[]): SessionContext {
  const next: SessionContext = { ...ctx };
  if (pending.length > 0) next.pending = pending;
  else delete next.pending;
  return next;
}
