import { formatHead, sha256Hex, type Digest } from '../seal/digest.js';
import { addMs, dateOf } from '../seal/event-time.js';
import type { VerifyKey } from '../seal/keys.js';
import { DATA_DIR, digestKey, parseDataKey, parseStreamKey, STREAM_DIR } from '../sink/keys.js';
import { findHeadSeq } from '../sink/probe.js';
import type { ArchiveReader } from '../sink/sink.js';
import type { ArchivedLine } from '../verify/file.js';
import type { ChainState } from '../verify/links.js';
import { WorkerPool } from '../verify/worker-pool.js';
import { checkAndMatch, type FileMatch } from './file-match.js';
import type { Finding } from '../verify/findings.js';
import { DigestWalk } from '../verify/links.js';
import { RecordedFindings, findingId } from '../verify/recorded.js';
import { AttestationCheck } from '../verify/attestations.js';
import { peekDigest, ReadAhead } from '../verify/read-ahead.js';
import type { IndexedAttestation } from '../seal/key-index.js';
import { asksIndexedKey, indexOfDigest, indexRulesOut, mayHold, type Query } from './filter.js';

/** A data file whose bytes, records and signed digest all checked out (an evidence package holds it whole). */
export interface VerifiedFile {
  digest: Digest;
  digestBytes: Buffer;
  body: Buffer;
}

export interface ScanOptions {
  keys: Map<string, VerifyKey>;
  query: Query;
  /**
   * Files sit in the partition of their commit date, which is never before an event's date but may
   * be after it (a long transaction, the ingester catching up): how far past --to to look.
   */
  maxCommitDelayMs: number;
  /** each verified file that holds matches, with them, in archive order */
  onMatches: (file: VerifiedFile, matched: ArchivedLine[]) => void | Promise<void>;
  /** worker threads checking files from the second file a search reads (0 or absent: this thread); the answer is the same */
  workers?: number;
  /** the worker script, when not the one beside this module (tests running the sources) */
  workerScript?: URL | string;
  /** after each digest walked: how far the search is (the report so far, and the file it is at) */
  onProgress?: (report: Readonly<ScanReport>, atFile: number) => void;
  /** how many walked digests may wait behind files being checked (default MAX_QUEUED; tests set it low) */
  queueLimit?: number;
  /** stops the search between files (the person went away): it rejects with ScanCancelled */
  signal?: AbortSignal;
}

/** A search given up through ScanOptions.signal. */
export class ScanCancelled extends Error {
  constructor() {
    super('the search was cancelled');
  }
}

export interface ScanReport {
  /**
   * Dates searched, inclusive; null: open-ended. By the data files' commit-date partitions, or, in
   * an archive delivered through a stream (no partitions), by when its files were sealed.
   */
  partitions: { from: string | null; to: string | null; by: 'commit date' | 'seal time' };
  /** digests checked (signature and link), data files read and verified, and which */
  digests: number;
  filesRead: number;
  /** files in the range whose signed key index rules out every match: not read */
  filesSkippedByIndex: number;
  firstFile: number | null;
  lastFile: number | null;
  recordsRead: number;
  matches: number;
  keyIds: Set<string>;
  /** files that failed verification: none of their records were shown */
  failedFiles: Set<number>;
  findings: Finding[];
  notes: Finding[];
  /** the newest digest the search walked (its signature checked at the end), as `SEQ:SHA256`: what the answer was verified against */
  throughHead: string | null;
}

const PREFETCH = 8;
const DIGEST_PREFETCH = 32;
/**
 * Entries waiting behind a file a worker still checks. A search for an indexed key reads few files,
 * far apart (a thousand digests between them at 0.1% of the files), and the walk goes on past a
 * file while a worker checks it; skipped digests wait as a few small values each.
 */
const MAX_QUEUED = 4096;

/**
 * Answer a query from the archive, verifying everything it shows. The data listing starts at the
 * query's first commit-date partition (S3 StartAfter) and stops after its last, so a three-month
 * question over a six-year archive lists three months. Between the files it lists, the walk checks
 * every digest (heartbeats, files of other dates) so the range is one unbroken, signed chain,
 * anchored at the digest just before it. One file in memory at a time.
 */
export async function scanArchive(reader: ArchiveReader, opts: ScanOptions): Promise<ScanReport> {
  const q = opts.query;
  const fromDate = q.from ? dateOf(q.from) : null;
  const toDate = q.to ? dateOf(addMs(q.to, opts.maxCommitDelayMs)) : null;
  const report: ScanReport = {
    partitions: { from: fromDate, to: toDate, by: 'commit date' },
    digests: 0,
    filesRead: 0,
    filesSkippedByIndex: 0,
    firstFile: null,
    lastFile: null,
    recordsRead: 0,
    matches: 0,
    keyIds: new Set(),
    failedFiles: new Set(),
    findings: [],
    notes: [],
    throughHead: null,
  };
  // Events the server could not attribute (app_context unknown) match no app user or customer, but
  // may be theirs: counted, so the answer says how many it cannot rule in or out.
  // Files the index let the search skip may hold such events too: their number is in the index, not
  // narrowed by the rest of the query (`skipped`).
  const unattributed = q.appUser !== null || q.customer !== null ? { query: { ...q, appUser: null, customer: null }, count: 0, skipped: 0 } : null;
  // Signatures are checked where they are relied on: before a file's records are used, and at the
  // end; each vouches for the digests before it through the hashes the walk checks link by link.
  const walk = new DigestWalk(opts.keys, 'anchor', 'deferred');
  // Changes of the capture configuration between the attestations in the files read.
  const attestations = new AttestationCheck();
  // Asked for a key the index holds, most files are skipped: their data is not fetched early, which
  // saves parsing each digest twice (about 35 us of 250 per digest skipped, 50 KiB digests), and
  // more digests are in flight, as the walk then waits on little but digests (an S3 GET takes
  // milliseconds; 32 in flight hold at most about 2 MiB).
  const prefetchData = !asksIndexedKey(q);
  const depth = prefetchData ? PREFETCH : DIGEST_PREFETCH;
  // Digests a few files ahead, and the data of the next files worth reading, while this one is checked.
  const ahead = new ReadAhead(reader, depth + 2);
  const fetchDigest = (seq: number, last: number): Promise<Buffer | null> => {
    for (let s = seq + 1; s <= Math.min(seq + depth, last); s++) {
      const digest = ahead.start(digestKey(s));
      if (s > seq + 2 || !prefetchData) continue;
      void digest?.then(
        (b) => {
          const d = peekDigest(b);
          if (d?.object_key && inPartitions(d.object_key) && mayHold(d as Digest, q) && !indexRulesOut(indexOfDigest(d as Digest), q)) {
            ahead.start(d.object_key);
          }
        },
        () => undefined,
      );
    }
    return ahead.take(digestKey(seq));
  };

  const inPartitions = (key: string): boolean => {
    if (parseStreamKey(key)) return true; // streamed files are found by digest time, below
    const date = parseDataKey(key)?.date;
    return date !== undefined && (fromDate === null || date >= fromDate) && (toDate === null || date <= toDate);
  };

  // Files are checked and matched on worker threads from the second file read on (a search that
  // reads one file does not start them): the walk, the decisions and every change to the report
  // stay here, in chain order (`queue`), so the answer is the same with any number of workers. Asked
  // for an indexed key, the walk goes on through the digests while a worker checks a file.
  let pool: WorkerPool | null = null;
  let dispatched = 0;
  const check = (body: Buffer | null, d: Digest, before: ChainState): Promise<FileMatch> => {
    dispatched++;
    if (pool === null && (opts.workers ?? 0) > 0 && dispatched >= 2) {
      pool = new WorkerPool(opts.workers!, opts.workerScript ?? new URL('./query-worker.js', import.meta.url));
    }
    if (pool === null) return Promise.resolve(checkAndMatch(body, d, before, q, unattributed?.query ?? null));
    // The pool sends a copy: an evidence package writes these very bytes.
    return pool.run<FileMatch>({ body, digest: d, before, query: q, unattributed: unattributed?.query ?? null });
  };
  // A file's entry is `checked` once its outcome is in: it is then applied at once, so the digests
  // walked behind it do not wait for the window to fill (or for the end of the walk) to be taken.
  const queue: { apply: () => void | Promise<void>; file: boolean; checked: boolean }[] = [];
  const queueLimit = opts.queueLimit ?? MAX_QUEUED;
  let inFlight = 0;
  const settle = async (all: boolean): Promise<void> => {
    const window = pool === null ? 1 : (pool as WorkerPool).window;
    for (;;) {
      const head = queue[0];
      if (head === undefined || !(all || !head.file || head.checked || inFlight >= window || queue.length > queueLimit)) return;
      queue.shift();
      if (head.file) inFlight--;
      await head.apply();
    }
  };
  const later = async (apply: () => void | Promise<void>, outcome?: Promise<unknown>): Promise<void> => {
    const entry = { apply, file: outcome !== undefined, checked: false };
    queue.push(entry);
    if (outcome) {
      inFlight++;
      outcome.then(
        () => (entry.checked = true),
        () => (entry.checked = true),
      );
    }
    await settle(false);
  };

  // What a digest not followed by a file read leaves to do in its turn, made outside visit() so the
  // closure holds only these values: a closure made inside it would keep visit's whole context
  // alive (the digest, its 50 KiB index, the file's bytes) for as long as it waits in the queue.
  const walkedOnly = (findings: Finding[]) => (): void => {
    report.digests++;
    report.findings.push(...findings);
  };
  const skippedByIndex = (key: string, indexed: IndexedAttestation[], candidates: number) => (): void => {
    report.digests++;
    for (const a of indexed) attestations.addIndexed(a, key, findingId(a.seq));
    report.filesSkippedByIndex++;
    if (unattributed) unattributed.skipped += candidates;
  };

  /** when the last digest walked was sealed (a stream archive's walk ends by it) */
  let lastSealedAt: string | null = null;
  let newest: { seq: number; bytes: Buffer } | null = null;
  /** Walk digest `seq`; `last` is the listed file the walk is going to, `horizon` the furthest listed one. */
  const visit = async (seq: number, last: number, horizon = last): Promise<void> => {
    const bytes = await fetchDigest(seq, horizon);
    if (!bytes && seq === last && !(await reader.exists(digestKey(seq + 1)))) {
      // A data file with no digest at the head: the shipper stopped between the two writes.
      return later(() => {
        report.notes.push({
          code: 'unsealed-file',
          where: digestKey(seq),
          message:
            `file ${seq} was stored but its digest was not ` +
            'written yet (the shipper stopped between the two writes and seals those records again when it restarts): not shown',
        });
      });
    }
    const step = walk.step(seq, bytes);
    lastSealedAt = step.digest?.created_at ?? lastSealedAt;
    if (step.digest && bytes) newest = { seq, bytes };
    const d = step.digest;
    if (!d || d.kind !== 'data' || !d.object_key || !inPartitions(d.object_key) || !mayHold(d, q)) return later(walkedOnly(step.findings));
    const key = d.object_key;
    const index = indexOfDigest(d);
    if (step.findings.length === 0 && indexRulesOut(index, q)) {
      // Its unattributed events are candidates only if the rest of the query could match in it.
      const candidates = unattributed && !indexRulesOut(index, unattributed.query) ? index!.index.unattributed : 0;
      return later(skippedByIndex(key, index!.index.attestations, candidates));
    }
    const indexed = (): void => {
      report.digests++;
      report.findings.push(...step.findings);
      // Format 3: the index lists the file's attestations, so their continuity is checked whether the file is read or not.
      if (index && step.findings.length === 0) for (const a of index.index.attestations) attestations.addIndexed(a, key, findingId(a.seq));
    };
    const signature = walk.confirm();
    if (signature.length > 0) {
      return later(() => {
        indexed();
        report.findings.push(...signature);
        report.failedFiles.add(seq);
      });
    }
    const body = await ahead.take(key);
    const outcome = check(body, d, step.before);
    return later(async () => {
      indexed();
      report.keyIds.add(d.key_id);
      const file = await outcome;
      report.filesRead++;
      report.firstFile ??= seq;
      report.lastFile = seq;
      if (step.findings.length > 0 || file.findings.length > 0) {
        // Nothing from a file that failed is shown: not even the records before the break.
        report.findings.push(...file.findings);
        report.failedFiles.add(seq);
        return;
      }
      report.recordsRead += file.records;
      if (unattributed) unattributed.count += file.unattributed;
      noteRecorded(report, d, file.notable);
      if (!index) for (const l of file.notable) if (AttestationCheck.is(l.record)) attestations.add(l.record, key, findingId(l.record.seq));
      if (file.matched.length > 0) {
        report.matches += file.matched.length;
        await opts.onMatches({ digest: d, digestBytes: bytes!, body: body! }, file.matched);
      }
    }, outcome);
  };

  let done: number | null = null;
  const streamed = await isStreamed(reader);
  if (streamed) report.partitions.by = 'seal time';
  // A stream's range ends where the walk finds a digest sealed after it, so it is not listed ahead;
  // a partitioned archive's listing is, so digests are fetched ahead across files:
  // when every digest is a data file's, each listed file is the next digest.
  const files = streamed
    ? withHorizon(
        streamedRange(reader, q, opts.maxCommitDelayMs, () => lastSealedAt),
        0,
      )
    : withHorizon(listedFiles(reader, fromDate, toDate), reader.local ? 0 : depth);
  try {
    for await (const [seq, horizon] of files) {
      if (done !== null && seq <= done) continue; // already walked past it
      if (done === null) {
        // The digest before the range anchors the walk: the first file must continue its chain.
        done = seq - 1;
        if (done > 0) await visit(done, done);
      }
      for (let s = done + 1; s <= seq; s++) {
        if (opts.signal?.aborted) throw new ScanCancelled();
        await visit(s, seq, Math.max(seq, horizon));
        opts.onProgress?.(report, s);
      }
      done = seq;
    }
    await settle(true);
  } finally {
    await (pool as WorkerPool | null)?.close();
  }
  // The newest digest walked vouches for every one before it, and so for every file skipped.
  report.findings.push(...walk.confirm());
  const through = newest as { seq: number; bytes: Buffer } | null;
  report.throughHead = through ? formatHead(through.seq, sha256Hex(through.bytes)) : null;
  if (unattributed && (unattributed.count > 0 || unattributed.skipped > 0)) {
    const who = `${q.appUser !== null ? 'the app user' : ''}${q.appUser !== null && q.customer !== null ? ' and ' : ''}${q.customer !== null ? 'the customer' : ''}`;
    report.notes.push({
      code: 'unknown-attribution',
      where: 'query',
      message:
        `${unattributed.count} more events in the files read match everything asked but ${who}` +
        (unattributed.skipped > 0
          ? `, and the files skipped by their key index hold ${unattributed.skipped} more events without attribution (not narrowed by the rest of the query)`
          : '') +
        ': their app_context is unknown (the server recorded no app.user_id / app.customer_id for them: a read that returned no row, a superuser or ' +
        'BYPASSRLS role, an ERROR line), so they may or may not be this one; not shown (ask without --app-user / --customer to see them)',
    });
  }
  for (const f of attestations.findings) {
    report.notes.push({
      code: f.code,
      where: f.where,
      message: `${f.id}: ${f.message} (events in that window may be missing; \`verify\` reports it until a reviewer acknowledges it)`,
    });
  }
  return report;
}

/** Each file sequence number with the furthest one listed so far, up to `ahead` files further. */
async function* withHorizon(files: AsyncIterable<number>, ahead: number): AsyncIterable<[number, number]> {
  const it = files[Symbol.asyncIterator]();
  const upcoming: number[] = [];
  let ended = false;
  for (;;) {
    while (!ended && upcoming.length <= ahead) {
      const r = await it.next();
      if (r.done) ended = true;
      else upcoming.push(r.value);
    }
    const seq = upcoming.shift();
    if (seq === undefined) return;
    yield [seq, upcoming.length > 0 ? upcoming[upcoming.length - 1]! : seq];
  }
}

/** Sequence numbers of the data files in the commit-date partitions of the range, as listed. */
async function* listedFiles(reader: ArchiveReader, fromDate: string | null, toDate: string | null): AsyncIterable<number> {
  for await (const key of reader.list(DATA_DIR, fromDate ? `${DATA_DIR}dt=${fromDate}` : undefined)) {
    const parsed = parseDataKey(key);
    if (!parsed) continue; // not a data file name: `verify` reports such objects
    if (toDate !== null && parsed.date > toDate) break;
    yield parsed.fileSeq;
  }
}

async function isStreamed(reader: ArchiveReader): Promise<boolean> {
  for await (const _ of reader.list(STREAM_DIR)) return true;
  return false;
}

/** How long a sealed file may take to reach its digest's creation time after its events occurred. */
const SEAL_MARGIN_MS = 3_600_000;

/**
 * A delivery stream's files are objects of its own, not partitioned by commit date; its digests
 * are numbered and say when they were sealed (never before their events occurred). Bisect for the
 * first digest sealed at or after --from (less a margin for clock steps), then walk until the walk
 * reaches one sealed after --to plus the commit delay (`lastSealed`: the walk's own digests, not
 * fetched again here).
 */
async function* streamedRange(reader: ArchiveReader, q: Query, maxCommitDelayMs: number, lastSealed: () => string | null): AsyncIterable<number> {
  const head = await findHeadSeq(reader, 0);
  let lo = 1;
  if (q.from) {
    const floor = new Date(Date.parse(q.from) - SEAL_MARGIN_MS).toISOString();
    let hi = head + 1;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const at = peekDigest(await reader.get(digestKey(mid)))?.created_at;
      if (at !== undefined && at < floor) lo = mid + 1;
      else hi = mid; // unreadable: stay on the safe (earlier) side
    }
  }
  const ceiling = q.to ? new Date(Date.parse(q.to) + maxCommitDelayMs + SEAL_MARGIN_MS).toISOString() : null;
  for (let seq = lo; seq <= head; seq++) {
    yield seq; // walked before the loop goes on
    const at = lastSealed();
    if (ceiling !== null && at !== null && at > ceiling) return;
  }
}

/**
 * Committed changes of audit_log and gaps in the files read are part of the answer's context, said
 * as verify says them (the answer may lack the changed or lost events; the archive keeps originals).
 */
function noteRecorded(report: ScanReport, d: Digest, lines: ArchivedLine[]): void {
  if (!lines.some((l) => l.record.op !== 'insert' && l.record.op !== 'read' && l.record.op !== 'marker')) return;
  const recorded = new RecordedFindings();
  recorded.add(d, lines);
  for (const f of recorded.settle().open.filter((o) => o.code === 'tamper' || o.code === 'gap')) {
    report.notes.push({ code: f.code, where: f.where, message: `${f.id}: ${f.message} (\`verify\` reports it until a reviewer acknowledges it)` });
  }
}
