import { describe, expect, it } from 'vitest';
import { JsonlogRecordStream } from '../../src/capture/ingest/jsonlog.js';
import { toLogLine } from '../../src/capture/ingest/csvlog.js';

/**
 * PostgreSQL 15's jsonlog, as the server writes it (jsonlog.c: a flat object a line, keys left out
 * when empty, newlines escaped), read into csvlog's columns so one mapping (toLogLine) serves both.
 */
const LINE =
  '{"timestamp":"2026-12-07 11:19:17.123 UTC","user":"app_login","dbname":"clinic","pid":4242,"remote_host":"10.0.0.5","remote_port":51234,' +
  '"session_id":"674c1a2b.1092","line_num":7,"ps":"SELECT","session_start":"2026-12-07 11:00:00 UTC","vxid":"3/17","txid":0,' +
  '"error_severity":"LOG","state_code":"00000","message":"AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,\\"SELECT full_name FROM customers WHERE id = 9 /* naïve\\\\n\\u00e9 */\\",<not logged>",' +
  '"application_name":"portal","backend_type":"client backend","query_id":0}\n';

describe('jsonlog records', () => {
  it('a pgaudit line reads as the csvlog line it is: same columns, escapes decoded, UTF-8 kept, byte offsets exact', () => {
    const stream = new JsonlogRecordStream(1000, 1 << 20);
    const bytes = Buffer.from(LINE + LINE.replace('"line_num":7', '"line_num":8'), 'utf8');
    const records = stream.push(bytes);
    expect(records.map((r) => [r.start, r.end, r.truncated])).toEqual(
      [
        [1000, 1000 + Buffer.byteLength(LINE)],
        [1000 + Buffer.byteLength(LINE), 1000 + bytes.length],
      ].map(([a, b]) => [a, b, false]),
    );
    const line = toLogLine(records[0]!.fields)!;
    expect(line).toMatchObject({
      logTime: '2026-12-07 11:19:17.123 UTC',
      userName: 'app_login',
      databaseName: 'clinic',
      processId: 4242,
      connectionFrom: '10.0.0.5:51234',
      sessionId: '674c1a2b.1092',
      sessionLineNum: 7,
      commandTag: 'SELECT',
      virtualTransactionId: '3/17',
      errorSeverity: 'LOG',
      sqlStateCode: '00000',
      message: 'AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,"SELECT full_name FROM customers WHERE id = 9 /* naïve\\né */",<not logged>',
      applicationName: 'portal',
      backendType: 'client backend',
    });
    expect(toLogLine(records[1]!.fields)!.sessionLineNum).toBe(8);
    // jsonlog leaves state_code out when it is 0 (a LOG line), which csvlog writes as 00000: pgaudit's
    // own lines are told from forgeries by it.
    const [plain] = new JsonlogRecordStream(0, 1 << 20).push(Buffer.from(LINE.replace('"state_code":"00000",', ''), 'utf8'));
    expect(toLogLine(plain!.fields)!.sqlStateCode).toBe('00000');
    expect(stream.position).toBe(1000 + bytes.length);
  });

  it('the same records whatever the chunks (split inside keys, values, escapes and multi-byte characters)', () => {
    const bytes = Buffer.from(LINE + LINE, 'utf8');
    const whole = new JsonlogRecordStream(0, 1 << 20).push(bytes);
    for (const size of [1, 2, 3, 7, 64]) {
      const s = new JsonlogRecordStream(0, 1 << 20);
      const got = [];
      for (let i = 0; i < bytes.length; i += size) got.push(...s.push(bytes.subarray(i, i + size)));
      expect(got).toEqual(whole);
    }
  });

  it('a value longer than the limit is cut (never in an escape) and says so; memory stays at the limit', () => {
    const long = '\\u00e9'.repeat(100_000); // 600 KB of escapes
    const line = `{"timestamp":"2026-12-07 11:19:17.123 UTC","dbname":"clinic","session_id":"a.1","line_num":1,"message":"${long}","statement":"x"}\n`;
    const [r] = new JsonlogRecordStream(0, 1000).push(Buffer.from(line));
    expect(r!.truncated).toBe(true);
    expect(r!.fields[13]).toBe('é'.repeat(166)); // 996 bytes kept: 166 whole escapes
    expect(r!.fields[19]).toBe('x');
  });

  it('what is not jsonlog is a record with no columns (an unreadable-record event), and the next line reads', () => {
    const lines = ['not json at all\n', '{"timestamp":"2026-12-07 11:19:17.123 UTC","message":"torn\n', LINE];
    const records = new JsonlogRecordStream(0, 1 << 20).push(Buffer.from(lines.join(''), 'utf8'));
    expect(records.map((r) => r.fields.length)).toEqual([0, 0, 26]);
    expect(toLogLine(records[0]!.fields)).toBeNull();
    expect(toLogLine(records[2]!.fields)!.sessionLineNum).toBe(7);
  });
});
