import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import {
  CloudLoggingIngester,
  entryEvents,
  entryLine,
  joinChunks,
  lineKey,
  windowFilter,
  type CloudLogEntry,
  type CloudLoggingApi,
} from '../../src/capture/ingest/cloud-logging.js';
import { classify, protectedTables } from '../../src/capture/ingest/pgaudit.js';
import { createLogger } from '../../src/log.js';

const entry = (id: string, at: string, r: NonNullable<NonNullable<CloudLogEntry['protoPayload']>['request']>): CloudLogEntry => ({
  insertId: id,
  timestamp: at,
  protoPayload: { request: { '@type': 'type.googleapis.com/google.cloud.sql.audit.v1.PgAuditEntry', ...r } },
});
const read = (statement: string, more: object = {}) => ({
  auditType: 'OBJECT',
  auditClass: 'READ',
  command: 'SELECT',
  objectType: 'TABLE',
  object: 'public.customers',
  database: 'clinic',
  user: 'app_login',
  databaseSessionId: 4711,
  statementId: 3,
  substatementId: 1,
  statement,
  parameter: '<not logged>',
  ...more,
});
const tables = protectedTables([
  { schema_name: 'public', table_name: 'customers', protected_schema: 'public', protected_table: 'customers', relation: null, read_context: false },
]);

describe('Cloud Logging entries as pgaudit lines', () => {
  it('asks for the instance, the PgAuditEntry types and one window, in the filter language', () => {
    expect(windowFilter({ project: 'p-1', instance: 'db' }, Date.UTC(2026, 11, 7, 12), Date.UTC(2026, 11, 7, 12, 10))).toBe(
      'logName="projects/p-1/logs/cloudaudit.googleapis.com%2Fdata_access" AND ' +
        'protoPayload.request."@type"=("type.googleapis.com/google.cloud.sql.audit.v1.PgAuditEntry" OR "type.googleapis.com/google.cloud.alloydb.audit.v1.PgAuditEntry") AND ' +
        '(resource.labels.database_id="p-1:db" OR resource.labels.instance_id="db") AND ' +
        'timestamp>="2026-12-07T12:00:00.000Z" AND timestamp<"2026-12-07T12:10:00.000Z"',
    );
  });

  it('joins chunks in their order whatever order they came in, and names the chunks that never came', () => {
    const at = '2026-12-07T12:00:00.123456Z';
    const joined = joinChunks([
      entry('c', at, read('ccc', { chunkCount: '3', chunkIndex: '3', parameter: '' })),
      entry('a', at, read('aaa', { chunkCount: '3', chunkIndex: '1' })),
      entry('b', at, read('bbb', { chunkCount: '3', chunkIndex: '2', parameter: '' })),
      entry('x', at, read('whole', { statementId: 4 })),
      entry('y1', at, read('first', { statementId: 5, chunkCount: 2, chunkIndex: 1 })),
    ]);
    expect(joined.map((j) => [j.first.insertId, j.statement, j.missing])).toEqual([
      ['a', 'aaabbbccc', []],
      ['x', 'whole', []],
      ['y1', 'first', [2]],
    ]);
  });

  it('becomes the csvlog line pgaudit writes, so the one classifier reads it: quotes, commas and newlines in the statement included', () => {
    const statement = 'SELECT "full_name", \'a,b\' FROM customers\nWHERE id = 7';
    const [j] = joinChunks([entry('e1', '2026-12-07T12:00:00.5Z', read(statement))]);
    const line = entryLine(j!);
    const c = classify(line, { database: 'clinic', tables, statementMaxLength: 2000, contextOf: () => undefined });
    expect(c.kind).toBe('event');
    if (c.kind !== 'event') return;
    expect(c.event).toMatchObject({
      action: 'SELECT',
      outcome: 'success',
      schemaName: 'public',
      tableName: 'customers',
      statement,
      sessionUserName: 'app_login',
      occurredAt: '2026-12-07T12:00:00.5Z',
      logSessionId: 'gcl:2026-12-07T12:00:00.5Z/e1',
      logLineNum: 0,
      appContext: 'unknown',
    });
    // Another database's entry, and a session-audit line, are not this database's events.
    for (const other of [{ database: 'other' }, { auditType: 'SESSION' }]) {
      const l = entryLine(joinChunks([entry('e2', 'x', read('s', other))])[0]!);
      expect(classify(l, { database: 'clinic', tables, statementMaxLength: 2000, contextOf: () => undefined }).kind).toBe('ignored');
    }
  });

  it('as events: each keyed by its line, lost chunks noted beside it, an entry that is no pgaudit line recorded rather than dropped', () => {
    const at = '2026-12-07T12:00:00.123456Z';
    const joined = joinChunks([
      entry('w', at, read('whole')),
      entry('p1', at, read('part', { statementId: 5, chunkCount: 2, chunkIndex: 1 })),
      // an object name that breaks pgaudit's CSV (nothing the server writes; a made-up entry could)
      entry('m', at, read('odd', { statementId: 6, object: '"public.customers' })),
      entry('o', at, read('elsewhere', { statementId: 7, database: 'other', chunkCount: 2, chunkIndex: 1 })),
    ]);
    const out = entryEvents(joined, { database: 'clinic', tables, statementMaxLength: 2000, where: 'Cloud Logging' });
    expect([out.ignored, out.malformed, out.lost]).toEqual([1, 1, 1]);
    expect(out.events.map((e) => [e.action, e.logSessionId, e.logLineNum])).toEqual([
      ['SELECT', 'gcl:2026-12-07T12:00:00.123456Z/w', 0],
      ['SELECT', lineKey(joined[1]!), 0],
      ['LOG LINES MISSING', lineKey(joined[1]!), 1],
      ['UNREADABLE LOG RECORD', 'gcl:2026-12-07T12:00:00.123456Z/m', 0],
    ]);
    expect(out.events[3]).toMatchObject({ sessionUserName: 'app_login', error: 'AUDIT payload is not pgaudit CSV; its text is not trusted' });
    expect(out.events[3]!.statement).toMatch(/^Cloud Logging entry m at 2026-12-07T12:00:00.123456Z: AUDIT: OBJECT,6,1,READ,SELECT,TABLE,"public.customers,/);
  });
});

/**
 * The ingester's windows against a stub connection that records what would be stored: a window
 * holding more entries than it may hold at once is halved, and the windows follow each other
 * without gap or overlap, each with its receipt and position in one transaction.
 */
describe('CloudLoggingIngester windows', () => {
  /** An ingester of 1-minute windows from t0, reading entries as soon as they are stamped. */
  const windowed = (t0: number) => ({
    where: { project: 'p', instance: 'db' },
    statementMaxLength: 2000,
    log: createLogger('silent'),
    lagMs: 0,
    maxWindowMs: 60_000,
    startMs: t0,
  });

  function stubClient() {
    const log: { sql: string; params: unknown[] }[] = [];
    let saved: number | null = null;
    const client = {
      query: async (sql: string, params: unknown[] = []) => {
        log.push({ sql, params });
        if (sql.startsWith('SELECT current_database')) return { rows: [{ db: 'clinic' }] };
        if (sql.startsWith('SELECT byte_offset')) return { rows: saved === null ? [] : [{ byte_offset: String(saved) }] };
        if (sql.includes('FROM audit.watched_relations'))
          return {
            rows: [
              { schema_name: 'public', table_name: 'customers', protected_schema: 'public', protected_table: 'customers', relation: null, read_context: false },
            ],
          };
        if (sql.includes('INSERT INTO audit.ingest_files')) saved = Number(params[2]);
        if (sql.includes('INSERT INTO audit.audit_log') && sql.includes('unnest')) return { rows: [], rowCount: (params[0] as unknown[]).length };
        return { rows: [], rowCount: 0 };
      },
    };
    return { client: client as unknown as pg.Client, log, saved: () => saved };
  }

  it('halves a window that holds too many entries, and the windows meet exactly', async () => {
    const t0 = Date.UTC(2026, 11, 7, 12);
    // 100 entries a second for 60 seconds
    const all = Array.from({ length: 6000 }, (_, i) => entry(`e${i}`, new Date(t0 + i * 10).toISOString(), read(`SELECT ${i}`)));
    const calls: { from: string; to: string }[] = [];
    const api: CloudLoggingApi = {
      async list(filter, token) {
        const from = /timestamp>="([^"]+)"/.exec(filter)![1]!;
        const to = /timestamp<"([^"]+)"/.exec(filter)![1]!;
        if (!token) calls.push({ from, to });
        const match = all.filter((e) => e.timestamp >= from && e.timestamp < to);
        const start = Number(token ?? 0);
        return { entries: match.slice(start, start + 1000), ...(start + 1000 < match.length ? { nextPageToken: String(start + 1000) } : {}) };
      },
    };
    const stub = stubClient();
    const ing = new CloudLoggingIngester(stub.client, api, {
      ...windowed(t0),
      maxWindowEntries: 2500,
      now: () => t0 + 60_000,
    });
    const stats = await ing.runOnce();
    expect(stats.events).toBe(6000);
    expect(stub.saved()).toBe(t0 + 60_000);
    const receipts = stub.log
      .filter((q) => q.sql.includes("'RECEIPT'"))
      .map((q) => JSON.parse(q.params[0] as string) as { from: number; to: number; lines: number });
    // 60 s of 6,000 entries, at most 2,500 a window (and the page that passed it): [0, 60) is halved,
    // the listing of [0, 30) ends on its third page (3,000), and [30, 60) holds as many.
    expect(receipts.map((r) => [r.from - t0, r.to - t0, r.lines])).toEqual([
      [0, 30_000, 3000],
      [30_000, 60_000, 3000],
    ]);
    expect(calls[0]).toEqual({ from: new Date(t0).toISOString(), to: new Date(t0 + 60_000).toISOString() });
  });

  it('an idle log writes one receipt a full window, not one a poll: an empty window is read again, longer, until it is full', async () => {
    const t0 = Date.UTC(2026, 11, 7, 12);
    let now = t0 + 5_000;
    const asked: string[] = [];
    const api: CloudLoggingApi = {
      async list(filter) {
        asked.push(/timestamp<"([^"]+)"/.exec(filter)![1]!);
        return { entries: [] };
      },
    };
    const stub = stubClient();
    const ing = new CloudLoggingIngester(stub.client, api, {
      ...windowed(t0),
      now: () => now,
    });
    const receipts = () =>
      stub.log.filter((q) => q.sql.includes("'RECEIPT'")).map((q) => JSON.parse(q.params[0] as string) as { from: number; to: number; lines: number });
    for (; now < t0 + 60_000; now += 5_000) await ing.runOnce(); // eleven polls of a quiet log
    expect(receipts()).toEqual([]);
    expect(stub.saved()).toBe(t0); // the first run's starting point, not moved
    expect(asked.slice(0, 2)).toEqual([new Date(t0 + 5_000).toISOString(), new Date(t0 + 10_000).toISOString()]); // read again, longer
    await ing.runOnce(); // now the window is a full one
    expect(receipts().map((r) => [r.from - t0, r.to - t0, r.lines])).toEqual([[0, 60_000, 0]]);
    expect(stub.saved()).toBe(t0 + 60_000);
  });
});
