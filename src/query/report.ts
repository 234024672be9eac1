import { describe, type Query } from './filter.js';
import type { ScanReport } from './scan.js';

/** The answer's provenance in plain words: what was verified, what was searched, what failed. */
export function scanSummary(r: ScanReport, q: Query, archive: string): string {
  const out: string[] = [];
  const range = r.firstFile === null ? '' : r.firstFile === r.lastFile ? ` (file ${r.firstFile})` : ` (files ${r.firstFile}–${r.lastFile})`;
  const keys = [...r.keyIds].map((k) => `${k.slice(0, 16)}…`).join(', ');
  out.push(`answer:   ${r.matches} event${r.matches === 1 ? '' : 's'} — ${describe(q)}`);
  out.push(`archive:  ${archive}`);
  const dates = r.partitions.by === 'commit date' ? 'commit dates' : 'files sealed';
  out.push(
    `searched: ${dates} ${r.partitions.from ?? 'the beginning'} to ${r.partitions.to ?? 'now'}; ` +
      `${r.digests} digest${r.digests === 1 ? '' : 's'} checked link by link, ${r.filesRead} file${r.filesRead === 1 ? '' : 's'} read${range}, ${r.recordsRead} records` +
      (r.filesSkippedByIndex > 0
        ? `; ${r.filesSkippedByIndex} file${r.filesSkippedByIndex === 1 ? '' : 's'} not read: the key index in ${r.filesSkippedByIndex === 1 ? 'its' : 'their'} signed digest rules out a match`
        : ''),
  );
  for (const n of r.notes) out.push(`note:     ${n.where}: ${n.message}`);
  if (r.findings.length === 0) {
    out.push(
      `verified: every event shown comes from a file whose stored bytes, record chain and Ed25519-signed digest` + `${keys ? ` (key ${keys})` : ''} check out`,
    );
  } else {
    const failed = [...r.failedFiles].sort((a, b) => a - b);
    out.push(
      `NOT VERIFIED: ${r.findings.length} problem${r.findings.length === 1 ? '' : 's'} in the files searched` +
        `${failed.length ? `; the records of file${failed.length === 1 ? '' : 's'} ${failed.join(', ')} are not shown and may hold matches` : ''}:`,
    );
    for (const f of r.findings) out.push(`  - ${f.where}: ${f.message}`);
    out.push('  Events shown come from files that did verify. Run `pg-audit-shipper verify` on the archive.');
  }
  return `${out.join('\n')}\n`;
}
