/**
 * Where things live in an archive (file:// or s3://, the same layout):
 *
 *   digests/000000000042.digest                                   one per file or heartbeat, by sequence
 *   data/dt=2026-11-26/000000000042-3f9a0c1e5b7d2a4f.jsonl.gz      records; dt = UTC commit date
 *
 * Digest keys follow from the sequence alone, so the newest can be found without listing six
 * years of objects. Data keys are Hive-style date partitions that Athena/Trino prune by.
 */
export const DIGEST_DIR = 'digests/';
export const DATA_DIR = 'data/';

export function pad(seq: number): string {
  return String(seq).padStart(12, '0');
}

export function digestKey(fileSeq: number): string {
  return `${DIGEST_DIR}${pad(fileSeq)}.digest`;
}

export function dataKey(fileSeq: number, commitDate: string, contentSha256: string): string {
  return `${DATA_DIR}dt=${commitDate}/${pad(fileSeq)}-${contentSha256.slice(0, 16)}.jsonl.gz`;
}

/**
 * Data that went through a delivery stream (Amazon Data Firehose) is not one object: its digest
 * names it `firehose://STREAM/000000000042`, and readers gather its record lines from what the
 * stream delivered under firehose/ (see sink/firehose).
 */
export const STREAM_DIR = 'firehose/';

export function streamKey(stream: string, fileSeq: number): string {
  return `firehose://${stream}/${pad(fileSeq)}`;
}

export function parseStreamKey(key: string): { stream: string; fileSeq: number } | null {
  const m = /^firehose:\/\/([^/]+)\/(\d{12})$/.exec(key);
  return m ? { stream: m[1]!, fileSeq: Number(m[2]) } : null;
}

export function parseDigestKey(key: string): number | null {
  const m = /^digests\/(\d{12})\.digest$/.exec(key);
  return m ? Number(m[1]) : null;
}

export function parseDataKey(key: string): { fileSeq: number; date: string } | null {
  const m = /^data\/dt=(\d{4}-\d{2}-\d{2})\/(\d{12})-[0-9a-f]{16}\.jsonl\.gz$/.exec(key);
  return m ? { fileSeq: Number(m[2]), date: m[1]! } : null;
}

/** An object's full address for messages: the archive's location and the key, one slash between. */
export function objectUrl(location: string, key: string): string {
  return location.endsWith('/') ? `${location}${key}` : `${location}/${key}`;
}
