import type { VerifyKey } from '../seal/keys.js';
import type { ArchiveReader } from '../sink/sink.js';
import type { EvidenceWriter } from './evidence.js';
import type { Query } from './filter.js';
import { createRowWriter, type Format } from './format.js';
import { scanSummary } from './report.js';
import { scanArchive, type ScanReport } from './scan.js';

/** Scan, print the matching rows as they are verified, and (optionally) collect evidence. */
export async function answerQuery(
  archive: { location: string; reader: ArchiveReader },
  opts: {
    keys: VerifyKey[];
    query: Query;
    format: Format;
    maxCommitDelayMs: number;
    write: (s: string) => void;
    evidence?: EvidenceWriter | null;
    workers?: number;
    /** resolves when the output has room again: a slow reader of a large answer holds the search, not memory */
    drained?: () => Promise<void>;
  },
): Promise<{ report: ScanReport; summary: string }> {
  const rows = createRowWriter(opts.format, opts.write);
  const report = await scanArchive(archive.reader, {
    keys: new Map(opts.keys.map((k) => [k.keyId, k])),
    query: opts.query,
    maxCommitDelayMs: opts.maxCommitDelayMs,
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    onMatches: async (file, matched) => {
      for (const m of matched) rows.row(m.record);
      await opts.evidence?.add(file, matched);
      await opts.drained?.();
    },
  });
  rows.end();
  return { report, summary: scanSummary(report, opts.query, archive.location) };
}
