/**
 * An ingest receipt, as archived: an audit_log row with source 'ingest', action 'RECEIPT' and this
 * object as JSON in `statement`. `verify` reads them from the chain (verify/receipts.ts).
 */
export const RECEIPT_SOURCE = 'ingest';
export const RECEIPT_ACTION = 'RECEIPT';
/** The action of the event the ingester writes for a session's log lines it never saw (a `log-lines-missing` finding in verify). */
export const MISSING_LINES_ACTION = 'LOG LINES MISSING';

export interface IngestReceipt {
  /** the log file's identity: device, inode and a hash of its first bytes */
  file_key: string;
  file_name: string;
  /** byte range consumed, [from, to) */
  from: number;
  to: number;
  /** SHA-256 of those bytes */
  sha256: string;
  lines: number;
  events: number;
}
