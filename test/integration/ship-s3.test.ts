import { GetObjectRetentionCommand, ListObjectVersionsCommand, PutObjectLockConfigurationCommand } from '@aws-sdk/client-s3';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { s3Archive, s3ArchiveReader, s3Client } from '../../src/sink/s3/s3-archive.js';
import { permanentReason } from '../../src/sink/retry.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { makeKeys, readArchive, shipArgs, type TestKeys } from '../helpers/archive.js';
import { makeBucket, Outage, s3Env, testS3Client } from '../helpers/s3.js';
import { expectExactlyOnce } from '../helpers/exactly-once.js';
import { requireEnv } from '../helpers/env.js';

let keys: TestKeys;
beforeAll(async () => {
  keys = await makeKeys();
});

function readerFor(bucket: string, prefix: string, endpoint?: string) {
  const env = s3Env(endpoint);
  Object.assign(process.env, env);
  return s3ArchiveReader(s3Client(true), bucket, prefix).reader;
}

/** A sink into `bucket` as the shipper opens one (a day's retention), without the bucket check at open. */
function sinkFor(bucket: string, prefix: string, lockChecks?: { readbackEvery: number; configCheckMs: number }, client = s3Client(true)) {
  Object.assign(process.env, s3Env());
  return s3Archive(client, {
    bucket,
    prefix,
    forcePathStyle: true,
    sse: 'none',
    retainUntil: (now) => new Date(now.getTime() + 86_400_000),
    minDefaultRetentionDays: 1,
    ...(lockChecks ? { lockChecks } : {}),
  }).sink;
}

async function writeEvents(url: string, from: number, n: number): Promise<void> {
  await withClient(url, (c) =>
    c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series($1::int, $2::int) g`, [from, from + n - 1]),
  );
}

const ids = (url: string) =>
  withClient(url, async (c) => (await c.query<{ id: string }>('SELECT id::text FROM audit.audit_log ORDER BY audit_log.id')).rows.map((r) => r.id));

describe('ship to S3 with Object Lock (Ceph radosgw)', () => {
  it('stores every file and digest locked in COMPLIANCE mode, and the chain verifies from S3', async () => {
    const db = await freshDatabase('s3ship');
    const bucket = await makeBucket();
    await writeEvents(db.url, 1, 2000);
    const args = shipArgs({ archive: `s3://${bucket}/prod/db1`, keys, extra: ['--drain', '--slot', `s_${db.name}`, '--batch-max-records', '700'] });
    const r = await runCli(args, { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env() });
    expect(r.code, r.stderr).toBe(0);
    await writeEvents(db.url, 5000, 500);
    expect((await runCli(args, { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env() })).code).toBe(0);

    const { report, records } = await readArchive(readerFor(bucket, 'prod/db1/'), keys.keys);
    expect(report.findings).toEqual([]);
    await expectExactlyOnce(records, db.url, { inIdOrder: true });
    const s3 = testS3Client();
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
    expect(versions.Versions!.length).toBe(report.files * 2);
    expect(versions.DeleteMarkers ?? []).toEqual([]);
    const minUntil = Date.now() + 23 * 3600_000;
    for (const v of versions.Versions!) {
      expect(v.Key).toMatch(/^prod\/db1\/(digests\/\d{12}\.digest|data\/dt=\d{4}-\d\d-\d\d\/\d{12}-[0-9a-f]{16}\.jsonl\.gz)$/);
      const ret = await s3.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId }));
      expect(ret.Retention!.Mode).toBe('COMPLIANCE');
      expect(ret.Retention!.RetainUntilDate!.getTime()).toBeGreaterThan(minUntil);
    }
  });

  it('refuses buckets that would not keep the data, naming what is wrong', async () => {
    const db = await freshDatabase('s3refuse');
    const cases: [Parameters<typeof makeBucket>[0], RegExp][] = [
      [{ lock: false }, /does not have (versioning enabled|Object Lock enabled)/],
      [{ mode: null }, /has no default Object Lock retention/],
      [{ mode: 'GOVERNANCE' }, /default retention is GOVERNANCE, which privileged users can remove; set COMPLIANCE/],
    ];
    for (const [bucketOpts, message] of cases) {
      const bucket = await makeBucket(bucketOpts);
      const r = await runCli(shipArgs({ archive: `s3://${bucket}`, keys, extra: ['--drain', '--slot', `s_${db.name}`] }), {
        DATABASE_URL: urlFor(db.name, 'ship_login'),
        ...s3Env(),
      });
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    const sixYears = await makeBucket({ days: 1 });
    const strict = await runCli(
      ['ship', '--archive', `s3://${sixYears}`, '--signing-key', keys.signingKey, '--http-port', '0', '--drain', '--slot', `s_${db.name}`],
      { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env() },
    );
    expect(strict.code).toBe(2);
    expect(strict.stderr).toMatch(/default retention is 1 days; at least 2190 are required/);
    const short = await runCli(['ship', '--archive', `s3://${sixYears}`, '--signing-key', keys.signingKey, '--retention', '30d'], {
      DATABASE_URL: urlFor(db.name, 'ship_login'),
      ...s3Env(),
    });
    expect(short.stderr).toMatch(/--retention 30d is shorter than the six years HIPAA requires/);
  });

  it('stops (exit 2) on storage errors retrying cannot fix, naming the code and what to change: a wrong secret, an encryption the store refuses', async () => {
    const db = await freshDatabase('s3permanent');
    const bucket = await makeBucket();
    const args = shipArgs({ archive: `s3://${bucket}`, keys, extra: ['--drain', '--slot', `s_${db.name}`] });
    const wrongSecret = await runCli(args, { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env(), AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
    expect(wrongSecret.code).toBe(2);
    expect(wrongSecret.stderr.trim().split('\n').at(-1)).toMatch(
      /^pg-audit-shipper: error: .*SignatureDoesNotMatch: the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY$/,
    );
    // This radosgw has no KMS: it refuses server-side encryption headers. Retrying would never end.
    await writeEvents(db.url, 1, 10);
    const sse = await runCli(args, { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env(), AUDIT_S3_SSE: 'AES256' });
    expect(sse.code).toBe(2);
    expect(sse.stderr.trim().split('\n').at(-1)).toMatch(/^pg-audit-shipper: error: storing .* failed 3 times and retrying cannot fix it: .*check --s3-sse/);
    // Nothing was acknowledged: with the setting fixed, everything ships.
    const fixed = await runCli(args, { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env() });
    expect(fixed.code, fixed.stderr).toBe(0);
    const { records } = await readArchive(readerFor(bucket, ''), keys.keys);
    expect(records.filter((x) => x.op === 'insert' && x.action === 'INSERT').length).toBe(10);
  });

  it('never replaces an object (If-None-Match): the same bytes again are a stored retry, other bytes are another writer', async () => {
    const bucket = await makeBucket();
    const sink = sinkFor(bucket, 'p/');
    const obj = (body: string) => ({ key: 'digests/000000000007.digest', body: Buffer.from(body), contentType: 'application/x-ndjson' });
    await sink.put(obj('first'));
    await expect(sink.put(obj('first'))).resolves.toMatchObject({ key: 'digests/000000000007.digest' });
    await expect(sink.put(obj('second'))).rejects.toMatchObject({ name: 'ObjectExists' });
    const versions = await testS3Client().send(new ListObjectVersionsCommand({ Bucket: bucket }));
    expect(versions.Versions!.length).toBe(1);
  });

  it('reads back the lock of the first object and of one in --lock-readback-every; the others are locked by their PUT alone', async () => {
    const bucket = await makeBucket();
    Object.assign(process.env, s3Env());
    const client = s3Client(true);
    const heads: { versioned: boolean }[] = [];
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'HeadObjectCommand') heads.push({ versioned: (args.input as { VersionId?: string }).VersionId !== undefined });
        return next(args);
      },
      { step: 'initialize' },
    );
    const sink = sinkFor(bucket, '', { readbackEvery: 4, configCheckMs: 3_600_000 }, client);
    for (let i = 0; i < 10; i++)
      await sink.put({ key: `digests/${String(i).padStart(12, '0')}.digest`, body: Buffer.from(`d${i}`), contentType: 'text/plain' });
    // One HEAD per object asks whether the key exists (radosgw ignores If-None-Match in versioned
    // buckets); the version's lock was read back for objects 0, 4 and 8 only.
    expect(heads.filter((h) => !h.versioned)).toHaveLength(10);
    expect(heads.filter((h) => h.versioned)).toHaveLength(3);
    // The storage locked every one of them all the same: the PUT carried the lock.
    const s3 = testS3Client();
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
    expect(versions.Versions).toHaveLength(10);
    for (const v of versions.Versions!) {
      const ret = await s3.send(new GetObjectRetentionCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId }));
      expect(ret.Retention?.Mode, v.Key).toBe('COMPLIANCE');
    }
  });

  it("stops writing when the bucket's default retention stops being COMPLIANCE while shipping, and says what to restore", async () => {
    const bucket = await makeBucket();
    const sink = sinkFor(bucket, '', { readbackEvery: 16, configCheckMs: 0 }); // the bucket read again before every object
    await sink.put({ key: 'digests/000000000001.digest', body: Buffer.from('one'), contentType: 'text/plain' });
    await testS3Client().send(
      new PutObjectLockConfigurationCommand({
        Bucket: bucket,
        ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } } },
      }),
    );
    const refused = sink.put({ key: 'digests/000000000002.digest', body: Buffer.from('two'), contentType: 'text/plain' });
    await expect(refused).rejects.toMatchObject({ name: 'BucketLockChanged', message: expect.stringMatching(/default retention is GOVERNANCE/) });
    expect(permanentReason(await refused.catch((e: unknown) => e))).toMatch(/^BucketLockChanged: .*restore a COMPLIANCE default/);
    const versions = await testS3Client().send(new ListObjectVersionsCommand({ Bucket: bucket }));
    expect(versions.Versions!.map((v) => v.Key)).toEqual(['digests/000000000001.digest']);
  });

  it('a storage endpoint that accepts connections and never answers: requests time out and are retried, nothing is lost', async () => {
    const db = await freshDatabase('s3hang');
    const bucket = await makeBucket();
    const proxy = new Outage(new URL(requireEnv('TEST_S3_ENDPOINT')));
    const endpoint = await proxy.listen();
    const env = { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env(endpoint), AUDIT_STORAGE_TIMEOUT: '1s' };
    const child = startCli(shipArgs({ archive: `s3://${bucket}`, keys, extra: ['--slot', `s_${db.name}`] }), env);
    const done = waitFor(child);
    await writeEvents(db.url, 1, 100);
    const reader = readerFor(bucket, '');
    const archived = async () =>
      (await readArchive(reader, keys.keys).catch(() => ({ records: [] as { op: string }[] }))).records.filter((r) => r.op === 'insert').length;
    await expect.poll(archived, { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(100);
    proxy.hang();
    await writeEvents(db.url, 1000, 300);
    await sleep(4000); // several timeouts of 1 s, each retried
    proxy.unhang();
    const all = (await ids(db.url)).length;
    // Reading the whole archive back is the slow part under load: look once a second, for up to two minutes.
    for (const until = Date.now() + 120_000; Date.now() < until && (await archived()) < all;) await sleep(1000);
    child.kill('SIGTERM');
    const stopped = await done;
    expect(stopped.code, stopped.stderr).toBe(0);
    const { report, records } = await readArchive(reader, keys.keys);
    expect(report.findings).toEqual([]);
    await expectExactlyOnce(records, db.url, { inIdOrder: true });
    // The hang was noticed and said, not waited out in silence.
    expect(stopped.stderr).toMatch(/"level":(40|50).*(timed out|timeout|Timeout)/i);
  });

  it('holds the slot while S3 is unreachable and catches up by itself when it is back', async () => {
    const db = await freshDatabase('s3outage');
    const bucket = await makeBucket();
    const outage = new Outage(new URL(requireEnv('TEST_S3_ENDPOINT')));
    const endpoint = await outage.listen();
    const env = { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env(endpoint) };
    const args = shipArgs({ archive: `s3://${bucket}`, keys, extra: ['--slot', `s_${db.name}`] });
    expect((await runCli([...args, '--drain'], env)).code).toBe(0);
    const child = startCli(args, env);
    const done = waitFor(child);
    await sleep(2000);
    await outage.cut();
    await writeEvents(db.url, 1, 1500);
    const committedBy = await withClient(db.url, async (c) => (await c.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l);
    const confirmedLe = async (bound: string) =>
      withClient(
        db.url,
        async (c) =>
          (await c.query(`SELECT confirmed_flush_lsn <= $1::pg_lsn AS le FROM pg_replication_slots WHERE slot_name = $2`, [bound, `s_${db.name}`])).rows[0].le,
      );
    const confirmed = async () =>
      withClient(
        db.url,
        async (c) =>
          (await c.query(`SELECT confirmed_flush_lsn::text AS l FROM pg_replication_slots WHERE slot_name = $1`, [`s_${db.name}`])).rows[0].l as string,
      );
    await sleep(1000); // the shipper has the rows now, and cannot store them
    const held = await confirmed();
    // Below the end of the commit that holds the rows: a restart would receive them again.
    expect(await confirmedLe(committedBy)).toBe(true);
    expect(held).not.toBe(committedBy);
    for (let i = 0; i < 8; i++) {
      await sleep(1000);
      expect(await confirmed()).toBe(held); // not one byte further while anything is unstored
    }
    await outage.restore();
    let caughtUp = false;
    for (let i = 0; i < 150 && !caughtUp; i++) {
      await sleep(500);
      caughtUp = !(await confirmedLe(committedBy));
    }
    child.kill('SIGTERM');
    const result = await done;
    expect(caughtUp, result.stderr.slice(-2000)).toBe(true);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/failed; retrying/);
    await outage.cut();
    const { report, records } = await readArchive(readerFor(bucket, ''), keys.keys);
    expect(report.findings).toEqual([]);
    await expectExactlyOnce(records, db.url, { inIdOrder: true });
  });
});
