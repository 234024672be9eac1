import { describe, expect, it } from 'vitest';
import { CsvRecordStream, parseCsvLine } from '../../src/capture/ingest/csv.js';

const read = (buf: Buffer, from = 0) => new CsvRecordStream(from, 1 << 20).push(buf);

describe('CsvRecordStream, whole buffers', () => {
  it('splits plain, quoted, escaped and multi-line fields, with byte offsets', () => {
    const text = 'a,b,c\n"x,1","say ""hi""",\n"line1\nline2",é,z\n';
    const buf = Buffer.from(text);
    const records = read(buf);
    expect(records.map((r) => r.fields)).toEqual([
      ['a', 'b', 'c'],
      ['x,1', 'say "hi"', ''],
      ['line1\nline2', 'é', 'z'],
    ]);
    expect(records.map((r) => r.end)).toEqual([6, 6 + 20, buf.length]);
  });

  it('leaves an unterminated record (no newline yet) for the next read', () => {
    const s = new CsvRecordStream(0, 1 << 20);
    expect(s.push(Buffer.from('a,b\nc,"still\nopen'))).toHaveLength(1);
    expect(s.openRecordStart).toBe(4);
  });

  it('keeps a newline inside quotes from ending the record even at the buffer end', () => {
    expect(read(Buffer.from('"a\n'))).toEqual([]);
  });

  it('resumes from an offset', () => {
    const buf = Buffer.from('one\ntwo,2\n');
    expect(read(buf.subarray(4), 4)).toEqual([{ fields: ['two', '2'], start: 4, end: 10, truncated: false }]);
  });
});

describe('parseCsvLine', () => {
  it('parses a pgaudit payload whose statement is quoted CSV inside CSV', () => {
    const f = parseCsvLine('OBJECT,3,1,READ,SELECT,TABLE,public.customers,"SELECT id, full_name FROM customers WHERE id = 1;",<not logged>');
    expect(f).toEqual(['OBJECT', '3', '1', 'READ', 'SELECT', 'TABLE', 'public.customers', 'SELECT id, full_name FROM customers WHERE id = 1;', '<not logged>']);
    expect(parseCsvLine('OBJECT,3,1,READ,SELECT,TABLE,public.customers,"SELECT cut shor')).toBeNull(); // a cut payload: not one whole record
  });
});

describe('CsvRecordStream', () => {
  const sample = 'a,b,c\n"x,1","say ""hi""",\n"line1\nline2",é,z\n"",""""\n,\n';

  it('reads the same records whatever the chunk boundaries (every split of the sample)', () => {
    const buf = Buffer.from(sample);
    const whole = read(buf);
    expect(whole.map((r) => r.fields)).toEqual([
      ['a', 'b', 'c'],
      ['x,1', 'say "hi"', ''],
      ['line1\nline2', 'é', 'z'],
      ['', '"'],
      ['', ''],
    ]);
    for (let size = 1; size <= buf.length; size++) {
      const s = new CsvRecordStream(100, 1 << 20);
      const got = [];
      for (let at = 0; at < buf.length; at += size) got.push(...s.push(buf.subarray(at, at + size)));
      expect(
        got.map((r) => r.fields),
        `chunks of ${size}`,
      ).toEqual(whole.map((r) => r.fields));
      expect(got.map((r) => r.end - 100)).toEqual(whole.map((r) => r.end));
      expect(got[1]!.start).toBe(106);
      expect(got.every((r) => !r.truncated)).toBe(true);
    }
  });

  it('keeps at most the limit of a field, scans the rest, and goes on with the next record', () => {
    const huge = '"'.repeat(2_000_000); // a statement of quotes, as csvlog doubles them
    const s = new CsvRecordStream(0, 1000);
    const text = Buffer.from(`2026-01-01,"${huge}",x\nnext,1\n`);
    const out = [];
    for (let at = 0; at < text.length; at += 65536) out.push(...s.push(text.subarray(at, at + 65536)));
    expect(out).toHaveLength(2);
    expect(out[0]!.truncated).toBe(true);
    expect(out[0]!.fields[0]).toBe('2026-01-01');
    expect(out[0]!.fields[1]).toBe('"'.repeat(1000));
    expect(out[0]!.fields[2]).toBe('x');
    expect(out[1]).toEqual({ fields: ['next', '1'], start: text.length - 7, end: text.length, truncated: false });
    expect(s.openRecordStart).toBe(text.length);
  });

  it('ends a record the source cut short where its bytes stop, and reads on as at a record start', () => {
    const s = new CsvRecordStream(100, 1 << 20);
    expect(s.push(Buffer.from('a,b\nuser,db,"statement with, a comma and an open quo'))).toEqual([
      { fields: ['a', 'b'], start: 100, end: 104, truncated: false },
    ]);
    expect(s.cutShort()).toEqual({ fields: ['user', 'db', 'statement with, a comma and an open quo'], start: 104, end: 152, truncated: true });
    expect(s.cutShort()).toBeNull(); // nothing open now
    // The next bytes are a record of their own (without the cut, the open quote would have swallowed them).
    expect(s.push(Buffer.from('next,1\n'))).toEqual([{ fields: ['next', '1'], start: 152, end: 159, truncated: false }]);
  });
});
