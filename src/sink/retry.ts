import { BACKOFF, backoffMs } from '../backoff.js';

/**
 * The one retry policy for storage and delivery-stream requests (S3, Firehose): which failures
 * another attempt can fix, how long to wait, and when to stop. A network error, a timeout, a 5xx,
 * throttling: retried without end (the slot holds the data meanwhile). A wrong key, a missing
 * bucket, a setting the store refuses: retrying cannot fix them, so after PERMANENT_ATTEMPTS (a
 * newly granted permission can take a few seconds to apply) the shipper stops and says what to change.
 */
export const PERMANENT_ATTEMPTS = 3;

export type RetryDecision = { retry: true; waitMs: number } | { retry: false; reason: string };

interface ServiceError {
  name?: string;
  message?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: string;
}

/** Errors that are the request's fault, by the code the service names, and what to change. */
const PERMANENT: Record<string, string> = {
  InvalidAccessKeyId: 'the storage does not know this access key: check AWS_ACCESS_KEY_ID (or the credentials the AWS SDK found)',
  SignatureDoesNotMatch: 'the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY',
  AccessDenied: 'the credentials may not do this: grant them the shipper policy in retention/ (PutObject, PutObjectRetention, GetObject*, ListBucket)',
  Forbidden: 'the credentials are wrong or may not access this bucket (HTTP 403): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy',
  NoSuchBucket: 'the bucket does not exist: check --archive (AUDIT_ARCHIVE), and AWS_ENDPOINT_URL_S3 / AWS_REGION',
  InvalidBucketName: 'the bucket name is not valid: check --archive (AUDIT_ARCHIVE)',
  InvalidArgument: 'the storage refuses a setting of the request: check --s3-sse and --s3-kms-key-id (the store may not support the encryption asked for)',
  InvalidRequest: 'the storage refuses the request as made: check --s3-sse, --s3-kms-key-id and that the bucket has Object Lock enabled',
  NotImplemented: 'the storage does not implement a feature the request uses: check --s3-sse (try AES256 or none) and Object Lock support',
  InvalidEncryptionAlgorithmError: 'the storage does not support this encryption: check --s3-sse',
  'KMS.NotFoundException': 'the KMS key does not exist: check --s3-kms-key-id',
  'KMS.DisabledException': 'the KMS key is disabled: enable it or change --s3-kms-key-id',
  KMSAccessDeniedException: 'the credentials may not use the KMS key: grant kms:GenerateDataKey on it',
  ResourceNotFoundException: 'the delivery stream does not exist: check --archive firehose://<stream>',
  InvalidArgumentException: "the delivery stream refuses the records as sent: check the stream's configuration",
  UnrecognizedClientException: 'the delivery-stream service does not know these credentials: check AWS_ACCESS_KEY_ID',
  InvalidSignatureException: 'the secret key does not match: check AWS_SECRET_ACCESS_KEY',
  ObjectExists:
    'two shippers write to this archive (one paused or partitioned while the other took over its slot): stop the other one; each database and slot needs its own --archive prefix',
  LockNotApplied: 'the store kept the object without the Object Lock asked for: use a bucket, and a store, that enforce Object Lock in COMPLIANCE mode',
  BucketLockChanged:
    "the bucket's versioning or default Object Lock retention changed while shipping: restore a COMPLIANCE default of at least the retention, or ship to another bucket",
};

/** Retried whatever their HTTP status says. */
const TRANSIENT = new Set([
  'SlowDown',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'ServiceUnavailableException',
  'LimitExceededException',
  'TimeoutError',
  'RequestTimeoutException',
  'OperationAborted',
]);

/** What to change, when retrying cannot fix this failure; null when another attempt may succeed. */
export function permanentReason(err: unknown): string | null {
  const e = (err ?? {}) as ServiceError;
  const name = e.name ?? e.code ?? '';
  if (TRANSIENT.has(name)) return null;
  if (PERMANENT[name]) return `${name}: ${PERMANENT[name]}`;
  const status = e.$metadata?.httpStatusCode;
  // A HEAD request's error has no body, so no code: the status is all there is.
  if (status === 403) return `HTTP 403 (${name || 'no detail'}): ${PERMANENT.Forbidden!}`;
  // A missing object names itself (NoSuchKey); a HEAD request's bare 404 cannot tell.
  if (status === 404 && name === 'NoSuchKey')
    return 'NoSuchKey: an object the archive names is not in the bucket (removed, or the wrong --archive prefix): run `pg-audit-shipper verify`';
  if (status === 404) return `HTTP 404 (${name || 'no detail'}): ${PERMANENT.NoSuchBucket!}`;
  if (status === 400 || status === 405 || status === 411 || status === 501) {
    return `HTTP ${status} (${name || 'no detail'}${e.message && e.message !== 'UnknownError' ? `: ${e.message}` : ''}): the storage refuses the request as made; check --s3-sse, --s3-kms-key-id and the bucket's settings`;
  }
  return null; // network errors, timeouts, 5xx, 408, 429, and anything unknown: try again
}

/**
 * After the `attempt`-th failure (0-based) with `err`: wait (capped exponential backoff, full
 * jitter: 200 ms doubling to 30 s) or stop with the reason.
 */
export function decideRetry(err: unknown, attempt: number, random: () => number = Math.random): RetryDecision {
  const reason = permanentReason(err);
  if (reason !== null && attempt + 1 >= PERMANENT_ATTEMPTS) return { retry: false, reason };
  return { retry: true, waitMs: backoffMs(BACKOFF.storage, attempt, random) };
}

/**
 * An AWS SDK service error in words an operator can act on (its code, HTTP status and what to
 * change), or null when `err` is not one. "UnknownError" alone (a HEAD request's 403) said nothing.
 */
export function describeStorageError(err: unknown): string | null {
  const e = (err ?? {}) as ServiceError;
  if (!e.$metadata) return null;
  const reason = permanentReason(err);
  if (reason) return reason;
  const status = e.$metadata.httpStatusCode;
  return `${e.name ?? 'error'}${status ? ` (HTTP ${status})` : ''}${e.message && e.message !== 'UnknownError' ? `: ${e.message}` : ''}`;
}
