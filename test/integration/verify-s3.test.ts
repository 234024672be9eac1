import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, GetObjectRetentionCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';
import { makeKeys, shipArgs, type TestKeys } from '../helpers/archive.js';
import { makeBucket, s3Env, testS3Client } from '../helpers/s3.js';

let keys: TestKeys;
let db: { name: string; url: string };

beforeAll(async () => {
  keys = await makeKeys();
  db = await freshDatabase('verifys3');
  await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series(1, 300) g`));
});

/** A fresh archive in its own bucket: 3-day COMPLIANCE retention, checked against a 2-day minimum. */
async function shippedBucket(): Promise<string> {
  const bucket = await makeBucket({ days: 3 });
  const slot = `s_${db.name}_${bucket.slice(-6).replace(/[^a-z0-9]/g, '')}`;
  const r = await runCli(shipArgs({ archive: `s3://${bucket}`, keys, extra: ['--drain', '--slot', slot, '--batch-max-records', '100', '--retention', '3d'] }), {
    DATABASE_URL: urlFor(db.name, 'ship_login'),
    ...s3Env(),
  });
  expect(r.code, r.stderr).toBe(0);
  await withClient(db.url, (c) => c.query('SELECT pg_drop_replication_slot($1)', [slot]));
  return bucket;
}

async function verify(bucket: string) {
  const r = await runCli(
    ['verify', '--archive', `s3://${bucket}`, '--verify-key', keys.verifyKey, '--min-retention', '2d', '--allow-short-retention', '--json'],
    s3Env(),
  );
  const report = JSON.parse(r.stdout || '{}') as {
    findings?: { code: string; where: string }[];
    notes?: { code: string }[];
    checked?: { storage_versions: number };
  };
  return { code: r.code, stderr: r.stderr, report, codes: (report.findings ?? []).map((f) => f.code) };
}

async function firstDataKey(bucket: string): Promise<string> {
  const list = await testS3Client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'data/' }));
  return list.Contents![0]!.Key!;
}

describe('verify on radosgw: is the storage really keeping the data?', () => {
  it('passes a bucket the shipper wrote, having checked every version lock', async () => {
    const bucket = await shippedBucket();
    const r = await verify(bucket);
    expect(r.report.findings).toEqual([]);
    expect(r.code).toBe(0);
    expect(r.report.checked!.storage_versions).toBeGreaterThan(6);

    // query reads the same bucket through a listing that starts at --from's date partition.
    const q = await runCli(
      [
        'query',
        '--archive',
        `s3://${bucket}`,
        '--verify-key',
        keys.verifyKey,
        '--format',
        'json',
        '--from',
        new Date(Date.now() - 3600_000).toISOString(),
        '--row-id',
        '7',
      ],
      s3Env(),
    );
    expect(q.code, q.stderr).toBe(0);
    expect(
      q.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { action: string; row_id: string })
        .map((e) => [e.action, e.row_id]),
    ).toEqual([['INSERT', '7']]);
    expect(q.stderr).toMatch(/verified: every event shown/);
  });

  it('reports an object in GOVERNANCE mode and one retained too briefly', async () => {
    const bucket = await shippedBucket();
    const s3 = testS3Client();
    const body = Buffer.from('x');
    const md5 = createHash('md5').update(body).digest('base64');
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'data/dt=2026-01-01/governance.bin',
        Body: body,
        ContentMD5: md5,
        ObjectLockMode: 'GOVERNANCE',
        ObjectLockRetainUntilDate: new Date(Date.now() + 5 * 86_400_000),
      }),
    );
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'data/dt=2026-01-01/short.bin',
        Body: body,
        ContentMD5: md5,
        ObjectLockMode: 'COMPLIANCE',
        ObjectLockRetainUntilDate: new Date(Date.now() + 3600_000),
      }),
    );
    const r = await verify(bucket);
    expect(r.code).toBe(1);
    expect(r.report.findings).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ code: 'governance-mode', where: 'data/dt=2026-01-01/governance.bin' }),
        expect.objectContaining({ code: 'retention-too-short', where: 'data/dt=2026-01-01/short.bin' }),
      ]),
    );
    // Sharded: shard 0 reads every lock of the bucket; the merge reports what one run reports.
    const dir = await mkdtemp(path.join(tmpdir(), 'shards-'));
    for (const i of [0, 1]) {
      const shard = await runCli(
        [
          'verify',
          '--archive',
          `s3://${bucket}`,
          '--verify-key',
          keys.verifyKey,
          '--min-retention',
          '2d',
          '--allow-short-retention',
          '--shard',
          `${i}/2`,
          '--shard-report',
          path.join(dir, `${i}.json`),
        ],
        s3Env(),
      );
      expect(shard.code, shard.stderr).toBe(0);
    }
    const merged = await runCli(['verify-merge', path.join(dir, '0.json'), path.join(dir, '1.json'), '--json']);
    expect(merged.code).toBe(1);
    expect(JSON.parse(merged.stdout)).toEqual(r.report);
  });

  it('reports a delete marker over a sealed file (and the file as missing to readers)', async () => {
    const bucket = await shippedBucket();
    const key = await firstDataKey(bucket);
    await testS3Client().send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    const r = await verify(bucket);
    expect(r.code).toBe(1);
    expect(r.report.findings).toEqual(
      expect.arrayContaining([expect.objectContaining({ code: 'delete-marker', where: key }), expect.objectContaining({ code: 'missing-file', where: key })]),
    );
  });

  it('retention extend keeps a time range longer and under legal hold, and never shortens', async () => {
    const bucket = await shippedBucket();
    const s3 = testS3Client();
    const keysOf = async () => (await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents!.map((o) => o.Key!);
    const until = new Date(Date.now() + 10 * 86_400_000);
    const base = ['retention', 'extend', '--archive', `s3://${bucket}`, '--verify-key', keys.verifyKey];
    const r = await runCli([...base, '--from', '2000-01-01T00:00:00Z', '--until', until.toISOString()], s3Env());
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const all = await keysOf();
    expect(r.stdout).toContain(`${all.length} objects in range: ${all.length} now retained until`);
    for (const key of all) {
      const ret = await s3.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: key }));
      expect(ret.Retention!.RetainUntilDate!.getTime()).toBeGreaterThanOrEqual(until.getTime() - 1000);
    }
    const shorter = await runCli([...base, '--until', new Date(Date.now() + 5 * 86_400_000).toISOString()], s3Env());
    expect(shorter.stdout).toContain(`0 now retained until`);
    expect(shorter.stdout).toContain(`${all.length} already retained longer`);
    // A range before the archive existed selects nothing.
    const none = await runCli([...base, '--to', '2001-01-01T00:00:00Z', '--legal-hold', 'on'], s3Env());
    expect(none.stdout).toMatch(/^0 objects in range/);
    const hold = await runCli([...base, '--legal-hold', 'on'], s3Env());
    expect(hold.stdout).toContain(`legal hold on on ${all.length}`);
    const v = await verify(bucket);
    expect(v.code).toBe(0);
    expect((v.report.notes ?? []).filter((n) => n.code === 'legal-hold')).toHaveLength(all.length);
    expect((await runCli([...base, '--legal-hold', 'off'], s3Env())).code).toBe(0);
  });

  it('reports objects written without a lock, in a bucket without default retention', async () => {
    const source = await shippedBucket();
    const bucket = await makeBucket({ mode: null }); // Object Lock on, no default rule: plain PUTs stay unlocked
    const s3 = testS3Client();
    const list = await s3.send(new ListObjectsV2Command({ Bucket: source }));
    for (const o of list.Contents!) {
      // A plain PUT of the same bytes (CopyObject would carry the source's lock over).
      const got = await s3.send(new GetObjectCommand({ Bucket: source, Key: o.Key! }));
      const body = Buffer.from(await got.Body!.transformToByteArray());
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: o.Key!, Body: body, ContentMD5: createHash('md5').update(body).digest('base64') }));
    }
    const r = await verify(bucket);
    expect(r.code).toBe(1);
    expect(r.codes).toContain('bucket-settings');
    expect(r.codes.filter((c) => c === 'not-locked')).toHaveLength(list.Contents!.length);
  });
});
