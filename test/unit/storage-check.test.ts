import { GetBucketVersioningCommand, GetObjectLockConfigurationCommand, HeadObjectCommand, ListObjectVersionsCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { checkS3Storage } from '../../src/verify/storage-s3.js';

/*
 * The listing logic of the storage check, against S3's documented paging of ListObjectVersions
 * (versions grouped by key, newest first; a page may end in the middle of a key's versions). A stub
 * client (aws-sdk-client-mock): radosgw's pages in the tests are never cut inside a key. The locks
 * themselves are checked against radosgw in test/integration/verify-s3.test.ts.
 */
describe('checkS3Storage: streaming the version listing', () => {
  it('judges a key whose versions span two pages as one, reads every lock, and reports in listing order', async () => {
    const s3 = mockClient(S3Client);
    s3.on(GetBucketVersioningCommand).resolves({ Status: 'Enabled' });
    s3.on(GetObjectLockConfigurationCommand).resolves({
      ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 3 } } },
    });
    const at = new Date('2026-12-01T00:00:00Z');
    const v = (Key: string, VersionId: string, ETag: string) => ({ Key, VersionId, ETag, LastModified: at, IsLatest: false });
    s3.on(ListObjectVersionsCommand, { KeyMarker: undefined })
      .resolves({ Versions: [v('p/a', '1', 'x'), v('p/b', '3', 'y')], IsTruncated: true, NextKeyMarker: 'p/b', NextVersionIdMarker: '3' })
      .on(ListObjectVersionsCommand, { KeyMarker: 'p/b' })
      .resolves({ Versions: [v('p/b', '2', 'z'), v('p/c', '4', 'w')], IsTruncated: false });
    const retained = new Date('2026-12-10T00:00:00Z');
    s3.on(HeadObjectCommand).callsFake((input: { Key: string; VersionId: string }) => {
      // Answers out of order: the first read is the slowest.
      const delay = input.VersionId === '1' ? 30 : 1;
      return new Promise((r) =>
        setTimeout(() => r({ ObjectLockMode: input.Key === 'p/c' ? 'GOVERNANCE' : 'COMPLIANCE', ObjectLockRetainUntilDate: retained }), delay),
      );
    });
    const report = await checkS3Storage(new S3Client({ region: 'us-east-1' }), 'bucket', 'p/', { days: 2 });
    expect(report.versions).toBe(4);
    expect(s3.commandCalls(HeadObjectCommand).length).toBe(4);
    expect(report.findings.map((f) => `${f.code} ${f.where}`)).toEqual(['overwritten b', 'governance-mode c']);
  });
});
