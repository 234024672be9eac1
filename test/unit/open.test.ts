import { describe, expect, it } from 'vitest';
import { fileArchivePath, parseRetention } from '../../src/sink/open.js';

describe('archive settings that would fail later are refused at start', () => {
  it('a file:// URL with a host (file://tmp/x would write to /x)', () => {
    expect(fileArchivePath('file:///var/lib/audit')).toBe('/var/lib/audit');
    expect(fileArchivePath('file://localhost/var/lib/audit')).toBe('/var/lib/audit');
    expect(fileArchivePath('file:///tmp/with%20space')).toBe('/tmp/with space');
    expect(() => fileArchivePath('file://tmp/x')).toThrow(
      '--archive (AUDIT_ARCHIVE) file://tmp/x names a host (tmp): a local archive is file:///absolute/path, e.g. file:///tmp/x',
    );
  });

  it('a retention longer than Object Lock keeps (every upload would fail, forever)', () => {
    expect(parseRetention('6y', false)).toEqual({ years: 6 });
    expect(parseRetention('100y', false)).toEqual({ years: 100 });
    expect(() => parseRetention('300000y', false)).toThrow('--retention 300000y is longer than 100 years (36500 days), the most Object Lock keeps');
    expect(() => parseRetention('36501d', false)).toThrow(/longer than 100 years/);
  });
});
