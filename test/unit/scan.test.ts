import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Batch } from '../../src/seal/batch.js';
import { keyIdOf, type SigningKey } from '../../src/seal/keys.js';
import { sealBatch, sealHeartbeat, type ArchiveHead } from '../../src/seal/sealer.js';
import { timeKey } from '../../src/seal/event-time.js';
import { fileArchive } from '../../src/sink/file/file-archive.js';
import type { ArchiveReader } from '../../src/sink/sink.js';
import type { Lsn } from '../../src/source/lsn.js';

const asLsn = (n: bigint): Lsn => n as Lsn;
import { EVERYTHING, matches, type Query } from '../../src/query/filter.js';
import { scanArchive, ScanCancelled } from '../../src/query/scan.js';
import { scanSummary } from '../../src/query/report.js';
import type { ArchivedRecord } from '../../src/verify/file.js';
import { downgradeToFormat2 } from '../../bench/synthetic-archive.js';
import { readArchive } from '../helpers/archive.js';
import { EMPTY_HEAD } from '../../src/ship/resume.js';

function signingKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return { keyId: keyIdOf(publicKey), privateKey, publicKey };
}

/**
 * Thirty days of a clinic's audit trail, sealed as the shipper seals it: three files per commit
 * date, a heartbeat after each day, events spread over the day. Built with the sealer directly,
 * because a real database cannot be made to commit on other dates.
 */
async function monthArchive(): Promise<{ root: string; key: SigningKey }> {
  const root = path.join(await mkdtemp(path.join(tmpdir(), 'pgas-scan-')), 'archive');
  const archive = fileArchive(root);
  const key = signingKey();
  const source = { systemIdentifier: '7000000000000000001', timeline: 1, database: 'clinic', slot: 'pg_audit_shipper' };
  let head: ArchiveHead = EMPTY_HEAD;
  let lsn = 0x1000000n;
  let id = 0;
  for (let day = 1; day <= 30; day++) {
    const date = `2026-04-${String(day).padStart(2, '0')}`;
    for (let f = 0; f < 3; f++) {
      const batch = new Batch(head.position, date);
      for (let i = 0; i < 20; i++) {
        lsn += 0x100n;
        id++;
        const hh = String(f * 8 + Math.floor(i / 3)).padStart(2, '0');
        batch.append({
          op: 'insert',
          commitLsn: asLsn(lsn),
          idx: 0,
          row: {
            id: String(id),
            occurred_at: `${date} ${hh}:${String(i * 2).padStart(2, '0')}:07.25+00`,
            source: i === 5 ? 'pgaudit' : 'trigger',
            action: i % 4 === 0 ? 'SELECT' : 'UPDATE',
            outcome: 'success',
            schema_name: 'public',
            table_name: 'customers',
            row_id: String(id % 50),
            session_user_name: 'app',
            // one read in twenty the server could not attribute (a read that returned no row)
            ...(i === 5 ? { app_context: 'unknown' } : { app_customer_id: String(id % 50) }),
          },
        });
      }
      batch.ackLsn = asLsn(lsn);
      const sealed = await sealBatch(batch, head, source, key, new Date(`${date}T23:00:00Z`));
      for (const o of sealed.objects) await archive.sink.put(o);
      head = { fileSeq: sealed.fileSeq, digestSha256: sealed.digestSha256, position: sealed.position, ackLsn: sealed.ackLsn, lastWrittenAt: 0 };
    }
    const hb = sealHeartbeat(head, source, key, asLsn(lsn), new Date(`${date}T23:59:00Z`));
    for (const o of hb.objects) await archive.sink.put(o);
    head = { ...head, fileSeq: hb.fileSeq, digestSha256: hb.digestSha256 };
  }
  return { root, key };
}

// Day d's data files are 4d-3 .. 4d-1; file f of the day holds ids ((d-1)*3+f)*20 + 1 .. +20, customer id % 50 (the sixth unattributed).
const ALL_FILES = Array.from({ length: 90 }, (_, k) => 4 * Math.floor(k / 3) + (k % 3) + 1);
/** the files of 2026-04-10 from noon to 2026-04-12, as the first test's range reads them */
const RANGE_FILES = [38, 39, 41, 42, 43];

function customersOf(fileSeq: number): Set<string> {
  const k = fileSeq - 1 - Math.floor((fileSeq - 1) / 4); // data files before it
  const out = new Set<string>();
  for (let i = 0; i < 20; i++) if (i !== 5) out.add(String((k * 20 + i + 1) % 50));
  return out;
}

function dataFileOfRecord(seq: number): number {
  return ALL_FILES[Math.floor((seq - 1) / 20)]!;
}

function dataRead(gets: string[]): number[] {
  return gets
    .filter((k) => k.startsWith('data/'))
    .map((k) => Number(/(\d{12})-/.exec(k)![1]))
    .sort((a, b) => a - b);
}

/** Search RANGE_FILES' time range, counting reads; the answer must be what a full read of `records` answers. */
async function scanRange(root: string, keys: Map<string, SigningKey>, records: ArchivedRecord[], ask: Partial<Query>) {
  const q: Query = { ...EVERYTHING, from: timeKey('2026-04-10T12:00:00Z'), to: timeKey('2026-04-12'), ...ask };
  const c = counting(fileArchive(root).reader);
  const seen: number[] = [];
  const report = await scanArchive(c.reader, {
    keys,
    query: q,
    maxCommitDelayMs: 86_400_000,
    onMatches: (_f, m) => void seen.push(...m.map((l) => l.record.seq)),
  });
  expect(report.findings).toEqual([]);
  expect(seen).toEqual(records.filter((r) => matches(r, q)).map((r) => r.seq));
  return { q, c, report, seen };
}

/** A reader that remembers what was listed and read. */
function counting(reader: ArchiveReader): { reader: ArchiveReader; gets: string[]; listed: string[] } {
  const gets: string[] = [];
  const listed: string[] = [];
  return {
    gets,
    listed,
    reader: {
      get: (k) => {
        gets.push(k);
        return reader.get(k);
      },
      exists: (k) => reader.exists(k),
      list: (p, s) => {
        listed.push(`${p}${s ? ` after ${s}` : ''}`);
        return reader.list(p, s);
      },
    },
  };
}

describe('scanArchive', () => {
  it('reads only the digests and files of the range, and answers exactly what a full read answers', async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    const { records } = await readArchive(root, keys);
    expect(records.length).toBe(30 * 3 * 20);

    const { c, report, seen } = await scanRange(root, keys, records, { actions: ['UPDATE'] });
    expect(seen.length).toBeGreaterThan(0);

    // Files are 4 per day (3 data + heartbeat): day d's data files are 4d-3 .. 4d-1.
    // One look for delivery-stream objects, then the listing starts at the range's first partition.
    expect(c.listed).toEqual(['firehose/', 'data/ after data/dt=2026-04-10']);
    // Apr 10 from noon (its last two files), all of Apr 11; Apr 12's files are listed (delay) but their events are after --to.
    expect(dataRead(c.gets)).toEqual(RANGE_FILES);
    expect(report.filesSkippedByIndex).toBe(0); // nothing asked that the index holds
    const digestsRead = c.gets.filter((k) => k.startsWith('digests/')).map((k) => Number(/(\d{12})/.exec(k)![1]));
    expect(Math.min(...digestsRead)).toBe(36); // the anchor: the heartbeat before Apr 10's first file
    expect(Math.max(...digestsRead)).toBeLessThanOrEqual(4 * 12 - 1 + 8); // Apr 12's last file, plus the prefetch window
    expect(report.partitions).toEqual({ from: '2026-04-10', to: '2026-04-13', by: 'commit date' });
  });

  it("asked for a customer, reads only the range's files whose signed key index may hold them, with the same answer", async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    const { records } = await readArchive(root, keys);
    for (const customer of ['7', '13', '49', 'nobody']) {
      const { q, c, report } = await scanRange(root, keys, records, { customer });
      const holding = RANGE_FILES.filter((f) => customersOf(f).has(customer));
      // A wrong positive of the filter (about 7 in 100,000) would read one more file: none here, and never one fewer.
      expect(dataRead(c.gets), customer).toEqual(holding);
      expect(report.filesRead).toBe(holding.length);
      expect(report.filesSkippedByIndex).toBe(RANGE_FILES.length - holding.length);
      expect(scanSummary(report, q, root)).toMatch(
        holding.length < RANGE_FILES.length ? /files? not read: the key index in (its|their) signed digest rules out a match/ : /records\n/,
      );
    }
  });

  it('over remote storage, fetches the digests of the files listed next while it checks this one (one GET at a time took 5 s for 100 digests on S3)', async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    const local = fileArchive(root).reader;
    expect(local.local).toBe(true); // a local directory is read on the calling thread: nothing to overlap
    let inFlight = 0;
    let most = 0;
    // the same objects behind a round trip of 2 ms, as storage that is not local
    const remote: ArchiveReader = {
      get: async (k) => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 2));
        inFlight--;
        return local.get(k);
      },
      exists: (k) => local.exists(k),
      list: (p, s) => local.list(p, s),
    };
    const q: Query = { ...EVERYTHING, customer: '7' };
    const seen = async (reader: ArchiveReader) => {
      const out: number[] = [];
      const report = await scanArchive(reader, { keys, query: q, maxCommitDelayMs: 0, onMatches: (_f, m) => void out.push(...m.map((l) => l.record.seq)) });
      return { out, digests: report.digests, filesRead: report.filesRead, findings: report.findings };
    };
    const answer = await seen(remote);
    expect(answer).toEqual(await seen(local));
    expect(answer.digests).toBe(119); // through the last data file (the day's heartbeat after it is not walked)
    // Every digest is walked in order, but up to DIGEST_PREFETCH (32) are on their way at once.
    expect(most, `at most ${most} GETs at once`).toBeGreaterThanOrEqual(16);
  });

  it('reads every file of the range in an archive of format 2 (no index), with the same answer', async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    await downgradeToFormat2(root, key);
    const { records } = await readArchive(root, keys);
    const { c, report } = await scanRange(root, keys, records, { customer: '7' });
    expect(dataRead(c.gets)).toEqual(RANGE_FILES);
    expect(report.filesSkippedByIndex).toBe(0);
  });

  it("does not skip on an index nobody signed: a changed index breaks the digest's signature and the answer is not verified", async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    // An outsider empties file 41's filter (so customer 7 would be skipped there) without the signing key.
    const file = path.join(root, 'digests/000000000041.digest');
    const text = await readFile(file, 'utf8');
    const line = JSON.parse(text.split('\n')[0]!) as { index: { bloom: string } };
    line.index.bloom = Buffer.alloc(Buffer.from(line.index.bloom, 'base64').length).toString('base64');
    await writeFile(file, `${JSON.stringify(line)}\n${text.split('\n')[1]!}\n`);
    const q: Query = { ...EVERYTHING, from: timeKey('2026-04-10T12:00:00Z'), to: timeKey('2026-04-12'), customer: customersOf(41).values().next().value! };
    const report = await scanArchive(fileArchive(root).reader, { keys, query: q, maxCommitDelayMs: 86_400_000, onMatches: () => undefined });
    expect(report.findings).toContainEqual(expect.objectContaining({ code: 'bad-digest', where: 'digests/000000000041.digest' }));
    // The answer says it is not verified and why; nothing of file 41 is shown on the strength of an index nobody signed.
    const summary = scanSummary(report, q, root);
    expect(summary).toContain('NOT VERIFIED: ');
    expect(summary).toContain('\n  - digests/000000000041.digest: ');
  });

  it('reports its progress after every digest, and stops between files when its signal aborts', async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    const seen: [number, number][] = [];
    const report = await scanArchive(fileArchive(root).reader, {
      keys,
      query: EVERYTHING,
      maxCommitDelayMs: 0,
      onMatches: () => undefined,
      onProgress: (r, at) => seen.push([at, r.digests]),
    });
    // 30 days of 3 data files and a heartbeat each: every digest up to the last data file (119).
    expect(seen.map(([at]) => at)).toEqual(Array.from({ length: 119 }, (_, i) => i + 1));
    expect(seen.at(-1)![1]).toBe(report.digests);

    const stop = new AbortController();
    let files = 0;
    const stopped = scanArchive(fileArchive(root).reader, {
      keys,
      query: EVERYTHING,
      maxCommitDelayMs: 0,
      signal: stop.signal,
      onMatches: () => {
        if (++files === 5) stop.abort();
      },
    });
    await expect(stopped).rejects.toThrow(ScanCancelled);
    expect(files).toBeLessThan(10); // it went no further than the files already in hand
  });

  it('an open-ended query reads everything from its start, and a query without time reads all', async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    const c = counting(fileArchive(root).reader);
    const all = await scanArchive(c.reader, { keys, query: EVERYTHING, maxCommitDelayMs: 0, onMatches: () => undefined });
    expect(all.matches).toBe(1800);
    expect(all.filesRead).toBe(90);
    expect(all.digests).toBe(119); // 120 digests, the last heartbeat is after the last data file
  });

  it('says how many events matching everything else have an unknown app context when asked for a customer, without showing them', async () => {
    const { root, key } = await monthArchive();
    const keys = new Map([[key.keyId, key]]);
    const { records } = await readArchive(root, keys);
    const q: Query = { ...EVERYTHING, customer: '7', actions: ['UPDATE'] };
    const report = await scanArchive(fileArchive(root).reader, { keys, query: q, maxCommitDelayMs: 0, onMatches: () => undefined });
    // Files the index says hold customer 7 are read, and their unattributed UPDATEs counted; the others' unattributed events are counted from their index.
    const read = new Set(ALL_FILES.filter((f) => customersOf(f).has('7')));
    const fileOf = (seq: number): number => dataFileOfRecord(seq);
    const unknown = records.filter((r) => r.app_context === 'unknown' && r.action === 'UPDATE' && read.has(fileOf(r.seq))).length;
    const skipped = records.filter((r) => r.app_context === 'unknown' && !read.has(fileOf(r.seq))).length;
    expect(unknown).toBeGreaterThan(0);
    expect(skipped).toBeGreaterThan(0);
    expect(report.filesRead).toBe(read.size);
    expect(report.matches).toBe(records.filter((r) => matches(r, q)).length);
    expect(report.notes).toEqual([
      {
        code: 'unknown-attribution',
        where: 'query',
        message: expect.stringMatching(
          new RegExp(
            `^${unknown} more events in the files read match everything asked but the customer, and the files skipped by their key index hold ${skipped} more events without attribution \\(not narrowed by the rest of the query\\): their app_context is unknown`,
          ),
        ),
      },
    ]);
    const none = await scanArchive(fileArchive(root).reader, { keys, query: { ...q, customer: null }, maxCommitDelayMs: 0, onMatches: () => undefined });
    expect(none.notes).toEqual([]);
    // A database user no file holds: every file is skipped, and none of their unattributed events can be this customer's.
    const nobody = await scanArchive(fileArchive(root).reader, { keys, query: { ...q, dbUser: 'nobody' }, maxCommitDelayMs: 0, onMatches: () => undefined });
    expect(nobody.filesSkippedByIndex).toBe(90);
    expect(nobody.notes).toEqual([]);
  });
});
