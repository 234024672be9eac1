import { openRecord } from '../seal/record.js';
import { formatHead, openDigest, sha256Hex, type Digest, type ExpectedHead } from '../seal/digest.js';
import { tryParseLsn } from '../source/lsn.js';
export { formatHead, parseExpectedHead, type ExpectedHead } from '../seal/digest.js';
import type { VerifyKey } from '../seal/keys.js';
import { DIGEST_DIR, digestKey, parseDigestKey } from '../sink/keys.js';
import { findHeadSeq } from '../sink/probe.js';
import type { ArchiveReader } from '../sink/sink.js';
import type { ArchivedRecord } from './file.js';
import { inlineChecker, type ArchivedIds, type FileChecker, type FileOutcome } from './file-check.js';
import { workerChecker } from './worker-pool.js';
import { ObjectIndex } from './object-index.js';
import type { Acknowledged, Finding } from './findings.js';
import { RecordedFindings, type RecordedSegment } from './recorded.js';
import { ReceiptCheck, type ReceiptSegment } from './receipts.js';
import { DigestWalk } from './links.js';
import { objectKeyOf, peekDigest, ReadAhead } from './read-ahead.js';

/** Files fetched ahead of the one being checked. */
const LOOK_AHEAD = 2;
/**
 * Fewer files than this to read are checked on the main thread: starting a worker costs ~40 ms,
 * about a third of checking one 10,000-record file.
 */
const MIN_FILES_FOR_WORKERS = 4;

export type { Finding } from './findings.js';
export type { ArchivedRecord } from './file.js';

/** What a walk counts: the whole archive's (ChainReport) or one block's (a shard's). */
export interface Tally {
  files: number;
  heartbeats: number;
  firstEventAt: string | null;
  lastEventAt: string | null;
  records: number;
  head: Digest | null;
  /** SHA-256 of the head digest's bytes: with its sequence, what `--expect-head` takes next time */
  headSha256: string | null;
  findings: Finding[];
}

export function emptyTally(): Tally {
  return { files: 0, heartbeats: 0, firstEventAt: null, lastEventAt: null, records: 0, head: null, headSha256: null, findings: [] };
}

export interface ChainReport extends Tally {
  /** the data object each verified digest names (10 bytes a file: object-index.ts) */
  objects: ObjectIndex;
  /** data files whose bytes this run did not read (incremental mode) */
  skipped: number;
  /** the first file walked: 1, or a later starting point */
  firstSeq: number;
  /** tamper and gap records in the files read, acknowledged or not, and acknowledgements that matched nothing */
  recorded: { open: Finding[]; acknowledged: Acknowledged[]; notes: Finding[] };
  /** the ingester's receipts in the files read: coverage of the server's log files */
  receipts: { findings: Finding[]; notes: Finding[] };
  /** --through: the walk stopped here on purpose; data files after it are not part of this run */
  cut: number | null;
  /** a shard's blocks (ChainOptions.shard), in chain order */
  blocks: BlockReport[];
  /**
   * The newest digest the walk found listed (verified or not). A shard run finds it at its start
   * (every shard finds the same); one run over the archive, as its walk ends. A data file past it
   * was stored after the walk (inventory.ts).
   */
  lastSeq: number;
}

export interface ChainOptions {
  keys: Map<string, VerifyKey>;
  /**
   * Incremental runs: data files of earlier sequences are taken as verified by a previous run (their
   * signed digests still are checked, link by link) unless sampled; `fullFrom` and later are read.
   */
  fullFrom?: number;
  sample?: Set<number>;
  /** the head a previous run verified: its digest must be unchanged, or everything is read */
  trusted?: { fileSeq: number; digestSha256: string };
  /** every digest whose signature verified, in order */
  onDigest?: (d: Digest) => void;
  /** after each digest: how far the walk is */
  onProgress?: (done: number, total: number) => void;
  /** called with the audit_log ids of each data file read, whatever its findings (verify --reconcile) */
  onArchivedIds?: (ids: ArchivedIds) => void;
  /** called with each file's records once they verified (query reads through this) */
  onRecords?: (records: ArchivedRecord[], digest: Digest) => void | Promise<void>;
  /**
   * Worker threads that check data files beside the walk (0 or absent: the main thread checks them).
   * The verdict is the same either way: outcomes are taken back in chain order.
   */
  workers?: number;
  /** the worker script, when not the one beside this module (tests running the sources) */
  workerScript?: URL | string;
  /** fewer files to read than this are checked on the main thread (default 4) */
  workerMinFiles?: number;
  /** a head seen earlier: a shorter archive, or another digest at that sequence, is a finding */
  expectHead?: ExpectedHead;
  /**
   * Where to start when the oldest files are gone (expired after the retention period): a digest
   * recorded earlier, taken as proven. Without it an archive that lacks file 1 starts at its oldest
   * digest, which is a finding.
   */
  start?: ExpectedHead;
  /**
   * Check only the data files of one shard: blocks of `blockFiles` consecutive files, block b to
   * shard b mod count (a shard walks only its blocks, each from the digest before it). Each block's outcome is a segment in
   * `blocks`; `verify-merge` joins the shards' segments in chain order (src/verify/shards.ts).
   */
  shard?: Shard;
  /** where the walk ends: a file sequence, or before the first digest sealed at or after a time */
  through?: Through;
}

export interface Shard {
  index: number;
  count: number;
  blockFiles: number;
}

export type Through = { seq: number } | { sealedBefore: string };

/** One block of files as a shard checked it: what the merge needs of it, and nothing it can recompute. */
export interface BlockReport {
  block: number;
  files_read: number;
  tally: Tally;
  /** the inventory's notes on the block's data files (its findings are in tally.findings) */
  notes: Finding[];
  recorded: RecordedSegment;
  receipts: ReceiptSegment;
}

/** A report of nothing walked yet. */
export function emptyChainReport(firstSeq: number): ChainReport {
  return {
    ...emptyTally(),
    objects: new ObjectIndex(),
    skipped: 0,
    firstSeq,
    recorded: { open: [], acknowledged: [], notes: [] },
    receipts: { findings: [], notes: [] },
    cut: null,
    blocks: [],
    lastSeq: 0,
  };
}

export function blockOf(seq: number, blockFiles: number): number {
  return Math.floor((seq - 1) / blockFiles);
}

/**
 * The digest folder's listing, read only as far as the walk needs it: memory holds the few
 * sequences between where the walk is and how far it looks ahead. Listings come in key order,
 * which is sequence order (12 digits, zero-padded); anything else in the folder is a finding.
 */
class DigestListing {
  private readonly it: AsyncIterator<string>;
  private buf: number[] = [];
  private done = false;
  highest = 0;

  constructor(
    reader: ArchiveReader,
    private readonly findings: Finding[],
    startAfter?: string,
  ) {
    this.it = reader.list(DIGEST_DIR, startAfter)[Symbol.asyncIterator]();
  }

  /** Read the listing until it is past `seq`, or ended. */
  async ensure(seq: number): Promise<void> {
    while (!this.done && this.highest <= seq) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        break;
      }
      const n = parseDigestKey(r.value);
      if (n === null) {
        this.findings.push({ code: 'unexpected-object', where: r.value, message: 'an object in the digest folder that is not a digest' });
        continue;
      }
      if (n > this.highest) {
        this.buf.push(n);
        this.highest = n;
      } else if (!this.buf.includes(n)) {
        this.buf.push(n); // out of order: a store that does not list in key order
        this.buf.sort((a, b) => a - b);
      }
    }
  }

  first(): number | null {
    return this.buf[0] ?? null;
  }

  has(seq: number): boolean {
    return this.buf.includes(seq);
  }

  /** Nothing is listed at or after `seq` (once ensure(seq) has run). */
  endsBefore(seq: number): boolean {
    return this.done && this.highest < seq;
  }

  forgetBefore(seq: number): void {
    let i = 0;
    while (i < this.buf.length && this.buf[i]! < seq) i++;
    if (i > 0) this.buf = this.buf.slice(i);
  }
}

/**
 * The last digest of the archive, as every shard finds it: by probing, then by listing after what
 * the probes found (a probe that lands in a gap would stop short).
 */
async function findArchiveHead(reader: ArchiveReader, from: number): Promise<number> {
  let head = await findHeadSeq(reader, Math.max(from, 0));
  for (;;) {
    let next: number | null = null;
    for await (const key of reader.list(DIGEST_DIR, digestKey(Math.max(head, 0)))) {
      next = parseDigestKey(key);
      if (next !== null && next > head) break;
      next = null;
    }
    if (next === null) return head;
    head = await findHeadSeq(reader, next);
  }
}

/**
 * A shard's cut before the first digest sealed at or after `ms`: found by bisecting on the sealing
 * times the digests state, and taken only at a digest whose signature holds (every shard finds
 * the same one; an edited time cannot end the walk early). null: no cut.
 */
async function cutBySealTime(reader: ArchiveReader, keys: Map<string, VerifyKey>, first: number, last: number, ms: number): Promise<number | null> {
  let lo = first;
  let hi = last + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const at = peekDigest(await reader.get(digestKey(mid)))?.created_at;
    if (typeof at === 'string' && Date.parse(at) < ms) lo = mid + 1;
    else hi = mid;
  }
  if (lo > last) return null;
  const bytes = await reader.get(digestKey(lo));
  const opened = bytes ? openDigest(bytes, keys) : null;
  return opened?.ok && Date.parse(opened.digest.created_at) >= ms ? lo : null;
}

/**
 * A walk ready for digest `lo`, as one walking from the start would be there. From the digest
 * before it when that digest verifies on its own and states where its records end (the state a
 * walk from the start reaches there too: links.ts, after()); otherwise, a tampered or unusual
 * archive, by walking from the start: slower, never different.
 */
async function walkFrom(reader: ArchiveReader, keys: Map<string, VerifyKey>, first: number, lo: number): Promise<DigestWalk> {
  const fromStart = (): DigestWalk => new DigestWalk(keys, first === 1 ? 'genesis' : 'anchor');
  if (lo <= first) return fromStart();
  const anchored = new DigestWalk(keys, 'anchor');
  const bytes = await reader.get(digestKey(lo - 1));
  const a = bytes ? anchored.step(lo - 1, bytes) : null;
  if (a?.digest && a.findings.length === 0 && a.digest.last_seq !== null && tryParseLsn(a.digest.last_lsn) !== null) return anchored;
  const walk = fromStart();
  for (let seq = first; seq < lo; seq++) walk.step(seq, await reader.get(digestKey(seq)));
  return walk;
}

/** Whether a digest says it was sealed at or after `ms` (read unchecked: the caller verifies the digest before acting on it). */
function sealedAtOrAfter(bytes: Buffer, ms: number): boolean {
  const at = peekDigest(bytes)?.created_at;
  return typeof at === 'string' && Date.parse(at) >= ms;
}

/** (seq, exact line) of every record line, in order; null when a line is not a record. */
export function recordLines(content: Buffer): { seq: number; line: string }[] | null {
  const out: { seq: number; line: string }[] = [];
  for (const line of content.toString('utf8').split('\n')) {
    if (!line) continue;
    const rec = openRecord(line);
    if (!rec) return null;
    let seq: unknown;
    try {
      seq = (JSON.parse(rec.body) as { seq: unknown }).seq;
    } catch {
      return null;
    }
    if (!Number.isSafeInteger(seq)) return null;
    out.push({ seq: seq as number, line });
  }
  return out;
}

/**
 * Walk the chain from file 1 to the newest digest, checking every link (DigestWalk) and every
 * data file's bytes and records (checkFile). Reads one file at a time, so memory does not grow
 * with the archive.
 */
export async function verifyChain(reader: ArchiveReader, opts: ChainOptions): Promise<ChainReport> {
  const findings: Finding[] = [];
  let fullFrom = opts.fullFrom ?? 1;
  const report = emptyChainReport(1);
  report.findings = findings;
  const recorded = new RecordedFindings();
  const receipts = new ReceiptCheck();

  // The digests as listed, read as the walk goes: a Set of every sequence stopped at 2^24 entries
  // and held ~20 bytes a file (object-index.ts says why that matters).
  const listingFindings: Finding[] = [];
  const listing = new DigestListing(reader, listingFindings);
  await listing.ensure(0);
  const minSeq = listing.first() ?? 0;
  const through = opts.through;
  const throughSeq = through && 'seq' in through ? through.seq : null;
  const sealedBefore = through && 'sealedBefore' in through ? Date.parse(through.sealedBefore) : null;
  if (opts.trusted) {
    // Digests link by hash, so if the head a previous run accepted is unchanged, so is all before it.
    const t = await reader.get(digestKey(opts.trusted.fileSeq));
    if (!t || sha256Hex(t) !== opts.trusted.digestSha256) {
      findings.push({
        code: 'trusted-state-mismatch',
        where: digestKey(opts.trusted.fileSeq),
        message: `digest ${opts.trusted.fileSeq} is ${t ? 'not the one' : 'missing, unlike'} the previous verification accepted: every file is checked again`,
      });
      fullFrom = 1;
    }
  }
  let firstSeq = Math.max(minSeq, 1);
  if (opts.start) {
    if (!(await reader.exists(digestKey(opts.start.fileSeq)))) {
      findings.push({
        code: 'start-missing',
        where: digestKey(opts.start.fileSeq),
        message: `the starting point ${formatHead(opts.start.fileSeq, opts.start.digestSha256)} is not in the archive`,
      });
    }
    firstSeq = opts.start.fileSeq;
  } else if (firstSeq > 1) {
    findings.push({
      code: 'missing-start',
      where: digestKey(1),
      message:
        `the archive starts at file ${firstSeq}: digests 1 to ${firstSeq - 1} are missing ` +
        '(expired after the retention period, or removed). Nothing before it is proven; to take a point recorded earlier as proven, pass --start SEQ:SHA256',
    });
  }
  report.firstSeq = firstSeq;
  const shard = opts.shard;
  // A shard walks only its blocks: where the archive ends (every shard finds the same), then its
  // blocks' ranges, each from the digest before it (ShardWalks). One run walks everything.
  let ranges: { lo: number; hi: number }[] = [{ lo: firstSeq, hi: Infinity }];
  if (shard) {
    let last = await findArchiveHead(reader, minSeq);
    if (throughSeq !== null && throughSeq < last) report.cut = last = throughSeq;
    if (sealedBefore !== null) {
      const c = await cutBySealTime(reader, opts.keys, firstSeq, last, sealedBefore);
      if (c !== null) report.cut = last = c - 1;
    }
    report.lastSeq = last;
    ranges = [];
    for (let b = blockOf(Math.max(firstSeq, 1), shard.blockFiles); b <= blockOf(last, shard.blockFiles); b++) {
      if (b % shard.count !== shard.index) continue;
      const lo = Math.max(b * shard.blockFiles + 1, firstSeq);
      const hi = Math.min((b + 1) * shard.blockFiles, last);
      if (lo <= hi) ranges.push({ lo, hi });
    }
  }
  const readsData = (seq: number): boolean => shard !== undefined || seq >= fullFrom || opts.sample?.has(seq) === true;
  const blocks = new Map<number, { report: BlockReport; recorded: RecordedFindings; receipts: ReceiptCheck }>();
  const blockFor = (seq: number) => {
    const b = blockOf(seq, shard!.blockFiles);
    let e = blocks.get(b);
    if (!e) {
      e = {
        report: { block: b, files_read: 0, tally: emptyTally(), notes: [], recorded: null as never, receipts: null as never },
        recorded: new RecordedFindings(true),
        receipts: new ReceiptCheck(true),
      };
      blocks.set(b, e);
    }
    return e;
  };
  /** where a sequence's counts and findings go: the archive's, or its block's */
  const tallyOf = (seq: number): Tally => (shard ? blockFor(seq).report.tally : report);
  const want = { lines: opts.onRecords !== undefined, ids: opts.onArchivedIds !== undefined };
  // Where the archive ends, found by probing (a few dozen existence checks): only to decide whether
  // workers pay and to show progress; the walk goes by the listing.
  const wantsWorkers = (opts.workers ?? 0) > 0;
  const headGuess = shard ? report.lastSeq : wantsWorkers || opts.onProgress ? await findHeadSeq(reader, Math.max(firstSeq - 1, 0)) : 0;
  const toRead = shard
    ? ranges.reduce((n, r) => n + r.hi - r.lo + 1, 0)
    : Math.max(0, Math.min(headGuess, throughSeq ?? Infinity) - Math.max(firstSeq, fullFrom) + 1) + (opts.sample?.size ?? 0);
  const checker: FileChecker =
    wantsWorkers && toRead >= (opts.workerMinFiles ?? MIN_FILES_FOR_WORKERS) ? workerChecker(opts.workers!, want, opts.workerScript) : inlineChecker(want);
  const lookAhead = Math.max(LOOK_AHEAD, checker.window);
  const ahead = new ReadAhead(reader, 2 * lookAhead);
  // Each file's findings, in chain order: a file checked by a worker is taken back in its turn, so
  // the report is the same whatever the number of workers.
  const queue: { tally: Tally; findings: Finding[]; file: { d: Digest; outcome: Promise<FileOutcome> } | null }[] = [];
  let inFlight = 0;
  const takeOldest = async (): Promise<void> => {
    const e = queue.shift()!;
    e.tally.findings.push(...e.findings);
    if (!e.file) return;
    inFlight--;
    const d = e.file.d;
    const file = await e.file.outcome;
    e.tally.findings.push(...file.findings);
    e.tally.records += file.records;
    if (shard) {
      const b = blockFor(d.file_seq);
      b.report.files_read++;
      b.recorded.add(d, file.notable);
      b.receipts.add(d, file.notable);
      return;
    }
    // Lines before any break chain from the signed prev_chain: authentic, whatever else is wrong with
    // the file. A sampled old file's tamper and gap records were settled by the clean run that
    // remembered a later head (its acknowledgements may lie in files this run does not read).
    if (d.file_seq >= fullFrom) {
      recorded.add(d, file.notable);
      receipts.add(d, file.notable);
    }
    if (file.ids) opts.onArchivedIds?.(file.ids);
    if (file.lines && opts.onRecords)
      await opts.onRecords(
        file.lines.map((l) => l.record),
        d,
      );
  };
  try {
    for (const range of ranges) {
      // One run: the listing it made above. A shard: its block's part of the listing (one page),
      // and a walk that continues from the digest before the block.
      const list = shard ? new DigestListing(reader, [], digestKey(range.lo - 1)) : listing;
      const walk = shard ? await walkFrom(reader, opts.keys, firstSeq, range.lo) : new DigestWalk(opts.keys, firstSeq === 1 ? 'genesis' : 'anchor');
      const end = shard ? range.hi : (throughSeq ?? Infinity);
      const plan = (seq: number): void => {
        if (seq > end || !list.has(seq)) return;
        void ahead.start(digestKey(seq))?.then(
          (b) => {
            const key = objectKeyOf(b);
            if (key && readsData(seq)) ahead.start(key);
          },
          () => undefined,
        );
      };
      await list.ensure(range.lo + lookAhead);
      for (let next = range.lo; next < range.lo + lookAhead; next++) plan(next);
      for (let seq = range.lo; ; seq++) {
        if (seq > end) {
          if (!shard) {
            await list.ensure(seq);
            if (!list.endsBefore(seq)) report.cut = throughSeq;
          }
          break;
        }
        await list.ensure(seq + lookAhead);
        if (!shard && list.endsBefore(seq)) break;
        list.forgetBefore(seq);
        opts.onProgress?.(seq, Math.max(headGuess, list.highest));
        plan(seq + lookAhead); // each file planned once, lookAhead files before its turn
        const bytes = list.has(seq) ? await ahead.take(digestKey(seq)) : null;
        if (!shard && sealedBefore !== null && bytes && sealedAtOrAfter(bytes, sealedBefore)) {
          // The cut, taken only at a digest whose signature and link verify: a digest whose time was
          // edited cannot end the walk early and hide what follows it.
          const probe = walk.clone();
          const cut = probe.step(seq, bytes);
          if (cut.digest && cut.findings.length === 0 && probe.confirm().length === 0) {
            report.cut = seq - 1;
            break;
          }
        }
        const step = walk.step(seq, bytes);
        const tally = tallyOf(seq);
        const own = [...step.findings];
        const d = step.digest;
        if (opts.start?.fileSeq === seq && step.sha256 !== null && step.sha256 !== opts.start.digestSha256) {
          own.push({
            code: 'start-changed',
            where: digestKey(seq),
            message: `digest ${seq} is not the starting point recorded earlier (${formatHead(seq, opts.start.digestSha256)})`,
          });
        }
        if (opts.expectHead?.fileSeq === seq && step.sha256 !== opts.expectHead.digestSha256) {
          own.push({
            code: 'expected-head-changed',
            where: digestKey(seq),
            message: `digest ${seq} is not the one recorded earlier as the head (${formatHead(seq, opts.expectHead.digestSha256)}): the archive was rewritten from there`,
          });
        }
        let file: { d: Digest; outcome: Promise<FileOutcome> } | null = null;
        if (d) {
          tally.head = d;
          tally.headSha256 = step.sha256;
          opts.onDigest?.(d);
          if (d.kind === 'heartbeat') tally.heartbeats++;
          else {
            tally.files++;
            if (d.object_key) report.objects.set(seq, d.object_key);
            if (d.first_event_at && (!tally.firstEventAt || d.first_event_at < tally.firstEventAt)) tally.firstEventAt = d.first_event_at;
            if (d.last_event_at && (!tally.lastEventAt || d.last_event_at > tally.lastEventAt)) tally.lastEventAt = d.last_event_at;
            if (!readsData(seq)) {
              // Verified by an earlier run and unchanged (its signed digest and links were just checked again).
              report.skipped++;
              tally.records += d.record_count;
            } else {
              const outcome = checker.check({ body: d.object_key ? await ahead.take(d.object_key) : null, digest: d, before: step.before });
              // Taken back in turn; until then a failure is held here, not reported as unhandled.
              outcome.catch(() => undefined);
              file = { d, outcome };
              inFlight++;
            }
          }
        }
        queue.push({ tally, findings: own, file });
        while (queue.length > 0 && (inFlight >= checker.window || !queue[0]!.file)) await takeOldest();
      }
    }
    while (queue.length > 0) await takeOldest();
  } finally {
    await checker.close();
  }
  for (const b of [...blocks.values()].sort((x, y) => x.report.block - y.report.block)) {
    b.report.recorded = b.recorded.segmentOf();
    b.report.receipts = b.receipts.segmentOf();
    report.blocks.push(b.report);
  }
  // A shard's walk lists only its blocks: strays in the digest folder are shard 0's inventory's.
  if (!shard) findings.push(...listingFindings);
  if (!shard) report.lastSeq = listing.highest;
  const maxSeq = report.cut ?? report.lastSeq;
  if (opts.expectHead && opts.expectHead.fileSeq > maxSeq && report.cut === null) {
    findings.push({
      code: 'tail-missing',
      where: digestKey(opts.expectHead.fileSeq),
      message: `the archive ends at file ${maxSeq}, but file ${opts.expectHead.fileSeq} was its head earlier (${formatHead(opts.expectHead.fileSeq, opts.expectHead.digestSha256)}): the newest files were removed`,
    });
  }
  report.recorded = recorded.settle(report.head?.created_at ?? null);
  report.receipts = { findings: receipts.findings, notes: receipts.notes };
  return report;
}
