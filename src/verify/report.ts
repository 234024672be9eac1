import { formatHead, type ChainReport, type Finding } from './chain.js';
import type { Acknowledged } from './findings.js';
import type { StorageReport } from './storage-s3.js';

export interface VerifyResult {
  archive: string;
  chain: ChainReport;
  storage: StorageReport | null;
  comparedWithDatabase: boolean;
  findings: Finding[];
  /** recorded findings a person reviewed (an acknowledgement event in the chain): not counted against the archive */
  acknowledged: Acknowledged[];
  notes: Finding[];
}

/** The head in the form `--expect-head` takes: keep it, and the next run proves nothing after it was cut. */
function headText(c: ChainReport): string | null {
  return c.head && c.headSha256 ? formatHead(c.head.file_seq, c.headSha256) : null;
}

export function toJson(r: VerifyResult): string {
  return `${JSON.stringify(
    {
      archive: r.archive,
      ok: r.findings.length === 0,
      checked: {
        files: r.chain.files,
        files_read: r.chain.files - r.chain.skipped,
        heartbeats: r.chain.heartbeats,
        records: r.chain.records,
        events_from: r.chain.firstEventAt,
        events_to: r.chain.lastEventAt,
        head: r.chain.head
          ? { file_seq: r.chain.head.file_seq, created_at: r.chain.head.created_at, key_id: r.chain.head.key_id, digest_sha256: r.chain.headSha256 }
          : null,
        storage_versions: r.storage?.versions ?? null,
        cut_at: r.chain.cut,
        compared_with_database: r.comparedWithDatabase,
      },
      findings: r.findings,
      acknowledged: r.acknowledged,
      notes: r.notes,
      expect_head: headText(r.chain),
    },
    null,
    2,
  )}\n`;
}

/** What an auditor reads: what was checked, over which period, and what is wrong where. */
export function toText(r: VerifyResult): string {
  const c = r.chain;
  const lines = [`Archive: ${r.archive}`];
  lines.push(
    c.head
      ? `Checked ${c.files} files holding ${c.records} records (events ${c.firstEventAt ?? '-'} to ${c.lastEventAt ?? '-'}) and ${c.heartbeats} heartbeats, ` +
          `up to file ${c.head.file_seq} sealed ${c.head.created_at} with key ${c.head.key_id.slice(0, 16)}…`
      : 'Checked: the archive holds no digest.',
  );
  if (c.cut !== null) lines.push(`The walk ended at file ${c.cut} on purpose (--through): the files after it are left to the next run.`);
  if (c.skipped > 0) {
    lines.push(
      `  Incremental: ${c.files - c.skipped} of ${c.files} files read (the new ones and a random sample); the rest were ` +
        'verified by an earlier run and their signed digests are unchanged.',
    );
  }
  lines.push(
    '  Every digest signature and link, every record hash and sequence number, the stored bytes of every file read' +
      (r.storage ? `, and the lock of all ${r.storage.versions} stored object versions` : '') +
      (r.comparedWithDatabase ? ', and the head the shipper recorded in the database.' : '.'),
  );
  if (r.findings.length === 0 && r.acknowledged.length > 0) {
    lines.push(
      `Result: no open problems. The archive is intact; the ${r.acknowledged.length} change${r.acknowledged.length === 1 ? '' : 's'} ` +
        'it records (below) were reviewed and acknowledged.',
    );
  } else if (r.findings.length === 0) {
    lines.push(
      r.storage
        ? 'Result: intact. Nothing was altered, removed, added or left unlocked.'
        : 'Result: intact. Nothing was altered, removed or added. (A local directory is not immutable storage; locks are checked on s3:// archives.)',
    );
  } else {
    lines.push(`Result: ${r.findings.length} problem${r.findings.length === 1 ? '' : 's'} found.`);
    for (const f of r.findings) lines.push(`  - ${f.id ? `${f.id} ` : ''}${f.where}: ${f.message} [${f.code}]`);
  }
  if (r.acknowledged.length > 0) {
    lines.push(`Acknowledged after review (${r.acknowledged.length}; recorded in the chain, not counted as problems):`);
    for (const a of r.acknowledged) {
      const k = a.acknowledgement;
      lines.push(`  - ${a.id} ${a.where}: ${a.message} [${a.code}]`);
      lines.push(`    acknowledged by ${k.by}${k.reviewer ? ` (${k.reviewer})` : ''} at ${k.at} in record ${k.seq}: ${k.reason}`);
    }
  }
  if (r.notes.length > 0) {
    lines.push('Notes:');
    for (const n of r.notes) lines.push(`  - ${n.where}: ${n.message}`);
  }
  const head = headText(r.chain);
  lines.push(head ? `Head: ${head}  (keep it: \`verify --expect-head ${head}\` proves later that nothing up to it was removed or rewritten)` : 'Head: none');
  return `${lines.join('\n')}\n`;
}
