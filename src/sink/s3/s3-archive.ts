import { createHash } from 'node:crypto';
import { storageRequestHandler } from '../http.js';
import { permanentReason } from '../retry.js';
import {
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type ServerSideEncryption,
} from '@aws-sdk/client-s3';
import { ConfigError, ServiceError } from '../../errors.js';
import type { Archive, ArchiveObject, ArchiveReader, Receipt, Sink } from '../sink.js';
import { withStreamedFiles, type StreamedReader } from '../firehose/stream-reader.js';

export type SseMode = 'AES256' | 'aws:kms' | 'none';

export interface S3ArchiveConfig {
  bucket: string;
  /** key prefix inside the bucket, '' or ending in '/' */
  prefix: string;
  forcePathStyle: boolean;
  sse: SseMode;
  kmsKeyId?: string;
  /** retain-until = write time + this; computed per object */
  retainUntil: (now: Date) => Date;
  /** the shortest default retention the bucket may have, in days */
  minDefaultRetentionDays: number;
  /** how often locks are read back and the bucket checked again (src/sink/open.ts) */
  lockChecks?: { readbackEvery: number; configCheckMs: number };
}

/** `s3://bucket/prefix` -> bucket and normalised prefix. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new ConfigError(`--archive (AUDIT_ARCHIVE) ${url} is not an S3 location; e.g. s3://my-audit-bucket/prod-db`);
  const raw = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket: m[1]!, prefix: raw ? `${raw}/` : '' };
}

/** The AWS SDK's own configuration chain (AWS_REGION, credentials, AWS_ENDPOINT_URL_S3) plus path style. */
export function s3Client(forcePathStyle: boolean): S3Client {
  const endpoint = process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL || undefined;
  return new S3Client({
    region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1',
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle,
    // Content-MD5 is what Object Lock PUTs need (and what every S3 implementation checks); the
    // SDK's default trailing checksums break on some of them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    requestHandler: storageRequestHandler(),
  });
}

/** Reading only (verify, retention, query): no write settings to invent. */
export function s3ArchiveReader(client: S3Client, bucket: string, prefix: string): { location: string; reader: StreamedReader } {
  // Files a delivery stream carried are read from what it delivered; all else is plain objects.
  return { location: `s3://${bucket}/${prefix}`, reader: withStreamedFiles(new S3Reader(client, { bucket, prefix })) };
}

export function s3Archive(client: S3Client, cfg: S3ArchiveConfig): Archive {
  return {
    location: `s3://${cfg.bucket}/${cfg.prefix}`,
    sink: new S3Sink(client, cfg),
    reader: new S3Reader(client, cfg),
  };
}

/**
 * Refuse to ship into a bucket that would not keep the data: versioning on, Object Lock on, and a
 * default COMPLIANCE retention at least as long as required (it protects anything written
 * without explicit lock headers).
 */
export async function checkBucket(client: S3Client, cfg: Pick<S3ArchiveConfig, 'bucket' | 'minDefaultRetentionDays'>): Promise<void> {
  const where = `s3://${cfg.bucket}`;
  // Both answers are needed before anything is decided; asking at once saves a round trip at start.
  const [versioning, lock] = await Promise.allSettled([
    client.send(new GetBucketVersioningCommand({ Bucket: cfg.bucket })),
    client.send(new GetObjectLockConfigurationCommand({ Bucket: cfg.bucket })),
  ]);
  if (versioning.status === 'rejected') throw new ServiceError(`cannot read ${where}: ${describeS3Error(versioning.reason)}`);
  if (versioning.value.Status !== 'Enabled') {
    throw new ConfigError(`${where} does not have versioning enabled; create the bucket with Object Lock enabled (see retention/README.md)`);
  }
  if (lock.status === 'rejected') {
    const err = lock.reason;
    const code = (err as { name?: string }).name;
    if (code === 'ObjectLockConfigurationNotFoundError' || code === 'NoSuchObjectLockConfiguration') {
      throw new ConfigError(
        `${where} does not have Object Lock enabled; audit files there could be deleted. ` +
          'Object Lock can only be enabled when a bucket is created: create one with --object-lock-enabled-for-bucket',
      );
    }
    throw new ServiceError(`cannot read the Object Lock configuration of ${where}: ${describeS3Error(err)}`);
  }
  const conf = lock.value.ObjectLockConfiguration;
  if (conf?.ObjectLockEnabled !== 'Enabled') {
    throw new ConfigError(`${where} does not have Object Lock enabled; create the bucket with Object Lock enabled`);
  }
  const rule = conf.Rule?.DefaultRetention;
  if (!rule) {
    throw new ConfigError(`${where} has no default Object Lock retention; set a COMPLIANCE default of at least ${cfg.minDefaultRetentionDays} days`);
  }
  if (rule.Mode !== 'COMPLIANCE') {
    throw new ConfigError(`${where} default retention is ${rule.Mode}, which privileged users can remove; set COMPLIANCE`);
  }
  const days = rule.Days ?? (rule.Years ?? 0) * 365;
  if (days < cfg.minDefaultRetentionDays) {
    throw new ConfigError(`${where} default retention is ${days} days; at least ${cfg.minDefaultRetentionDays} are required`);
  }
}

class S3Sink implements Sink {
  /** objects stored by this process; the first, and one in lockChecks.readbackEvery, have their lock read back */
  private stored = 0;
  /** when the bucket's configuration was last confirmed (openArchive checks it before the sink exists) */
  private bucketCheckedAt = Date.now();
  private bucketCheck: Promise<void> | null = null;

  constructor(
    private readonly client: S3Client,
    private readonly cfg: S3ArchiveConfig,
  ) {}

  /**
   * The bucket's versioning and default COMPLIANCE retention, read again once the interval has
   * passed. What changed there is no failure a retry fixes: the error stops the shipper, which
   * acknowledges nothing it has not stored under a lock.
   */
  private async bucketStillLocked(): Promise<void> {
    const every = this.cfg.lockChecks?.configCheckMs ?? Infinity;
    if (Date.now() - this.bucketCheckedAt < every) return;
    this.bucketCheck ??= checkBucket(this.client, this.cfg)
      .then(
        () => {
          this.bucketCheckedAt = Date.now();
        },
        (err: unknown) => {
          if (!(err instanceof ConfigError)) throw err; // cannot read it now: retried like any request
          const e = new ServiceError(`the bucket changed while shipping: ${err.message}`);
          e.name = 'BucketLockChanged'; // retrying cannot fix it (src/sink/retry.ts)
          throw e;
        },
      )
      .finally(() => {
        this.bucketCheck = null;
      });
    await this.bucketCheck;
  }

  /** `key` when it holds exactly `body` (with its version); null when there is no such key; ObjectExists when it holds other bytes. */
  private async existing(key: string, body: Buffer): Promise<{ versionId: string | undefined } | null> {
    // HEAD first: the common answer (no such key) then has no body to read. With a GET here, one
    // suite run under load stalled without an error after a storage hang (not reproduced alone); a
    // body read is the part of a request we have not seen time out, so it happens only when the key exists.
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.cfg.bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const stored = await this.client.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: key }));
    const bytes = Buffer.from(await stored.Body!.transformToByteArray());
    if (!bytes.equals(body)) {
      const e = new ServiceError(`s3://${this.cfg.bucket}/${key} exists with other content: another writer stores into this archive`);
      e.name = 'ObjectExists'; // retrying cannot fix it (src/sink/retry.ts)
      throw e;
    }
    return { versionId: stored.VersionId };
  }

  async put(obj: ArchiveObject): Promise<Receipt> {
    await this.bucketStillLocked();
    const key = this.cfg.prefix + obj.key;
    const retainUntil = this.cfg.retainUntil(new Date());
    const sse: { ServerSideEncryption?: ServerSideEncryption; SSEKMSKeyId?: string } =
      this.cfg.sse === 'none' ? {} : { ServerSideEncryption: this.cfg.sse, ...(this.cfg.kmsKeyId ? { SSEKMSKeyId: this.cfg.kmsKeyId } : {}) };
    // Create, never replace: in a versioned bucket a second PUT of a digest would make a stale
    // writer's file the current version, hiding the other's (split brain). A key that exists already
    // is fine only with the same bytes: a retry of a PUT whose answer was lost, or a data file sealed
    // again identically after a crash (data keys carry their content's hash). If-None-Match: * makes
    // the create atomic where the store honours it (AWS S3, MinIO); Ceph radosgw 16 ignores it in
    // versioned buckets (measured), so the key is also looked up first, which closes all but a
    // race of milliseconds between two writers.
    const before = await this.existing(key, obj.body);
    let versionId = before?.versionId;
    if (before === null)
      try {
        const put = await this.client.send(
          new PutObjectCommand({
            Bucket: this.cfg.bucket,
            Key: key,
            Body: obj.body,
            ContentType: obj.contentType,
            ContentLength: obj.body.length,
            ContentMD5: createHash('md5').update(obj.body).digest('base64'),
            ObjectLockMode: 'COMPLIANCE',
            ObjectLockRetainUntilDate: retainUntil,
            IfNoneMatch: '*',
            ...sse,
          }),
        );
        versionId = put.VersionId;
      } catch (err) {
        if ((err as { name?: string }).name !== 'PreconditionFailed') throw err;
        versionId = (await this.existing(key, obj.body))?.versionId;
      }
    // Trust, then check: the object version we wrote must carry the lock we asked for. The PUT
    // carried COMPLIANCE and its retain-until and S3 accepted it; reading the lock back is one more
    // request per object (two per sealed file), so it is done for the first object and then one in
    // --lock-readback-every (README, "What the lock checks trade"). verify reads every lock.
    const readback = this.stored++ % (this.cfg.lockChecks?.readbackEvery ?? 1) === 0;
    if (!readback) return { key: obj.key, bytes: obj.body.length, ...(versionId ? { versionId } : {}) }; // Receipt.lock: only what was read back
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.cfg.bucket, Key: key, VersionId: versionId }));
    if (head.ObjectLockMode !== 'COMPLIANCE' || !head.ObjectLockRetainUntilDate || head.ObjectLockRetainUntilDate.getTime() < retainUntil.getTime() - 1000) {
      const err = new ServiceError(
        `s3://${this.cfg.bucket}/${key} was stored without the requested lock ` +
          `(mode ${head.ObjectLockMode ?? 'none'}, retain until ${head.ObjectLockRetainUntilDate?.toISOString() ?? 'never'})`,
      );
      err.name = 'LockNotApplied'; // retrying cannot fix it (src/sink/retry.ts)
      throw err;
    }
    return {
      key: obj.key,
      bytes: obj.body.length,
      ...(versionId ? { versionId } : {}),
      lock: { mode: head.ObjectLockMode, retainUntil: head.ObjectLockRetainUntilDate },
    };
  }
}

class S3Reader implements ArchiveReader {
  constructor(
    private readonly client: S3Client,
    private readonly cfg: Pick<S3ArchiveConfig, 'bucket' | 'prefix'>,
  ) {}

  async get(key: string): Promise<Buffer | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.cfg.prefix + key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.cfg.bucket, Key: this.cfg.prefix + key }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async *list(prefix: string, startAfter?: string): AsyncIterable<string> {
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.cfg.bucket,
          Prefix: this.cfg.prefix + prefix,
          ContinuationToken: token,
          ...(startAfter && !token ? { StartAfter: this.cfg.prefix + startAfter } : {}),
        }),
      );
      for (const o of r.Contents ?? []) yield o.Key!.slice(this.cfg.prefix.length);
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

export function describeS3Error(err: unknown): string {
  const reason = permanentReason(err);
  if (reason) return reason;
  if (err instanceof S3ServiceException) {
    return `${err.name} (HTTP ${err.$metadata.httpStatusCode ?? '?'})${err.message && err.message !== 'UnknownError' ? `: ${err.message}` : ''}`;
  }
  const e = err as { code?: string; message?: string };
  return e.code ? `${e.code}${e.message ? `: ${e.message}` : ''}` : String(e.message ?? err);
}
