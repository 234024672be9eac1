import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';
import { makeKeys, readArchive, type TestKeys } from '../helpers/archive.js';
import { makeBucket, s3Env, testS3Client } from '../helpers/s3.js';
import { FakeFirehose } from '../helpers/fake-firehose.js';
import { loadSigningKey } from '../../src/seal/keys.js';
import { openArchive } from '../../src/sink/open.js';
import { s3ArchiveReader } from '../../src/sink/s3/s3-archive.js';
import { ship } from '../../src/ship/shipper.js';
import { createMetrics } from '../../src/ship/metrics.js';
import { createLogger } from '../../src/log.js';
import { MAX_CALL_BYTES, MAX_CALL_RECORDS, MAX_RECORD_BYTES } from '../../src/sink/firehose/records.js';
import { expectExactlyOnce } from '../helpers/exactly-once.js';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';

/*
 * Amazon Data Firehose cannot run here: its API is an in-process fake (test/helpers/fake-firehose.ts,
 * aws-sdk-client-mock) that throttles, fails entries inside successful calls, duplicates and
 * reorders, and delivers into the real radosgw bucket. Digests go to radosgw directly, as in production.
 */

let keys: TestKeys;
let fake: FakeFirehose | null = null;
afterEach(() => {
  fake?.restore();
  fake = null;
});

beforeAll(async () => {
  keys = await makeKeys();
  Object.assign(process.env, s3Env());
});

const openStream = (stream: string) =>
  openArchive(`firehose://${stream}`, {
    forcePathStyle: true,
    sse: 'none',
    retention: { days: 1 },
  });

async function shipOnce(db: { name: string }, stream: string, slot: string, limits = { maxRecords: 150, maxBytes: 8 << 20, maxAgeMs: 200 }) {
  return ship({
    databaseUrl: urlFor(db.name, 'ship_login'),
    archive: await openStream(stream),
    key: await loadSigningKey(keys.signingKey),
    verifyKeys: [],
    slot,
    limits,
    maxInflightBytes: 64 << 20,
    heartbeatMs: 3_600_000,
    drain: true,
    graceMs: 10_000,
    log: createLogger('silent'),
    metrics: createMetrics(),
    signal: new AbortController().signal,
    statementMaxLength: 2000,
  });
}

describe('ship through Amazon Data Firehose (API faked in-process, delivery into real radosgw)', () => {
  it('gets every event into the bucket exactly once as the archive sees it, despite throttling, partial failures, duplicates and reordering', async () => {
    const db = await freshDatabase('firehose');
    const bucket = await makeBucket({ days: 2 });
    fake = new FakeFirehose('audit-trail', bucket, 'clinic/firehose/');
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series(1, 2000) g`));
    const slot = `s_${db.name}`;
    const first = await shipOnce(db, 'audit-trail', slot);
    expect(first.records).toBe(2003); // 2000 rows and the PROTECT of init --example, which predate the slot, backfilled; the marker that closes the backfill; the shipper's attestation at start
    await withClient(db.url, (c) => c.query(`UPDATE customers SET full_name = full_name || '!' WHERE id % 3 = 0`));
    const second = await shipOnce(db, 'audit-trail', slot); // resumes from the archive: digests in S3, data via the stream
    expect(second.records).toBeGreaterThan(600);
    await fake.flush();

    // The fake really did what Firehose does, and the shipper stayed within Firehose's limits.
    expect(fake.throttled).toBeGreaterThan(0);
    expect(fake.refusedEntries).toBeGreaterThan(0);
    expect(fake.duplicated).toBeGreaterThan(0);
    expect(Math.max(...fake.calls.map((c) => c.records))).toBeLessThanOrEqual(MAX_CALL_RECORDS);
    expect(Math.max(...fake.calls.map((c) => c.bytes))).toBeLessThanOrEqual(MAX_CALL_BYTES);
    expect(Math.max(...fake.recordSizes)).toBeLessThanOrEqual(MAX_RECORD_BYTES);

    // Read back through the bucket alone: every audit row once, in order, chain and signatures intact.
    const { report, records } = await readArchive(s3ArchiveReader(testS3Client(), bucket, 'clinic/').reader, keys.keys);
    expect(report.findings).toEqual([]);
    await expectExactlyOnce(records, db.url, { inIdOrder: true });
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));

    // verify and query, as an operator runs them, agree.
    const env = s3Env();
    const v = await runCli(
      ['verify', '--archive', `s3://${bucket}/clinic`, '--verify-key', keys.verifyKey, '--min-retention', '1d', '--allow-short-retention'],
      env,
    );
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const q = await runCli(['query', '--archive', `s3://${bucket}/clinic`, '--verify-key', keys.verifyKey, '--row-id', '9', '--format', 'json'], env);
    expect(q.code, q.stderr).toBe(0);
    expect(
      q.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { action: string }).action),
    ).toEqual(['INSERT', 'UPDATE']);
    // A time range over a stream archive: found by bisecting digest seal times, ended by the walk.
    const ranged = await runCli(
      [
        'query',
        '--archive',
        `s3://${bucket}/clinic`,
        '--verify-key',
        keys.verifyKey,
        '--row-id',
        '9',
        '--format',
        'json',
        '--from',
        new Date(Date.now() - 3600_000).toISOString(),
        '--to',
        new Date(Date.now() + 60_000).toISOString(),
      ],
      env,
    );
    expect(ranged.code, ranged.stderr).toBe(0);
    expect(ranged.stdout).toBe(q.stdout);
    const before = await runCli(
      ['query', '--archive', `s3://${bucket}/clinic`, '--verify-key', keys.verifyKey, '--format', 'json', '--from', '2020-01-01', '--to', '2020-01-02'],
      env,
    );
    expect(before.code, before.stderr).toBe(0);
    expect(before.stdout).toBe('');
    expect(before.stderr).toMatch(/; 1 digest checked link by link, 0 files read/); // the walk stops at the first digest sealed after the range
    expect(before.stderr).toMatch(/searched: files sealed 2020-01-01 to 2020-01-03;/); // no date partitions in a stream archive
    // An evidence package of streamed files checks out offline like any other.
    const evidence = path.join(await mkdtemp(path.join(tmpdir(), 'pgas-ev-')), 'row9');
    const withEvidence = await runCli(
      ['query', '--archive', `s3://${bucket}/clinic`, '--verify-key', keys.verifyKey, '--row-id', '9', '--evidence', evidence],
      env,
    );
    expect(withEvidence.code, withEvidence.stderr).toBe(0);
    const checked = await runCli(['verify-evidence', evidence, '--verify-key', keys.verifyKey]);
    expect(checked.code, checked.stdout).toBe(0);
    expect(checked.stdout).toMatch(/checked: {2}2 records in [12] files/);

    // retention extend locks longer what the stream delivered (a streamed file is no object of its own).
    const until = new Date(Date.now() + 3 * 86_400_000);
    const extended = await runCli(
      ['retention', 'extend', '--archive', `s3://${bucket}/clinic`, '--verify-key', keys.verifyKey, '--until', until.toISOString()],
      env,
    );
    expect(extended.code, extended.stderr).toBe(0);
    const { GetObjectRetentionCommand } = await import('@aws-sdk/client-s3');
    const delivered = (await testS3Client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'clinic/firehose/' }))).Contents!.map((o) => o.Key!);
    expect(delivered.length).toBeGreaterThan(0);
    for (const Key of delivered) {
      const r = await testS3Client().send(new GetObjectRetentionCommand({ Bucket: bucket, Key }));
      expect(r.Retention?.RetainUntilDate?.getTime(), Key).toBe(until.getTime());
    }
    expect(extended.stdout).toMatch(new RegExp(`^\\d+ objects in range: \\d+ now retained until ${until.toISOString().replace(/[.]/g, '\\.')}`));

    // A delivered line that differs from another delivery of the same record is a finding, not a repeat.
    const { Contents } = await testS3Client().send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'clinic/firehose/' }));
    const { GetObjectCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
    // The first delivered line with a row id (a heartbeat or an attestation has none, and forging nothing
    // in it would only deliver the same record twice, which is a repeat, not a finding).
    let someKey = '';
    let line = '';
    for (const o of Contents!) {
      const text = Buffer.from(await (await testS3Client().send(new GetObjectCommand({ Bucket: bucket, Key: o.Key! }))).Body!.transformToByteArray()).toString(
        'utf8',
      );
      const withRow = text.split('\n').find((l) => /"row_id":"\d+"/.test(l));
      if (withRow !== undefined) {
        someKey = o.Key!;
        line = withRow;
        break;
      }
    }
    expect(line, 'a delivered record with a row id').not.toBe('');
    const forged = Buffer.from(`${line.replace(/"row_id":"(\d+)"/, '"row_id":"99999"')}\n`);
    expect(forged.toString('utf8')).not.toBe(`${line}\n`);
    const { createHash } = await import('node:crypto');
    await testS3Client().send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${someKey.slice(0, someKey.lastIndexOf('/'))}/forged`,
        Body: forged,
        ContentMD5: createHash('md5').update(forged).digest('base64'),
      }),
    );
    const seq = (JSON.parse(line) as { seq: number }).seq;
    const bad = await runCli(
      ['verify', '--archive', `s3://${bucket}/clinic`, '--verify-key', keys.verifyKey, '--min-retention', '1d', '--allow-short-retention', '--json'],
      env,
    );
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    const findings = (JSON.parse(bad.stdout) as { findings: { code: string; where: string; message: string }[] }).findings;
    expect(findings.length).toBeGreaterThan(0);
    expect(findings.every((f) => f.where.startsWith('firehose://audit-trail/'))).toBe(true);
    expect(findings.map((f) => f.message).join(' ')).toMatch(new RegExp(`record ${seq}|${seq} expected|content hash`));
  });

  it('acknowledges nothing while the stream refuses records, and catches up by itself', async () => {
    const db = await freshDatabase('firehose_ack');
    const bucket = await makeBucket({ days: 2 });
    fake = new FakeFirehose('audit-ack', bucket, 'firehose/', 11);
    const slot = `s_${db.name}`;
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) VALUES (1, 'a')`));
    await shipOnce(db, 'audit-ack', slot); // slot exists, first event shipped
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series(2, 300) g`));
    const commitLsn = await withClient(db.url, async (c) => (await c.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]!.l);
    fake.refuseAll = true;
    const running = shipOnce(db, 'audit-ack', slot);
    await expect.poll(() => fake!.refusedEntries, { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(5);
    const confirmedBelow = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ below: boolean }>('SELECT confirmed_flush_lsn < $1::pg_lsn AS below FROM pg_replication_slots WHERE slot_name = $2', [
            commitLsn,
            slot,
          ])
        ).rows[0]!.below,
    );
    expect(confirmedBelow).toBe(true);
    fake.refuseAll = false;
    const result = await running;
    expect(result.records).toBe(300); // 299 rows and the attestation every start appends
    const confirmedPast = await withClient(
      db.url,
      async (c) =>
        (await c.query<{ past: boolean }>('SELECT confirmed_flush_lsn >= $1::pg_lsn AS past FROM pg_replication_slots WHERE slot_name = $2', [commitLsn, slot]))
          .rows[0]!.past,
    );
    expect(confirmedPast).toBe(true);
    await fake.flush();
    const { report, records } = await readArchive(s3ArchiveReader(testS3Client(), bucket, '').reader, keys.keys);
    expect(report.findings).toEqual([]);
    expect(records.filter((r) => r.op === 'insert').length).toBe(303); // and the PROTECT of init --example, and an attestation at each of the two starts
  });

  it('refuses a stream that would not keep the records as sent, or a bucket without COMPLIANCE default retention', async () => {
    const locked = await makeBucket({ days: 2 });
    fake = new FakeFirehose('audit-check', locked, 'x/firehose/');
    fake.describeAs((d) => {
      d.Destinations![0]!.ExtendedS3DestinationDescription!.Prefix = 'x/dt=!{timestamp:yyyy-MM-dd}/';
    });
    await expect(openStream('audit-check')).rejects.toThrow(
      /delivers under the S3 prefix "x\/dt=!\{timestamp:yyyy-MM-dd\}\/"; set it to "<archive prefix>\/firehose\/"/,
    );
    fake.restore();

    fake = new FakeFirehose('audit-check', locked, 'x/firehose/');
    fake.describeAs((d) => {
      d.Destinations![0]!.ExtendedS3DestinationDescription!.ProcessingConfiguration = { Enabled: true };
    });
    await expect(openStream('audit-check')).rejects.toThrow(/transforms records/);
    fake.restore();

    const governance = await makeBucket({ mode: 'GOVERNANCE', days: 2 });
    fake = new FakeFirehose('audit-check', governance, 'firehose/');
    await expect(openStream('audit-check')).rejects.toThrow(/default retention is GOVERNANCE, which privileged users can remove; set COMPLIANCE/);
    fake.restore();

    const unlocked = await makeBucket({ lock: false });
    fake = new FakeFirehose('audit-check', unlocked, 'firehose/');
    await expect(openStream('audit-check')).rejects.toThrow(/does not have (versioning|Object Lock) enabled/);

    // What Firehose wrote is found by verify even when someone adds a line to it.
    const objects = await testS3Client().send(new ListObjectsV2Command({ Bucket: locked }));
    expect(objects.KeyCount ?? 0).toBe(0);
  });
});
