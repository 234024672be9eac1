import { ConfigError } from '../errors.js';
import type { ArchiveVerdict } from './archive.js';
import { blockOf, emptyChainReport, verifyChain, type BlockReport, type ChainOptions, type Shard } from './chain.js';
import { openDigest } from '../seal/digest.js';
import { digestKey } from '../sink/keys.js';
import type { Finding } from './findings.js';
import { checkInventory } from './inventory.js';
import { RecordedFindings } from './recorded.js';
import { ReceiptCheck } from './receipts.js';
import type { ArchiveReader } from '../sink/sink.js';
import type { StorageReport } from './storage-s3.js';

/**
 * `verify --shard I/N` and `verify-merge`: the archive is split among N runs (on one machine or
 * many, an Indexed Job's pods) in blocks of consecutive files, block b to shard b mod N, so the
 * split does not depend on how long the archive is when each shard lists it. A shard walks the
 * digests of its blocks, each block from the digest before it (chain.ts, walkFrom), and reads their
 * data files; every shard finds where the archive starts and ends the same way (the frame).
 *
 * What crosses files (a tamper run, acknowledgements, attestations, ingest receipts) is checked per
 * block without the blocks before it; each block reports what it could not judge alone (a log file's
 * first receipt, the first attestation, a tamper run open at either end), bounded by the number of
 * log files, not of records. The merge joins the blocks in chain order and reaches the verdict one
 * run over the whole archive reaches (test/unit/shards.test.ts compares them on every conformance case).
 */
export const SHARD_REPORT_FORMAT = 'pg-audit-shipper/verify-shard/1';

/**
 * Files per block. A day at 5,000 events/s is ~43,000 files of 10,000 records: ~675 blocks of 64,
 * spread evenly over any sensible number of shards. Each block adds a few hundred bytes to its
 * shard's report (more when it holds an attestation of a changed configuration).
 */
export const BLOCK_FILES = 64;

/** What every shard finds the same: where the archive starts and ends. The merge checks they agree. */
export interface Frame {
  first_seq: number;
  last_seq: number;
  cut: number | null;
  /** findings about the archive as a whole (its start, its tail): every shard's are the same */
  findings: Finding[];
}

export interface ShardReport {
  format: typeof SHARD_REPORT_FORMAT;
  archive: string;
  shard: Shard;
  frame: Frame;
  blocks: BlockReport[];
  /** shard 0: what belongs to no file (foreign objects, misnamed ones, files before the start) */
  inventory: { findings: Finding[]; notes: Finding[] } | null;
  /** shard 0 of an s3:// archive: every object's lock (one listing of every version) */
  storage?: StorageReport | null;
}

/**
 * Run one shard: its blocks' digests (each block's walk starts from the digest before it), their
 * data files, and the inventory of their data files; shard 0 also judges what belongs to no file.
 * Memory and work are those of its blocks, but for the listing of every object the inventory needs.
 */
export async function verifyShard(reader: ArchiveReader, archive: string, opts: ChainOptions & { shard: Shard }): Promise<ShardReport> {
  const chain = await verifyChain(reader, opts);
  const { shard } = opts;
  const owns = (seq: number): boolean => seq >= chain.firstSeq && seq <= chain.lastSeq && blockOf(seq, shard.blockFiles) % shard.count === shard.index;
  const inventory = await checkInventory(reader, chain, {
    owns,
    globals: shard.index === 0,
    newestSeq: chain.lastSeq,
    // Another shard's file: its digest, read and checked here (only to judge a leftover copy).
    objectAt: async (seq) => {
      if (owns(seq)) return chain.objects.get(seq);
      if (seq < chain.firstSeq || seq > chain.lastSeq) return undefined;
      const bytes = await reader.get(digestKey(seq));
      const opened = bytes ? openDigest(bytes, opts.keys) : null;
      return opened?.ok ? (opened.digest.object_key ?? undefined) : undefined;
    },
  });
  const byBlock = new Map(chain.blocks.map((b) => [b.block, b]));
  const global = { findings: [] as Finding[], notes: [] as Finding[] };
  for (const item of inventory.items) {
    const b = item.fileSeq !== null ? byBlock.get(blockOf(item.fileSeq, shard.blockFiles)) : undefined;
    if (b) (item.note ? b.notes : b.tally.findings).push(item.finding);
    else (item.note ? global.notes : global.findings).push(item.finding);
  }
  return {
    format: SHARD_REPORT_FORMAT,
    archive,
    shard,
    frame: { first_seq: chain.firstSeq, last_seq: chain.lastSeq, cut: chain.cut, findings: chain.findings },
    blocks: chain.blocks,
    inventory: shard.index === 0 ? global : null,
  };
}

/** `I/N` as --shard takes it. */
export function parseShard(text: string, blockFiles = BLOCK_FILES): Shard | null {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) return null;
  const index = Number(m[1]);
  const count = Number(m[2]);
  return count >= 1 && count <= 10_000 && index < count ? { index, count, blockFiles } : null;
}

/**
 * Join the shards' reports into the verdict of one run over the whole archive. Refuses (ConfigError:
 * the merge cannot run, exit 2) reports that do not make one whole: a shard missing or given twice,
 * shards of another split, shards that found the archive to end elsewhere (give every shard the
 * same --through), a block missing or reported twice.
 */
export function mergeShards(reports: unknown[]): { archive: string; verdict: ArchiveVerdict; shards: number; storage: StorageReport | null } {
  if (reports.length === 0) throw new ConfigError('verify-merge: no shard reports given');
  const rs = reports.map((r, i) => {
    const x = r as Partial<ShardReport>;
    if (x?.format !== SHARD_REPORT_FORMAT || !x.shard || !x.frame || !Array.isArray(x.blocks) || typeof x.archive !== 'string') {
      throw new ConfigError(`verify-merge: report ${i + 1} is not a shard report of this version (${SHARD_REPORT_FORMAT}); write it with verify --shard I/N`);
    }
    return x as ShardReport;
  });
  const first = rs[0]!;
  const { count, blockFiles } = first.shard;
  const seen = new Map<number, ShardReport>();
  for (const r of rs) {
    if (r.archive !== first.archive) throw new ConfigError(`verify-merge: shards of two archives (${first.archive} and ${r.archive})`);
    if (r.shard.count !== count || r.shard.blockFiles !== blockFiles) {
      throw new ConfigError(
        `verify-merge: shards of two splits (${first.shard.index}/${count} and ${r.shard.index}/${r.shard.count}, ${blockFiles} and ${r.shard.blockFiles} files a block)`,
      );
    }
    if (seen.has(r.shard.index)) throw new ConfigError(`verify-merge: shard ${r.shard.index}/${count} is given twice`);
    seen.set(r.shard.index, r);
    if (JSON.stringify(r.frame) !== JSON.stringify(first.frame)) {
      throw new ConfigError(
        `verify-merge: shards ${first.shard.index} and ${r.shard.index} found the archive to end at different files (${first.frame.last_seq} and ${r.frame.last_seq}): ` +
          'run every shard with the same --through (a file sequence, or "hour")',
      );
    }
  }
  const missing = [...Array(count).keys()].filter((i) => !seen.has(i));
  if (missing.length > 0)
    throw new ConfigError(`verify-merge: ${missing.length} of ${count} shard reports missing (shards ${missing.slice(0, 10).join(', ')})`);

  const frame = first.frame;
  const byBlock = new Map<number, BlockReport>();
  for (const r of rs) {
    for (const b of r.blocks) {
      if (b.block % count !== r.shard.index)
        throw new ConfigError(`verify-merge: shard ${r.shard.index}/${count} reports block ${b.block}, which is not its own`);
      byBlock.set(b.block, b);
    }
  }
  const blocks: BlockReport[] = [];
  if (frame.last_seq >= frame.first_seq && frame.last_seq > 0) {
    for (let n = blockOf(Math.max(frame.first_seq, 1), blockFiles); n <= blockOf(frame.last_seq, blockFiles); n++) {
      const b = byBlock.get(n);
      if (!b)
        throw new ConfigError(
          `verify-merge: shard ${n % count}/${count} does not report block ${n} (files ${n * blockFiles + 1}-${(n + 1) * blockFiles}): its report is incomplete`,
        );
      blocks.push(b);
    }
  }
  if (blocks.length !== byBlock.size) throw new ConfigError('verify-merge: a shard reports blocks past the end of the archive');

  const recorded = new RecordedFindings();
  const receipts = new ReceiptCheck();
  const walkFindings: Finding[] = [];
  const blockNotes: Finding[] = [];
  const chain = emptyChainReport(frame.first_seq);
  chain.cut = frame.cut;
  chain.lastSeq = frame.last_seq;
  for (const b of blocks) {
    const t = b.tally;
    walkFindings.push(...t.findings);
    blockNotes.push(...b.notes);
    chain.files += t.files;
    chain.heartbeats += t.heartbeats;
    chain.records += t.records;
    if (t.firstEventAt && (!chain.firstEventAt || t.firstEventAt < chain.firstEventAt)) chain.firstEventAt = t.firstEventAt;
    if (t.lastEventAt && (!chain.lastEventAt || t.lastEventAt > chain.lastEventAt)) chain.lastEventAt = t.lastEventAt;
    if (t.head) {
      chain.head = t.head;
      chain.headSha256 = t.headSha256;
    }
    recorded.absorb(b.recorded);
    receipts.absorb(b.receipts);
  }
  const filesRead = blocks.reduce((n, b) => n + b.files_read, 0);
  if (filesRead !== chain.files)
    throw new ConfigError(`verify-merge: the shards read ${filesRead} files, their digests name ${chain.files}: a shard report is incomplete`);
  const settled = recorded.settle(chain.head?.created_at ?? null);
  chain.findings = [...frame.findings, ...walkFindings];
  chain.recorded = settled;
  chain.receipts = { findings: receipts.findings, notes: receipts.notes };
  const inventory = seen.get(0)!.inventory ?? { findings: [], notes: [] };
  return {
    archive: first.archive,
    shards: count,
    storage: seen.get(0)!.storage ?? null,
    verdict: {
      chain,
      findings: [...chain.findings, ...settled.open, ...receipts.findings, ...inventory.findings],
      acknowledged: settled.acknowledged,
      notes: [...settled.notes, ...receipts.notes, ...blockNotes, ...inventory.notes],
    },
  };
}
