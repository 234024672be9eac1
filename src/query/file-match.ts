import type { Digest } from '../seal/digest.js';
import type { ArchivedLine } from '../verify/archived.js';
import { checkFile } from '../verify/file.js';
import type { Finding } from '../verify/findings.js';
import type { ChainState } from '../verify/links.js';
import { RecordedFindings } from '../verify/recorded.js';
import { matches, type Query } from './filter.js';

/** What a search needs of one file it read: checked against its signed digest, then matched. */
export interface FileMatch {
  findings: Finding[];
  records: number;
  matched: ArchivedLine[];
  /** events that match everything but the app user and customer, and are not attributed (scan.ts) */
  unattributed: number;
  /** the records the answer's notes are made from (tamper, gap, acknowledgements, attestations) */
  notable: ArchivedLine[];
}

/** Check one file and match its records; pure, and the same code on the main thread and in a worker. */
export function checkAndMatch(body: Buffer | null, d: Digest, before: ChainState, q: Query, unattributed: Query | null): FileMatch {
  // Only matches and notable records are kept while the file is checked (the rest die young, as in
  // verify); the unattributed are counted as they pass.
  let count = 0;
  const keep = (l: ArchivedLine): boolean => {
    if (unattributed && l.record.app_context === 'unknown' && matches(l.record, unattributed)) count++;
    return matches(l.record, q) || RecordedFindings.reads(l.record);
  };
  const file = checkFile(body, d, before, keep);
  if (file.findings.length > 0) return { findings: file.findings, records: 0, matched: [], unattributed: 0, notable: [] };
  const matched: ArchivedLine[] = [];
  const notable: ArchivedLine[] = [];
  for (const l of file.lines) {
    if (matches(l.record, q)) matched.push(l);
    if (RecordedFindings.reads(l.record)) notable.push(l);
  }
  return { findings: [], records: file.records, matched, unattributed: count, notable };
}
