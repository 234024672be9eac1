import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { requireEnv } from '../helpers/env.js';
import { fakeRds, type FakeRds } from '../helpers/fake-rds.js';

/**
 * `ingest --log-source rds`: pgaudit's lines read through the RDS API's log-file actions. The API
 * is a fake (test/helpers/fake-rds.ts: no RDS instance is reachable here) serving the real
 * PostgreSQL's csvlog as RDS serves an instance's, paged, throttled and cut at 1 MB as documented;
 * the AWS SDK talks to it over HTTP (AWS_ENDPOINT_URL_RDS), retries included.
 */
let db: { name: string; url: string };
let rds: FakeRds;

beforeAll(async () => {
  db = await freshDatabase('rdslogs');
  rds = await fakeRds(requireEnv('TEST_PG_LOG_DIR'), 'clinic-db');
});
afterAll(() => rds?.close());

const env = () => ({
  DATABASE_URL: urlFor(db.name, 'ingest_login'),
  AUDIT_CONTEXT_WAIT: '2s',
  AWS_ENDPOINT_URL_RDS: rds.url,
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
});
const tagged = () =>
  withClient(
    db.url,
    async (c) =>
      (
        await c.query<{ tag: string; n: number }>(
          `SELECT substring(statement FROM 'case:([a-z0-9-]+)') AS tag, count(*)::int AS n FROM audit.audit_log
          WHERE source = 'pgaudit' AND statement LIKE '%case:%' AND schema_name <> 'audit' /* not this query's own reads */ GROUP BY 1 ORDER BY 1`,
        )
      ).rows,
  );

describe('ingest --log-source rds', () => {
  it('ingests every read exactly once through the paged, throttled API, asking again with fewer lines where a portion reached 1 MB', async () => {
    // Three reads whose statements are 400 KB each: one portion of their lines would pass 1 MB.
    const pad = 'x'.repeat(400_000);
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '5'`);
      await c.query('SELECT full_name FROM customers WHERE id = 5 /* case:small */');
      for (const n of [1, 2, 3]) await c.query(`SELECT full_name FROM customers WHERE id = 5 /* case:big-${n} ${pad} */`);
    });
    const want = [
      { tag: 'big-1', n: 1 },
      { tag: 'big-2', n: 1 },
      { tag: 'big-3', n: 1 },
      { tag: 'small', n: 1 },
    ];
    for (let i = 0; i < 40 && JSON.stringify(await tagged()) !== JSON.stringify(want); i++) {
      const r = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db'], env());
      expect(r.code, r.stderr).toBe(0);
      await sleep(150);
    }
    expect(await tagged()).toEqual(want);
    // The listing came in pages, requests were throttled and retried, and a portion that reached
    // 1 MB was asked again, from the same marker, with half the lines.
    expect(rds.throttled).toBeGreaterThan(0);
    const cut = rds.portions.filter((p) => p.bytes === 1024 * 1024);
    expect(cut.length).toBeGreaterThan(0);
    for (const c of cut) expect(rds.portions.some((p) => p.file === c.file && p.marker === c.marker && p.lines < c.lines && p.bytes < 1024 * 1024)).toBe(true);

    // Once more: nothing read twice (the positions saved are the API's bytes, one portion after another).
    const again = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db'], env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/, 0 already present\)/);
    expect(await tagged()).toEqual(want);
  });

  it('says what is wrong in one line: a missing instance name, jsonlog, an instance the API does not know', async () => {
    const noId = await runCli(['ingest', '--log-source', 'rds'], env());
    expect(noId.code).toBe(2);
    expect(noId.stderr).toMatch(/--log-source rds needs --rds-instance \(AUDIT_RDS_INSTANCE\)/);
    const json = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'clinic-db', '--log-format', 'jsonlog'], env());
    expect(json.stderr).toMatch(/--log-source rds reads csvlog \(RDS writes no jsonlog\)/);
    const unknown = await runCli(['ingest', '--log-source', 'rds', '--rds-instance', 'no-such-db'], env());
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--log-source rds: listing the log files of DB instance no-such-db failed: DBInstanceNotFound/);
  });
});
