import { describe, expect, it } from 'vitest';
import { adoptSavedKeys } from '../../src/capture/ingest/ingester.js';
import { identityOf } from '../../src/capture/ingest/log-files.js';

/** Switching `ingest --log-source` between the directory and SQL: a saved position is taken up, never doubled. */
describe('ingest: positions saved by the other log source', () => {
  const file = (name: string, key: string) => ({ name, key, size: 100, mtimeMs: 1 });
  it('a directory file takes up the position SQL saved for the same name and first bytes, and the other way round', () => {
    expect(identityOf('2049:1234:abcd')).toBe('abcd');
    expect(identityOf('sql:postgresql-Mon.csv:abcd')).toBe('abcd');
    const fromDir = adoptSavedKeys([file('a.csv', '2049:7:aaaa'), file('b.csv', '2049:8:bbbb')], [{ file_key: 'sql:a.csv:aaaa', file_name: 'a.csv' }]);
    expect(fromDir.map((f) => f.key)).toEqual(['sql:a.csv:aaaa', '2049:8:bbbb']);
    const fromSql = adoptSavedKeys([file('a.csv', 'sql:a.csv:aaaa')], [{ file_key: '2049:7:aaaa', file_name: 'a.csv' }]);
    expect(fromSql.map((f) => f.key)).toEqual(['2049:7:aaaa']);
  });

  it('keeps its own keys: a saved key of the same source, a copy under another name, other first bytes, a key claimed already', () => {
    const saved = [
      { file_key: '2049:7:aaaa', file_name: 'a.csv' },
      { file_key: 'sql:c.csv:cccc', file_name: 'c.csv' },
    ];
    const files = [
      file('a.csv', '2049:7:aaaa'), // its own saved key
      file('copy-of-a.csv', '2049:9:aaaa'), // same bytes, another name and inode: another file
      file('c.csv', '2049:3:dddd'), // same name, other first bytes (the name reused): a new file
    ];
    expect(adoptSavedKeys(files, saved).map((f) => f.key)).toEqual(['2049:7:aaaa', '2049:9:aaaa', '2049:3:dddd']);
    // Two SQL listings of one name cannot both take one directory key.
    const twice = adoptSavedKeys([file('a.csv', 'sql:a.csv:aaaa'), file('a.csv', 'sql:a.csv:aaaa')], [{ file_key: '2049:7:aaaa', file_name: 'a.csv' }]);
    expect(twice.map((f) => f.key)).toEqual(['2049:7:aaaa', 'sql:a.csv:aaaa']);
  });
});
