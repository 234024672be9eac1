// The shapes of archived records, in a leaf module: the checks of files, records and links all use them.

/** A record as archived: the line's fields, with its sequence and chain hash. */
export type ArchivedRecord = Record<string, unknown> & { seq: number; lsn: string; idx: number; op: string; chain: string };

/** A record with the exact line it was stored as (evidence packages quote lines, not re-encodings). */
export interface ArchivedLine {
  record: ArchivedRecord;
  line: string;
}
