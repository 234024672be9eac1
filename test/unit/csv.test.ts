import { describe, expect, it } from 'vitest';
import { parseCsvLine, splitCsvRecords } from '../../src/capture/ingest/csv.js';

describe('splitCsvRecords', () => {
  it('splits plain, quoted, escaped and multi-line fields, with byte offsets', () => {
    const text = 'a,b,c\n"x,1","say ""hi""",\n"line1\nline2",é,z\n';
    const buf = Buffer.from(text);
    const { records, consumed } = splitCsvRecords(buf);
    expect(records.map((r) => r.fields)).toEqual([
      ['a', 'b', 'c'],
      ['x,1', 'say "hi"', ''],
      ['line1\nline2', 'é', 'z'],
    ]);
    expect(consumed).toBe(buf.length);
    expect(records.map((r) => r.end)).toEqual([6, 6 + 20, buf.length]);
  });

  it('leaves an unterminated record (no newline yet) for the next read', () => {
    const buf = Buffer.from('a,b\nc,"still\nopen');
    const { records, consumed } = splitCsvRecords(buf);
    expect(records).toHaveLength(1);
    expect(consumed).toBe(4);
  });

  it('keeps a newline inside quotes from ending the record even at the buffer end', () => {
    const buf = Buffer.from('"a\n');
    expect(splitCsvRecords(buf)).toEqual({ records: [], consumed: 0 });
  });

  it('resumes from an offset', () => {
    const buf = Buffer.from('one\ntwo,2\n');
    const { records } = splitCsvRecords(buf, 4);
    expect(records).toEqual([{ fields: ['two', '2'], end: 10 }]);
  });
});

describe('parseCsvLine', () => {
  it('parses a pgaudit payload whose statement is quoted CSV inside CSV', () => {
    const f = parseCsvLine('OBJECT,3,1,READ,SELECT,TABLE,public.customers,"SELECT id, full_name FROM customers WHERE id = 1;",<not logged>');
    expect(f).toEqual(['OBJECT', '3', '1', 'READ', 'SELECT', 'TABLE', 'public.customers',
      'SELECT id, full_name FROM customers WHERE id = 1;', '<not logged>']);
  });
});
