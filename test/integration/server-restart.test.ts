import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { startCli, waitFor } from '../helpers/cli.js';
import { makeKeys, readArchive, shipArgs, type TestKeys } from '../helpers/archive.js';
import { makeBucket, Outage, s3Env } from '../helpers/s3.js';
import { requireEnv } from '../helpers/env.js';
import { s3ArchiveReader, s3Client } from '../../src/sink/s3/s3-archive.js';
import { expectExactlyOnce } from '../helpers/exactly-once.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

/**
 * What production does to the database beside the shipper: restarts and shutdowns. These stop the
 * test cluster itself, so they run after every other test, one file at a time (vitest.config.ts),
 * and only where the cluster is a local process this suite controls.
 */
const run = promisify(execFile);
const pgDir = process.env.TEST_PG_DIR;
const ctl = (...args: string[]) => run('bash', [path.join(PACKAGE_ROOT, 'scripts/test-services/pg.sh'), 'ctl', pgDir!, ...args]);

let keys: TestKeys;
beforeAll(async () => {
  keys = await makeKeys();
});

async function httpGet(port: number, p: string): Promise<{ status: number; body: string }> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${p}`);
    return { status: r.status, body: await r.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

describe.skipIf(!pgDir)('the database restarts and shuts down beside a running shipper', () => {
  it('a fast shutdown is not held up while storage is down and records are unstored; after the restart nothing is lost and /readyz recovers', async () => {
    const db = await freshDatabase('restart');
    const bucket = await makeBucket();
    const proxy = new Outage(new URL(requireEnv('TEST_S3_ENDPOINT')));
    const endpoint = await proxy.listen();
    const port = 20000 + Math.floor(Math.random() * 1000);
    const env = { DATABASE_URL: urlFor(db.name, 'ship_login'), ...s3Env(endpoint), AUDIT_STORAGE_TIMEOUT: '1s' };
    const child = startCli(
      shipArgs({
        archive: `s3://${bucket}`,
        keys,
        extra: [
          '--slot',
          `s_${db.name}`,
          '--http-port',
          String(port),
          // Little room for unstored records: while storage is down the shipper stops reading the stream,
          // and the walsender, with data it cannot send, cannot finish a shutdown.
          '--max-inflight-bytes',
          '64KiB',
          '--batch-max-bytes',
          '32KiB',
        ],
      }),
      env,
    );
    const done = waitFor(child);
    const insert = (from: number, n = 100) =>
      withClient(db.url, (c) =>
        c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series($1::int, $1::int + $2::int - 1) g`, [from, n]),
      );
    const reader = s3ArchiveReader((Object.assign(process.env, s3Env()), s3Client(true)), bucket, '').reader;
    const archived = async () =>
      (await readArchive(reader, keys.keys).catch(() => ({ records: [] as { op: string; id?: unknown }[] }))).records.filter((r) => r.op === 'insert').length;
    await expect.poll(async () => (await httpGet(port, '/readyz')).status, { timeout: 10_000, interval: 100 }).toBe(200);
    await insert(1);
    await expect.poll(archived, { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(100);

    // Storage goes away; the shipper now holds records it cannot store, so it cannot confirm them.
    await proxy.cut();
    await insert(1000, 5000);
    // /readyz says so, with the reason (not only after ten minutes of nothing stored).
    let failing = await httpGet(port, '/readyz');
    for (let i = 0; i < 100 && failing.status === 200; i++) {
      await sleep(100);
      failing = await httpGet(port, '/readyz');
    }
    expect(failing.status).toBe(503);
    expect(failing.body).toMatch(/^storage: storing .* failing: /m);
    expect((await httpGet(port, '/metrics')).body).toMatch(/audit_shipper_component_failing\{component="storage"\} 1/);
    // The walsender waits for that confirmation before the server may stop; the shipper lets go of
    // the replication connection when its other connection hears the shutdown. pg_ctl -t: stopped within 30 s, or failed.
    await ctl('stop', '-m', 'fast', '-w', '-t', '30').catch(async (err: Error) => {
      // Say why, for the next reader: what the shipper logged, and what the server did.
      child.kill('SIGKILL');
      const { stderr } = await done;
      const logDir = process.env.TEST_PG_LOG_DIR;
      const newest = logDir
        ? (await readdir(logDir))
            .filter((f) => f.endsWith('.csv'))
            .sort()
            .pop()
        : undefined;
      const server = newest
        ? (await readFile(path.join(logDir!, newest), 'utf8'))
            .split('\n')
            .filter((l) => !l.includes('AUDIT:'))
            .slice(-40)
        : [];
      throw new Error(`${err.message}\nshipper:\n${stderr.split('\n').slice(-40).join('\n')}\nserver:\n${server.join('\n')}`);
    });
    await ctl('start', '-w', '-t', '60');
    await proxy.restore();
    await insert(10_000);
    const total = await withClient(db.url, async (c) => (await c.query('SELECT count(*)::int AS n FROM audit.audit_log')).rows[0].n as number);
    await expect.poll(archived, { timeout: 60_000, interval: 200 }).toBeGreaterThanOrEqual(total);
    let ready = await httpGet(port, '/readyz');
    for (let i = 0; i < 100 && ready.status !== 200; i++) {
      await sleep(200);
      ready = await httpGet(port, '/readyz');
    }
    expect(ready).toEqual({ status: 200, body: 'ready\n' });
    child.kill('SIGTERM');
    const stopped = await done;
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stderr).toMatch(/lost the database connection; reconnecting/);
    expect(stopped.stderr).toContain('"reason":"the server is shutting down","msg":"dropping the replication connection"');

    const { report, records } = await readArchive(reader, keys.keys);
    expect(report.findings).toEqual([]);
    await expectExactlyOnce(records, db.url, { inIdOrder: false });
    // The head in the database caught up with the archive after the restart.
    const head = await withClient(
      db.url,
      async (c) => (await c.query('SELECT file_seq::int AS f FROM audit.shipper_head WHERE slot_name = $1', [`s_${db.name}`])).rows[0],
    );
    expect(head.f).toBe(report.head!.file_seq);
  });
});
