import { describe, expect, it } from 'vitest';
import { decideRetry, describeStorageError, PERMANENT_ATTEMPTS, permanentReason } from '../../src/sink/retry.js';
import { BACKOFF, backoffMs } from '../../src/backoff.js';

/** An AWS SDK service error as the SDK builds it: a name (the service's code) and the HTTP status. */
const sdkError = (name: string, status: number, message = 'UnknownError') => Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });

describe('the storage retry policy', () => {
  it('retries what another attempt can fix, without end', () => {
    for (const err of [
      sdkError('SlowDown', 503),
      sdkError('InternalError', 500),
      sdkError('RequestTimeout', 400),
      sdkError('UnknownError', 502),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('timed out'), { name: 'TimeoutError' }),
    ]) {
      expect(permanentReason(err), err.name).toBeNull();
      expect(decideRetry(err, 50, () => 1)).toEqual({ retry: true, waitMs: 30_000 });
    }
  });

  it('backs off from 200 ms, doubling, capped at 30 s, with full jitter', () => {
    const waits = [0, 1, 2, 5, 10, 20].map((a) => (decideRetry(new Error('reset'), a, () => 1) as { waitMs: number }).waitMs);
    expect(waits).toEqual([200, 400, 800, 6400, 30_000, 30_000]);
    expect((decideRetry(new Error('reset'), 3, () => 0.5) as { waitMs: number }).waitMs).toBe(800);
  });

  it('stops on what retrying cannot fix after a few attempts, saying what to change', () => {
    const wrongSecret = sdkError('SignatureDoesNotMatch', 403, 'The request signature we calculated does not match');
    expect(decideRetry(wrongSecret, 0).retry).toBe(true); // a permission granted a moment ago may still be on its way
    expect(decideRetry(wrongSecret, PERMANENT_ATTEMPTS - 1)).toEqual({
      retry: false,
      reason: 'SignatureDoesNotMatch: the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY',
    });
    expect(permanentReason(sdkError('UnknownError', 403))).toMatch(/^HTTP 403 \(UnknownError\): the credentials are wrong or may not access this bucket/);
    expect(permanentReason(sdkError('NoSuchBucket', 404))).toMatch(/^NoSuchBucket: the bucket does not exist: check --archive/);
    // not "the bucket does not exist"
    expect(permanentReason(sdkError('NoSuchKey', 404))).toMatch(/^NoSuchKey: an object the archive names is not in the bucket/);
    expect(permanentReason(sdkError('InvalidArgument', 400))).toMatch(/check --s3-sse and --s3-kms-key-id/);
    expect(permanentReason(Object.assign(new Error('stored without the requested lock'), { name: 'LockNotApplied' }))).toMatch(
      /enforce Object Lock in COMPLIANCE mode/,
    );
  });

  it('describes an SDK error by its code and what to change; anything else is not its to describe', () => {
    expect(describeStorageError(sdkError('UnknownError', 403))).toMatch(/^HTTP 403/);
    expect(describeStorageError(sdkError('SlowDown', 503, 'Please reduce your request rate'))).toBe('SlowDown (HTTP 503): Please reduce your request rate');
    expect(describeStorageError(new Error('plain'))).toBeNull();
  });
});

describe('the one backoff (src/backoff.ts)', () => {
  it('every policy doubles from its first wait to its cap, with full jitter, and never overflows', () => {
    for (const [name, p] of Object.entries(BACKOFF)) {
      const bounds = [0, 1, 2, 3, 50, 10_000].map((a) => backoffMs(p, a, () => 1));
      expect(bounds.slice(0, 4), name).toEqual([p.firstMs, 2 * p.firstMs, 4 * p.firstMs, 8 * p.firstMs].map((w) => Math.min(w, p.maxMs)));
      expect(bounds.slice(4), name).toEqual([p.maxMs, p.maxMs]);
      expect(
        backoffMs(p, 3, () => 0),
        name,
      ).toBe(0);
      expect(
        backoffMs(p, 3, () => 0.25),
        name,
      ).toBe(Math.min(8 * p.firstMs, p.maxMs) / 4);
    }
    expect(BACKOFF.ingest).toEqual({ firstMs: 1000, maxMs: 60_000 }); // what the README says of the built-in ingester
  });
});
