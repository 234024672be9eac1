import { describe, expect, it } from 'vitest';
import { CsvRecordStream } from '../../src/capture/ingest/csv.js';
import { toLogLine, type LogLine } from '../../src/capture/ingest/csvlog.js';
import { attribute, endTransactions, expire, holdRead, sameStatement } from '../../src/capture/ingest/attribution.js';
import { classify, protectedTables, type Classified, type LogAuditEvent, type SessionContext } from '../../src/capture/ingest/pgaudit.js';

// Lines as PostgreSQL 15.18 + pgaudit 1.7.0 wrote them for a role subject to row-level security,
// with audit_read_context on public.customers (sql/migrations/007_read_context.sql).
const S = '6b0b4c1e.2a10';
const head = (n: number, vxid: string) =>
  `2026-11-29 01:05:10.${String(n).padStart(3, '0')} UTC,"rx","memx",10768,"[local]",${S},${n},"SELECT",2026-11-29 01:05:09 UTC,${vxid},0,LOG,00000`;
const LOG =
  [
    // SELECT full_name FROM customers WHERE id = 2 (top level)
    `${head(2, '3/403')},"AUDIT: OBJECT,2,1,READ,SELECT,TABLE,public.customers,SELECT full_name FROM customers WHERE id = 2;,<not logged>",,,,,,,,,"psql","client backend",,0`,
    `${head(3, '3/403')},"audit read context {""user"" : null, ""customer"" : ""2""}",,,,,"PL/pgSQL function audit.read_context() line 3 at RAISE","SELECT full_name FROM customers WHERE id = 2;",,,"psql","client backend",,0`,
    // SELECT read_as(3): a function with SET app.customer_id = '3' reads through SPI
    `${head(4, '3/405')},"AUDIT: OBJECT,4,1,READ,SELECT,TABLE,public.customers,SELECT full_name        FROM customers WHERE id = i,<not logged>",,,,,,,,,"psql","client backend",,0`,
    `${head(5, '3/405')},"audit read context {""user"" : null, ""customer"" : ""3""}",,,,,"PL/pgSQL function audit.read_context() line 3 at RAISE
SQL statement ""SELECT full_name        FROM customers WHERE id = i""
PL/pgSQL function read_as(integer) line 1 at SQL statement","SELECT read_as(3);",,,"psql","client backend",,0`,
    // PREPARE p AS ...; EXECUTE p(2): pgaudit logs the PREPARE's text, the line the EXECUTE
    `${head(6, '3/407')},"AUDIT: OBJECT,5,1,READ,SELECT,TABLE,public.customers,PREPARE p AS SELECT full_name FROM customers WHERE id = $1;,<not logged>",,,,,,,,,"psql","client backend",,0`,
    `${head(7, '3/407')},"audit read context {""user"" : ""dr.who"", ""customer"" : ""2""}",,,,,"PL/pgSQL function audit.read_context() line 3 at RAISE","EXECUTE p(2);",,,"psql","client backend",,0`,
    // a function of another schema writing the same message
    `${head(8, '3/409')},"audit read context {""user"":""x"",""customer"":""1""}",,,,,"PL/pgSQL function read_context() line 1 at RAISE","SELECT public.read_context();",,,"psql","client backend",,0`,
  ].join('\n') + '\n';

function lines(): LogLine[] {
  return new CsvRecordStream(0, 1 << 20).push(Buffer.from(LOG)).map((r) => toLogLine(r.fields)!);
}

const tables = protectedTables([{ schema_name: 'public', table_name: 'customers', read_context: true }]);

/** What the ingester does with each line (ingester.ts, commitChunk), without the database. */
function ingest(input: LogLine[], now = 1000): { events: LogAuditEvent[]; ctx: SessionContext | undefined; classified: Classified[] } {
  let ctx: SessionContext | undefined;
  const events: LogAuditEvent[] = [];
  const classified: Classified[] = [];
  for (const line of input) {
    const ended = endTransactions(ctx, line.virtualTransactionId);
    if (ended) {
      events.push(...ended.done);
      ctx = ended.context;
    }
    const c = classify(line, { database: 'memx', tables, statementMaxLength: 200, contextOf: () => ctx });
    classified.push(c);
    if (c.kind === 'event') events.push(c.event);
    else if (c.kind === 'read') {
      const h = holdRead(c.context, c.read, now);
      events.push(...h.done);
      ctx = h.context;
    } else if (c.kind === 'read-context') {
      const a = attribute(ctx, c.line);
      if (a) {
        events.push(...a.done);
        ctx = a.context;
      }
    }
  }
  return { events, ctx, classified };
}

describe("attribution from the server's read-context lines", () => {
  it('attributes a top-level read, a read inside a function with its own SET clause, and EXECUTE of a prepared read', () => {
    const { events, ctx } = ingest(lines().slice(0, 6));
    expect(events.map((e) => [e.logLineNum, e.appUserId, e.appCustomerId, e.appContext])).toEqual([
      [2, null, '2', null],
      [4, null, '3', null],
      [6, 'dr.who', '2', null],
    ]);
    expect(ctx?.pending).toBeUndefined();
  });

  it('makes a line from any function but audit.read_context() a forgery event, which attributes nothing', () => {
    const all = lines();
    const { events, classified } = ingest([all[0]!, { ...all[6]!, virtualTransactionId: '3/403' }]);
    expect(classified[1]).toMatchObject({ kind: 'event', event: { action: 'FORGED AUDIT LINE', appContext: 'unknown' } });
    expect(events[0]).toMatchObject({ action: 'FORGED AUDIT LINE', error: expect.stringContaining("audit.read_context()'s") });
    // the read stays held: the forgery did not attribute it
    expect(events).toHaveLength(1);
    // a WARNING, or a line with the right frame but an error state, is no context line either
    const [read, genuine] = [all[0]!, all[1]!];
    for (const bad of [
      { ...genuine, errorSeverity: 'WARNING' },
      { ...genuine, context: `x\n${genuine.context}` },
    ]) {
      expect(ingest([read, bad]).events.map((e) => e.action)).toEqual(['FORGED AUDIT LINE']);
    }
  });

  it('writes a read as unknown when its transaction ends, another statement starts, or the wait runs out; never with a later context', () => {
    const [read, ctxLine] = lines();
    // no row returned: no context line; the session's next transaction ends the wait
    const next = { ...read!, virtualTransactionId: '3/404', sessionLineNum: 9 };
    let r = ingest([read!, next]);
    expect(r.events.map((e) => [e.logLineNum, e.appContext])).toEqual([[2, 'unknown']]);
    // the same prepared text run again in the same transaction by a later statement: the first is final before the second's line
    const again = { ...read!, sessionLineNum: 10, message: read!.message.replace('OBJECT,2,1', 'OBJECT,3,1') };
    r = ingest([read!, again, { ...ctxLine!, sessionLineNum: 11 }]);
    expect(r.events.map((e) => [e.logLineNum, e.appCustomerId, e.appContext])).toEqual([
      [2, null, 'unknown'],
      [10, '2', null],
    ]);
    // a self-join: two lines of one statement, each scan writes its own context line
    const other = { ...read!, sessionLineNum: 12 };
    r = ingest([read!, other, ctxLine!, { ...ctxLine!, sessionLineNum: 13 }]);
    expect(r.events.map((e) => [e.logLineNum, e.appCustomerId])).toEqual([
      [2, '2'],
      [12, '2'],
    ]);
    // the wait
    r = ingest([read!], 1000);
    expect(expire(r.ctx!, 999)).toBeNull();
    expect(expire(r.ctx!, 1001)!.done.map((e) => e.appContext)).toEqual(['unknown']);
  });

  it('matches the statement the context line was written in, cut or whole', () => {
    const line = { vxid: '1/1', user: null, customer: null, nested: null, query: 'SELECT 1 FROM t' };
    expect(sameStatement('SELECT 1 FROM t', line)).toBe(true);
    expect(sameStatement('SELECT 1 FROM t2', line)).toBe(false);
    expect(sameStatement('SELECT 1 F…', line)).toBe(true);
    expect(sameStatement('SELECT 1 FROM t', { ...line, nested: 'SELECT 1 FROM t"\nPL/pgSQL function f() line 1 at RETURN' })).toBe(true);
    expect(sameStatement('SELECT 1 FROM t', { ...line, nested: 'SELECT 1 FROM t WHERE x"\nPL/pgSQL function f()' })).toBe(false);
    expect(sameStatement('PREPARE "Q" AS SELECT 1', { ...line, query: 'EXECUTE "Q"(1)' })).toBe(true);
    expect(sameStatement('PREPARE q AS SELECT 1', { ...line, query: 'EXECUTE r' })).toBe(false);
  });
});
