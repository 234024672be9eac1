import { ConfigError } from '../errors.js';
import { fileArchive } from './file/file-archive.js';
import { checkBucket, parseS3Url, s3Archive, s3ArchiveReader, s3Client, type SseMode } from './s3/s3-archive.js';
import type { Archive } from './sink.js';
import type { S3Client } from '@aws-sdk/client-s3';
import type { StreamedReader } from './firehose/stream-reader.js';

export interface ArchiveOptions {
  forcePathStyle: boolean;
  sse: SseMode;
  kmsKeyId?: string;
  retention: Retention;
  /** a delivery stream refused some records of a call (they are sent again) */
  onStreamRetry?: (refused: number, code: string) => void;
  /** how an S3 sink confirms locks; unset: every object read back */
  lockChecks?: LockChecks;
}

/**
 * How often a writer confirms Object Lock beyond the PUT's own headers: the lock of the first
 * object and of one in `readbackEvery` is read back (HeadObject), and the bucket's configuration
 * again every `configCheckMs`. `verify` reads every object's lock either way.
 */
export interface LockChecks {
  readbackEvery: number;
  configCheckMs: number;
}

/** How long every object is locked: calendar years (the HIPAA six) or days (tests, with consent). */
export type Retention = { years: number } | { days: number };

export const SIX_YEARS: Retention = { years: 6 };

/** "6y", "7y", "2190d"; shorter than six years only when allowShort (tests, trials). */
export function parseRetention(text: string, allowShort: boolean): Retention {
  const m = /^(\d+)\s*([yd])$/i.exec(text.trim());
  if (!m) throw new ConfigError(`--retention ${text} is invalid: use years or days, e.g. 6y or 2192d`);
  const n = Number(m[1]);
  const r: Retention = m[2]!.toLowerCase() === 'y' ? { years: n } : { days: n };
  if (n < 1) throw new ConfigError('--retention must be at least 1 day');
  // S3 Object Lock takes at most 100 years (36500 days) of default retention; a longer span is a typo
  // whose every upload would fail, retried forever.
  if (retentionDays(r) > MAX_RETENTION_DAYS) throw new ConfigError(`--retention ${text} is longer than 100 years (36500 days), the most Object Lock keeps`);
  if (!allowShort && retentionDays(r) < retentionDays(SIX_YEARS)) {
    throw new ConfigError(`--retention ${text} is shorter than the six years HIPAA requires; ` + 'pass --allow-short-retention only for tests and trials');
  }
  return r;
}

const MAX_RETENTION_DAYS = 36_500;

/**
 * The directory of a `file://` archive. `file://tmp/x` names the host "tmp" and the path /x, which
 * is never what was meant: refuse it rather than write to /x.
 */
export function fileArchivePath(url: string): string {
  const u = new URL(url);
  if (u.host !== '' && u.host !== 'localhost') {
    throw new ConfigError(
      `--archive (AUDIT_ARCHIVE) ${url} names a host (${u.host}): a local archive is file:///absolute/path, e.g. file:///${u.host}${u.pathname}`,
    );
  }
  return decodeURIComponent(u.pathname);
}

/** Days as S3 default retention counts them (365-day years): a lower bound on the calendar span. */
export function retentionDays(r: Retention): number {
  return 'years' in r ? r.years * 365 : r.days;
}

export function retainUntil(r: Retention, from: Date): Date {
  const d = new Date(from.getTime());
  if ('years' in r) d.setUTCFullYear(d.getUTCFullYear() + r.years);
  else d.setTime(d.getTime() + r.days * 86_400_000);
  return d;
}

/** Open `file:///path` or `s3://bucket/prefix`; an S3 bucket is checked before anything is written. */
export async function openArchive(url: string, opts: ArchiveOptions, check = true): Promise<Archive> {
  if (url.startsWith('file://')) {
    return fileArchive(fileArchivePath(url));
  }
  if (url.startsWith('s3://')) {
    const { bucket, prefix } = parseS3Url(url);
    if (opts.sse === 'aws:kms' && !opts.kmsKeyId) {
      throw new ConfigError('--s3-sse aws:kms needs --s3-kms-key-id (AUDIT_S3_KMS_KEY_ID)');
    }
    const client = s3Client(opts.forcePathStyle);
    const cfg = {
      bucket,
      prefix,
      forcePathStyle: opts.forcePathStyle,
      sse: opts.sse,
      ...(opts.kmsKeyId ? { kmsKeyId: opts.kmsKeyId } : {}),
      retainUntil: (now: Date) => retainUntil(opts.retention, now),
      minDefaultRetentionDays: Math.min(retentionDays(opts.retention), retentionDays(SIX_YEARS)),
      lockChecks: opts.lockChecks ?? { readbackEvery: 1, configCheckMs: Infinity },
    };
    if (check) await checkBucket(client, cfg);
    return s3Archive(client, cfg);
  }
  if (url.startsWith('firehose://')) {
    // Loaded only for a delivery stream: its SDK client costs ~0.1 s of start-up for everyone else.
    const { checkStream, firehoseArchive, firehoseClient, parseFirehoseUrl } = await import('./firehose/firehose-archive.js');
    const stream = parseFirehoseUrl(url);
    const s3 = s3Client(opts.forcePathStyle);
    const client = firehoseClient();
    const minDefaultRetentionDays = Math.min(retentionDays(opts.retention), retentionDays(SIX_YEARS));
    const dest = await checkStream(client, s3, stream, minDefaultRetentionDays);
    return firehoseArchive(
      client,
      s3,
      stream,
      dest,
      {
        forcePathStyle: opts.forcePathStyle,
        sse: opts.sse,
        ...(opts.kmsKeyId ? { kmsKeyId: opts.kmsKeyId } : {}),
        retainUntil: (now: Date) => retainUntil(opts.retention, now),
        minDefaultRetentionDays,
      },
      opts.onStreamRetry,
    );
  }
  throw new ConfigError(`--archive (AUDIT_ARCHIVE) ${url} is not supported: use file:///path, s3://bucket/prefix or firehose://stream`);
}

/** An archive opened for reading; `bucket` when it lives in S3 (verify checks locks, retention sets them). */
export type ArchiveReading = Pick<Archive, 'location' | 'reader'> & {
  bucket?: { client: S3Client; bucket: string; prefix: string; reader: StreamedReader };
};

/**
 * For commands that only read (verify, query, retention): file:// or s3://, no bucket checks, no
 * writes. The one place a reading command turns --archive into an archive.
 */
export function openArchiveReader(url: string, forcePathStyle: boolean): ArchiveReading {
  if (url.startsWith('file://')) return fileArchive(fileArchivePath(url));
  if (url.startsWith('s3://')) {
    const { bucket, prefix } = parseS3Url(url);
    const client = s3Client(forcePathStyle);
    const opened = s3ArchiveReader(client, bucket, prefix);
    return { ...opened, bucket: { client, bucket, prefix, reader: opened.reader } };
  }
  if (url.startsWith('firehose://')) {
    throw new ConfigError(`--archive ${url}: read a delivery stream's archive from its bucket, s3://BUCKET/PREFIX (the stream's S3 prefix without firehose/)`);
  }
  throw new ConfigError(`--archive (AUDIT_ARCHIVE) ${url} is not supported: use file:///path or s3://bucket/prefix`);
}
