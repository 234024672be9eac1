import { describe, expect, it } from 'vitest';
import { PgoutputDecoder } from '../../src/source/replication-library.js';
import { i32, i64, i8, insertMessage, relationMessage, updateMessage } from '../helpers/pgoutput.js';

/**
 * The pgoutput decoding the stream uses, on byte buffers built as PostgreSQL's protocol 1 writes
 * them (https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html): no server.
 */
const INT4 = 23;
const INT8 = 20;
const TEXT = 25;
const TIMESTAMPTZ = 1184;
const AUDIT_COLUMNS: [string, number][] = [
  ['id', INT8],
  ['occurred_at', TIMESTAMPTZ],
  ['action', TEXT],
];

describe('pgoutput decoding', () => {
  it('leaves an audit_log insert as its bytes once the relation is known, with the column layout', () => {
    const d = new PgoutputDecoder('audit.audit_log');
    const before = d.decode(relationMessage(16400, 'audit', 'audit_log', AUDIT_COLUMNS));
    expect(before).toMatchObject({ tag: 'relation', schema: 'audit', name: 'audit_log', relationOid: 16400 });
    const msg = insertMessage(16400, ['12345678901234567890', '2026-11-29 03:00:00.123456+00', 'SELECT']);
    const out = d.decode(msg);
    expect(out.tag).toBe('audit-insert');
    if (out.tag !== 'audit-insert') return;
    expect(out.tuple.buf).toBe(msg); // not copied, not parsed
    expect(out.tuple.offset).toBe(6); // 'I', relid, 'N': the tuple starts here
    expect(out.tuple.layout.relid).toBe(16400);
    expect(out.tuple.layout.occurredAt).toBe(1);
    expect(Buffer.from(out.tuple.layout.names).toString()).toBe(',"id":,"occurred_at":,"action":');
  });

  it('decodes every other table as the library does, with each value kept as the server wrote it', () => {
    const d = new PgoutputDecoder('audit.audit_log');
    d.decode(relationMessage(16400, 'audit', 'audit_log', AUDIT_COLUMNS));
    d.decode(
      relationMessage(16500, 'public', 'customers', [
        ['id', INT4],
        ['full_name', TEXT],
        ['born', TIMESTAMPTZ],
        ['note', TEXT],
      ]),
    );
    const out = d.decode(insertMessage(16500, ['42', 'Ann', '1990-02-03 04:05:06.123456+00', null]));
    expect(out).toMatchObject({ tag: 'insert', relation: { schema: 'public', name: 'customers' } });
    // Text as written: not the number 42, not a Date (which would lose the microseconds).
    expect((out as { new: Record<string, unknown> }).new).toEqual({ id: '42', full_name: 'Ann', born: '1990-02-03 04:05:06.123456+00', note: null });
  });

  it('decodes a change of audit_log other than an insert in full (it is evidence of tampering)', () => {
    const d = new PgoutputDecoder('audit.audit_log');
    d.decode(relationMessage(16400, 'audit', 'audit_log', AUDIT_COLUMNS));
    const out = d.decode(updateMessage(16400, ['7', '2026-11-29 03:00:00+00', 'UPDATE']));
    expect(out).toMatchObject({ tag: 'update', new: { id: '7', action: 'UPDATE' } });
  });

  it('takes a table of the same name in another schema for what it is', () => {
    const d = new PgoutputDecoder('audit.audit_log');
    d.decode(relationMessage(16600, 'public', 'audit_log', AUDIT_COLUMNS));
    expect(d.decode(insertMessage(16600, ['1', '2026-11-29 03:00:00+00', 'SELECT'])).tag).toBe('insert');
  });

  it('reads begin and commit positions', () => {
    const d = new PgoutputDecoder('audit.audit_log');
    const begin = d.decode(Buffer.concat([Buffer.from('B'), i64(0x1_0000_2000n), i64(786_000_000_000_000n), i32(4711)]));
    expect(begin).toMatchObject({ tag: 'begin', commitLsn: '00000001/00002000', xid: 4711 });
    const commit = d.decode(Buffer.concat([Buffer.from('C'), i8(0), i64(0x1_0000_2000n), i64(0x1_0000_2030n), i64(786_000_000_000_000n)]));
    expect(commit).toMatchObject({ tag: 'commit', commitLsn: '00000001/00002000', commitEndLsn: '00000001/00002030' });
  });
});
