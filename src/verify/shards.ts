import type { Digest } from '../seal/digest.js';
import { ConfigError } from '../errors.js';
import type { ArchiveVerdict } from './archive.js';
import { verifyChain, type BlockReport, type ChainOptions, type ChainReport, type Shard } from './chain.js';
import type { Finding } from './findings.js';
import { checkInventory } from './inventory.js';
import { ObjectIndex } from './object-index.js';
import { RecordedFindings } from './recorded.js';
import { ReceiptCheck } from './receipts.js';
import type { ArchiveReader } from '../sink/sink.js';
import type { StorageReport } from './storage-s3.js';

/**
 * `verify --shard I/N` and `verify-merge`: the data files are split among N runs (on one machine or
 * many, an Indexed Job's pods), each of which walks every digest (signatures and links: cheap) but
 * reads only its shard's files. Files go to shards in blocks of consecutive files (block b to shard
 * b mod N), so the split does not depend on how long the archive is when each shard lists it.
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

/** What every shard sees the same: the digest walk and the inventory. The merge checks they agree. */
export interface WalkReport {
  files: number;
  heartbeats: number;
  first_seq: number;
  first_event_at: string | null;
  last_event_at: string | null;
  head: Digest | null;
  head_sha256: string | null;
  cut: number | null;
  findings: Finding[];
  inventory: { findings: Finding[]; notes: Finding[] };
}

export interface ShardReport {
  format: typeof SHARD_REPORT_FORMAT;
  archive: string;
  shard: Shard;
  walk: WalkReport;
  blocks: BlockReport[];
  /** shard 0 of an s3:// archive: every object's lock (one listing of every version) */
  storage?: StorageReport | null;
}

/** Run one shard: the whole walk, the inventory, and the data files of this shard's blocks. */
export async function verifyShard(reader: ArchiveReader, archive: string, opts: ChainOptions & { shard: Shard }): Promise<ShardReport> {
  const chain = await verifyChain(reader, opts);
  const inventory = await checkInventory(reader, chain);
  return {
    format: SHARD_REPORT_FORMAT,
    archive,
    shard: opts.shard,
    walk: {
      files: chain.files,
      heartbeats: chain.heartbeats,
      first_seq: chain.firstSeq,
      first_event_at: chain.firstEventAt,
      last_event_at: chain.lastEventAt,
      head: chain.head,
      head_sha256: chain.headSha256,
      cut: chain.cut,
      findings: chain.findings,
      inventory,
    },
    blocks: chain.blocks,
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
 * shards of another split, or shards that walked different archives (different heads: give every
 * shard the same --through).
 */
export function mergeShards(reports: unknown[]): { archive: string; verdict: ArchiveVerdict; shards: number; storage: StorageReport | null } {
  if (reports.length === 0) throw new ConfigError('verify-merge: no shard reports given');
  const rs = reports.map((r, i) => {
    const x = r as Partial<ShardReport>;
    if (x?.format !== SHARD_REPORT_FORMAT || !x.shard || !x.walk || !Array.isArray(x.blocks) || typeof x.archive !== 'string') {
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
    if (JSON.stringify(r.walk) !== JSON.stringify(first.walk)) {
      const head = (w: WalkReport) => (w.head ? `file ${w.head.file_seq}, ${w.head_sha256?.slice(0, 16)}…` : 'none');
      throw new ConfigError(
        `verify-merge: shards ${first.shard.index} and ${r.shard.index} walked different archives (heads ${head(first.walk)} and ${head(r.walk)}): ` +
          'run every shard with the same --through (a file sequence, or "hour")',
      );
    }
  }
  const missing = [...Array(count).keys()].filter((i) => !seen.has(i));
  if (missing.length > 0)
    throw new ConfigError(`verify-merge: ${missing.length} of ${count} shard reports missing (shards ${missing.slice(0, 10).join(', ')})`);

  const blocks: BlockReport[] = [];
  for (const r of rs) {
    for (const b of r.blocks) {
      if (b.block % count !== r.shard.index)
        throw new ConfigError(`verify-merge: shard ${r.shard.index}/${count} reports block ${b.block}, which is not its own`);
      blocks.push(b);
    }
  }
  blocks.sort((a, b) => a.block - b.block);
  const walk = first.walk;
  const filesRead = blocks.reduce((n, b) => n + b.files_read, 0);
  if (filesRead !== walk.files) {
    throw new ConfigError(`verify-merge: the shards read ${filesRead} files, the chain names ${walk.files}: a shard report is incomplete`);
  }

  const recorded = new RecordedFindings();
  const receipts = new ReceiptCheck();
  const fileFindings: Finding[] = [];
  let records = 0;
  for (const b of blocks) {
    fileFindings.push(...b.findings);
    records += b.records;
    recorded.absorb(b.recorded);
    receipts.absorb(b.receipts);
  }
  const settled = recorded.settle(walk.head?.created_at ?? null);
  const chain: ChainReport = {
    objects: new ObjectIndex(),
    files: walk.files,
    skipped: 0,
    firstSeq: walk.first_seq,
    heartbeats: walk.heartbeats,
    firstEventAt: walk.first_event_at,
    lastEventAt: walk.last_event_at,
    records,
    head: walk.head,
    headSha256: walk.head_sha256,
    findings: [...walk.findings, ...fileFindings],
    recorded: settled,
    receipts: { findings: receipts.findings, notes: receipts.notes },
    cut: walk.cut,
    blocks: [],
  };
  return {
    archive: first.archive,
    shards: count,
    storage: seen.get(0)!.storage ?? null,
    verdict: {
      chain,
      findings: [...chain.findings, ...settled.open, ...receipts.findings, ...walk.inventory.findings],
      acknowledged: settled.acknowledged,
      notes: [...settled.notes, ...receipts.notes, ...walk.inventory.notes],
    },
  };
}
