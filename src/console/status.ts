import type { VerifyKey } from '../seal/keys.js';
import type { ArchiveReader } from '../sink/sink.js';
import { verifyArchive } from '../verify/archive.js';
import type { ChainReport } from '../verify/chain.js';
import type { Acknowledged, Finding } from '../verify/findings.js';
import type { StorageReport } from '../verify/storage-s3.js';
import { timeKey } from '../seal/event-time.js';

/** Events of one UTC day by how they were captured, and how many were denied. */
export interface DayTally {
  trigger: number;
  pgaudit: number;
  rowRead: number;
  other: number;
  denied: number;
}

/** The latest verification, as the status page shows it. */
export interface Status {
  checkedAt: string;
  seconds: number;
  chain: ChainReport;
  findings: Finding[];
  acknowledged: Acknowledged[];
  notes: Finding[];
  /** null: not an S3 archive (no locks to read) */
  storage: StorageReport | null;
  /** by the events' own dates (occurred_at), from the records verify read and checked */
  days: Map<string, DayTally>;
  /**
   * By the day files were sealed: the longest time from a file's last event to its sealing, in
   * seconds, from the signed digests (created_at, last_event_at): how far the trail lagged behind.
   */
  lag: Map<string, number>;
}

const blank = (): DayTally => ({ trigger: 0, pgaudit: 0, rowRead: 0, other: 0, denied: 0 });

/**
 * `verify` over the whole archive (every file read: the figures come from records that checked out),
 * and what the page draws from it. The storage's locks are read by `storage`, when the archive has any.
 */
export async function checkStatus(
  reader: ArchiveReader,
  opts: { keys: VerifyKey[]; workers?: number; storage: () => Promise<StorageReport | null>; now?: () => Date },
): Promise<Status> {
  const started = Date.now();
  const days = new Map<string, DayTally>();
  const lag = new Map<string, number>();
  const verdict = await verifyArchive(reader, {
    keys: new Map(opts.keys.map((k) => [k.keyId, k])),
    onDigest: (d) => {
      const last = d.kind === 'data' && d.last_event_at ? timeKey(d.last_event_at) : null;
      if (last === null) return;
      const seconds = Math.max(0, (Date.parse(d.created_at) - Date.parse(last)) / 1000);
      const day = d.created_at.slice(0, 10);
      lag.set(day, Math.max(lag.get(day) ?? 0, seconds));
    },
    ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
    onRecords: (records) => {
      for (const r of records) {
        if ((r.op !== 'insert' && r.op !== 'read') || typeof r.occurred_at !== 'string') continue;
        const day = r.occurred_at.slice(0, 10);
        let t = days.get(day);
        if (!t) days.set(day, (t = blank()));
        if (r.source === 'trigger') t.trigger++;
        else if (r.source === 'pgaudit') t.pgaudit++;
        else if (r.source === 'row-read') t.rowRead++;
        else t.other++;
        if (r.outcome === 'failure') t.denied++;
      }
    },
  });
  const storage = await opts.storage();
  return {
    checkedAt: (opts.now?.() ?? new Date()).toISOString(),
    seconds: (Date.now() - started) / 1000,
    chain: verdict.chain,
    findings: [...verdict.findings, ...(storage?.findings ?? [])],
    acknowledged: verdict.acknowledged,
    notes: [...verdict.notes, ...(storage?.notes ?? [])],
    storage,
    days,
    lag,
  };
}
