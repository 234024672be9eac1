import { describe, expect, it } from 'vitest';
import { CsvRecordStream } from '../../src/capture/ingest/csv.js';
import { toLogLine } from '../../src/capture/ingest/csvlog.js';
import { classify, parseQualifiedName, protectedTables, type SessionContext } from '../../src/capture/ingest/pgaudit.js';

// Lines as PostgreSQL 15 + pgaudit 1.7 wrote them on a test cluster.
const LOG =
  [
    `2026-11-26 23:51:06.480 UTC,"app_login","clinic",4196,"10.1.2.3:51234",6b08c5ea.1064,1,"SET",2026-11-26 23:51:06 UTC,3/45,0,LOG,00000,"AUDIT: SESSION,1,1,MISC,SET,,,SET app.user_id = 'dr.smith';,<not logged>",,,,,,,,,"clinic-web","client backend",,0`,
    `2026-11-26 23:51:06.485 UTC,"app_login","clinic",4196,"10.1.2.3:51234",6b08c5ea.1064,3,"SELECT",2026-11-26 23:51:06 UTC,3/48,0,LOG,00000,"AUDIT: OBJECT,3,1,READ,SELECT,TABLE,public.customers,""SELECT id, full_name FROM customers WHERE id = 1;"",<not logged>",,,,,,,,,"clinic-web","client backend",,0`,
    `2026-11-26 23:51:06.486 UTC,"app_login","clinic",4196,"10.1.2.3:51234",6b08c5ea.1064,4,"UPDATE",2026-11-26 23:51:06 UTC,3/49,0,LOG,00000,"AUDIT: OBJECT,4,1,WRITE,UPDATE,TABLE,public.customers,UPDATE customers SET full_name = 'Ann B' WHERE id = 1;,<not logged>",,,,,,,,,"clinic-web","client backend",,0`,
    `2026-11-26 23:51:06.500 UTC,"ship_login","clinic",4198,"[local]",6b08c5ea.1066,1,"SELECT",2026-11-26 23:51:06 UTC,3/54,0,ERROR,42501,"permission denied for table customers",,,,,,"select * from customers",,,"psql","client backend",,0`,
    `2026-11-26 23:51:06.489 UTC,"app_login","clinic",4196,"[local]",6b08c5ea.1064,8,"DELETE",2026-11-26 23:51:06 UTC,3/52,0,ERROR,42501,"permission denied for schema audit",,,,,,"DELETE FROM audit.audit_log;",13,,"clinic-web","client backend",,0`,
    `2026-11-26 23:51:06.600 UTC,"app_login","other_db",4199,"[local]",6b08c5ea.1067,1,"SELECT",2026-11-26 23:51:06 UTC,3/60,0,LOG,00000,"AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,select 1 from customers,<not logged>",,,,,,,,,"psql","client backend",,0`,
  ].join('\n') + '\n';

function records(text: string) {
  return new CsvRecordStream(0, 1 << 20).push(Buffer.from(text));
}

function lines() {
  return records(LOG).map((r) => toLogLine(r.fields)!);
}

describe('classify', () => {
  const tables = protectedTables([{ schema_name: 'public', table_name: 'customers' }]);
  const sessions = new Map<string, SessionContext>();
  const run = () => lines().map((l) => classify(l, { database: 'clinic', tables, statementMaxLength: 20, contextOf: (id) => sessions.get(id) }));

  it('turns object READ lines into success events; a SET line changes no attribution (the server says it, attribution.ts)', () => {
    const out = run();
    expect(out[0]).toEqual({ kind: 'ignored' });
    expect(out[1]).toMatchObject({
      kind: 'event',
      event: {
        occurredAt: '2026-11-26 23:51:06.485 UTC',
        action: 'SELECT',
        outcome: 'success',
        schemaName: 'public',
        tableName: 'customers',
        sessionUserName: 'app_login',
        appUserId: null,
        appCustomerId: null,
        appContext: 'unknown',
        applicationName: 'clinic-web',
        clientAddr: '10.1.2.3',
        clientPort: 51234,
        backendPid: 4196,
        txid: null,
        statement: 'SELECT id, full_nam…',
        error: null,
        logSessionId: '6b08c5ea.1064',
        logLineNum: 3,
      },
    });
  });

  it('holds a read of a table with audit_read_context for its context line, with pgaudit statement and substatement IDs', () => {
    const ctxTables = protectedTables([{ schema_name: 'public', table_name: 'customers', read_context: true }]);
    const c = classify(lines()[1]!, { database: 'clinic', tables: ctxTables, statementMaxLength: 200, contextOf: () => undefined });
    expect(c).toMatchObject({
      kind: 'read',
      sessionId: '6b08c5ea.1064',
      read: {
        vxid: '3/48',
        statementId: '3',
        substatementId: '1',
        statement: 'SELECT id, full_name FROM customers WHERE id = 1;',
        event: { action: 'SELECT', appContext: 'unknown' },
      },
    });
  });

  it('records object WRITE lines as statement-level events (source pgaudit), and leaves other databases alone', () => {
    const out = run();
    expect(out[2]).toMatchObject({ kind: 'event', event: { action: 'UPDATE', outcome: 'success', tableName: 'customers', appContext: 'unknown' } });
    expect(out[5]).toEqual({ kind: 'ignored' });
  });

  it('marks a statement pgaudit logged as failed when its ERROR line follows, keeping only the SQLSTATE', () => {
    const ctx = new Map<string, SessionContext>();
    const opts = { database: 'clinic', tables, statementMaxLength: 200, contextOf: (id: string) => ctx.get(id) };
    const write = {
      ...lines()[2]!,
      message: `AUDIT: OBJECT,4,1,WRITE,UPDATE,TABLE,public.customers,UPDATE customers SET id = full_name::int WHERE id = 2,<not logged>`,
    };
    const c = classify(write, opts);
    if (c.kind !== 'event') throw new Error('not an event');
    ctx.set(c.sessionId!, c.context!);
    const error = {
      ...write,
      errorSeverity: 'ERROR',
      sqlStateCode: '22P02',
      message: 'invalid input syntax for type integer: "Ann Smith"',
      query: 'UPDATE customers SET id = full_name::int WHERE id = 2',
      sessionLineNum: 5,
    };
    const failed = classify(error, opts);
    expect(failed).toMatchObject({
      kind: 'event',
      event: {
        action: 'UPDATE',
        outcome: 'failure',
        tableName: 'customers',
        error: "22P02: the statement failed (the server's message is not kept: it may quote values)",
      },
    });
    expect(JSON.stringify(failed)).not.toContain('Ann Smith');
    // Another statement's error, or the same text in another transaction, is not this statement's.
    expect(classify({ ...error, query: 'SELECT 1/0' }, opts)).toEqual({ kind: 'ignored' });
    expect(classify({ ...error, virtualTransactionId: '3/999' }, opts)).toEqual({ kind: 'ignored' });
  });

  it('records denied access to a protected table and to the audit schema as failures', () => {
    const out = run();
    expect(out[3]).toMatchObject({
      kind: 'event',
      event: {
        outcome: 'failure',
        action: 'SELECT',
        schemaName: 'public',
        tableName: 'customers',
        error: '42501: permission denied for table customers',
        sessionUserName: 'ship_login',
        clientAddr: null,
      },
    });
    expect(out[4]).toMatchObject({
      kind: 'event',
      event: {
        outcome: 'failure',
        action: 'DELETE',
        schemaName: 'audit',
        tableName: 'audit_log',
      },
    });
  });

  it('takes an AUDIT line only from pgaudit: one raised from a function (any severity) is a forgery event, never a read', () => {
    // As PostgreSQL 15 wrote `DO $$ BEGIN RAISE LOG 'AUDIT: ...'; END $$` (context and statement present).
    const forged = toLogLine(
      records(
        `2026-11-28 19:59:21.560 UTC,"app_login","clinic",22670,"[local]",6b0b3299.588e,2,"DO",2026-11-28 19:59:21 UTC,3/8051,0,LOG,00000,"AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,""SELECT 4711"",<not logged>",,,,,"PL/pgSQL function inline_code_block line 1 at RAISE","DO $$ BEGIN RAISE LOG 'AUDIT: ...'; END $$",,,"psql","client backend",,0\n`,
      )[0]!.fields,
    )!;
    const opts = { database: 'clinic', tables, statementMaxLength: 200, contextOf: () => undefined };
    expect(classify(forged, opts)).toMatchObject({
      kind: 'event',
      event: {
        action: 'FORGED AUDIT LINE',
        outcome: 'failure',
        schemaName: null,
        tableName: null,
        sessionUserName: 'app_login',
        statement: 'AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,"SELECT 4711",<not logged>',
        error: "a LOG line that claims to be pgaudit's, written from: PL/pgSQL function inline_code_block line 1 at RAISE",
      },
    });
    // Each column pgaudit leaves empty decides on its own.
    for (const col of ['context', 'query', 'detail', 'hint', 'internalQuery'] as const) {
      const genuine = lines()[1]!;
      expect(classify(genuine, opts).kind).toBe('event');
      expect(classify({ ...genuine, [col]: 'x' }, opts)).toMatchObject({ event: { action: 'FORGED AUDIT LINE' } });
    }
    expect(classify({ ...lines()[0]!, context: 'PL/pgSQL function f() line 3 at RAISE' }, opts)).toMatchObject({
      kind: 'event',
      event: { action: 'FORGED AUDIT LINE' },
    });
    expect(classify({ ...lines()[1]!, errorSeverity: 'WARNING' }, opts)).toMatchObject({ event: { action: 'FORGED AUDIT LINE' } });
  });

  it('matches protected tables whose names need quoting, as pgaudit quotes them', () => {
    const quoted = protectedTables([
      { schema_name: 'clinic', table_name: 'PatientNotes' },
      { schema_name: 'clinic', table_name: 'user' },
      { schema_name: 'My Schema', table_name: 'a.b"c' },
    ]);
    const read = (name: string) =>
      classify(
        { ...lines()[1]!, message: `AUDIT: OBJECT,3,1,READ,SELECT,TABLE,${name},SELECT 1,<not logged>` },
        { database: 'clinic', tables: quoted, statementMaxLength: 20, contextOf: () => undefined },
      );
    expect(read('clinic."PatientNotes"')).toMatchObject({ kind: 'event', event: { schemaName: 'clinic', tableName: 'PatientNotes' } });
    expect(read('clinic."user"')).toMatchObject({ kind: 'event', event: { tableName: 'user' } });
    // In pgaudit's CSV a name with quotes is itself quoted: "My Schema"."a.b""c" becomes """My Schema"".""a.b""""c""".
    expect(read('"""My Schema"".""a.b""""c"""')).toMatchObject({ kind: 'event', event: { schemaName: 'My Schema', tableName: 'a.b"c' } });
    expect(read('clinic.patientnotes')).toEqual({ kind: 'ignored' });
    expect(parseQualifiedName('a.b.c')).toBeNull();
    expect(parseQualifiedName('"a.b"')).toBeNull();
    expect(parseQualifiedName('"unterminated.x')).toBeNull();
  });

  it('reads a message cut between the two quotes of a doubled one (a quote in the statement)', () => {
    // pgaudit's statement field `"SELECT 'a""b'..."` cut just after the first quote of the pair.
    const l = { ...lines()[1]!, message: `AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,"SELECT 'a"` };
    expect(classify(l, { database: 'clinic', tables, statementMaxLength: 200, contextOf: () => undefined })).toMatchObject({
      kind: 'event',
      event: { action: 'SELECT', tableName: 'customers', statement: `SELECT 'a` },
    });
  });

  it('calls a line with a broken AUDIT payload malformed', () => {
    const l = { ...lines()[1]!, message: 'AUDIT: OBJECT,"unterminated' };
    expect(classify(l, { database: 'clinic', tables, statementMaxLength: 20, contextOf: () => undefined }).kind).toBe('malformed');
  });
});
