import { rename, writeFile, rm, readdir, unlink, chmod } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { spawn } from 'node:child_process';
import { CLI, runCli, startCli, waitFor } from '../helpers/cli.js';
import { expectExactlyOnce } from '../helpers/exactly-once.js';
import { makeKeys, readArchive, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';
import { parseLsn } from '../../src/source/lsn.js';

let keys: TestKeys;
beforeAll(async () => {
  keys = await makeKeys();
});

const shipperUrl = (db: string) => urlFor(db, 'ship_login');
/** Slots are cluster-wide: one per test database. */
const slotOf = (db: { name: string }) => `s_${db.name}`;
const args = (db: { name: string }, archive: string, extra: string[] = []) =>
  shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', slotOf(db), ...extra] });

async function slotPosition(url: string): Promise<{ confirmed: string; lagBytes: number } | null> {
  return withClient(
    url,
    async (c) =>
      (
        await c.query(
          `SELECT confirmed_flush_lsn::text AS confirmed, (pg_current_wal_lsn() - confirmed_flush_lsn)::float8 AS "lagBytes"
       FROM pg_replication_slots WHERE database = current_database()`,
        )
      ).rows[0] ?? null,
  );
}

async function drain(db: { name: string }, archive: string, extra: string[] = [], alerts = false) {
  const r = await runCli(args(db, archive, ['--drain', ...extra]), { DATABASE_URL: shipperUrl(db.name) });
  if (!alerts) expect(r.stderr, r.stderr).not.toMatch(/"level":(50|60)/);
  expect(r.code, r.stderr).toBe(0);
  return r;
}

/** Insert `n` audit events (through the customers trigger) in transactions of `perTx` rows. */
async function writeEvents(url: string, from: number, n: number, perTx = 1000): Promise<void> {
  await withClient(url, async (c) => {
    for (let i = from; i < from + n; i += perTx) {
      await c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series($1::int, $2::int) g`, [
        i,
        Math.min(i + perTx, from + n) - 1,
      ]);
    }
  });
}

/** GET a path of the sidecar's HTTP server, waiting up to 5 s for it to answer. */
function httpGet(port: number) {
  return async (p: string): Promise<{ status: number; body: string }> => {
    for (let i = 0; i < 50; i++) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(5000) });
        return { status: r.status, body: await r.text() };
      } catch {
        await sleep(100);
      }
    }
    throw new Error(`no answer on ${p}`);
  };
}

describe('ship to a file archive', () => {
  it('ships 100k events exactly once in commit order; chain and signatures verify', async () => {
    const db = await freshDatabase('ship100k');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 500); // before the slot exists: archived as the initial backfill
    await drain(db, archive);
    await writeEvents(db.url, 1000, 100_000, 997);
    await withClient(db.url, async (c) => {
      // rolled back: must not appear
      await c.query('BEGIN');
      await c.query(`INSERT INTO customers (id, full_name) VALUES (-1, 'rolled back')`);
      await c.query('ROLLBACK');
    });
    const out = await drain(db, archive, ['--batch-max-records', '7000']);
    expect(out.stdout).toMatch(/stored \d+ files with 100001 records/); // and the capture configuration attested at start

    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(report.head!.key_id).toBe([...keys.keys.keys()][0]);
    const events = await expectExactlyOnce(records, db.url, { inIdOrder: true }); // one writer: id order is commit order
    // Backfilled: the PROTECT event of init --example and the 500 rows written before the slot.
    expect(events.slice(0, 501).every((r) => r.backfill === 'initial')).toBe(true);
    expect(events.slice(501).every((r) => r.backfill === undefined)).toBe(true);
    expect(records.filter((r) => r.op === 'marker').map((r) => r.reason)).toEqual(['backfill-complete']);
    expect(report.files).toBeGreaterThan(14);
    // Files sit in the partition of their commit date, the day the events happened: query's
    // time-range pruning and Athena's partitions rely on it.
    const partitions = (await readdir(path.join(archive, 'data'))).map((d) => d.replace(/^dt=/, ''));
    const days = [...new Set(events.map((e) => String(e.occurred_at).slice(0, 10)))];
    expect(partitions.length).toBeGreaterThan(0);
    for (const p of partitions)
      expect(
        days.some((d) => Math.abs(Date.parse(p) - Date.parse(d)) <= 86_400_000),
        p,
      ).toBe(true);
    // Values are the server's exact text (microseconds kept), not re-rendered by JavaScript.
    expect(events[600]!.occurred_at).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{1,6}\+00$/);
    // The database knows the head the archive ends with.
    const head = await withClient(db.url, async (c) => (await c.query('SELECT file_seq::int FROM audit.shipper_head')).rows[0]);
    expect(head.file_seq).toBe(report.head!.file_seq);
  });

  it('a slot created while others write: the first transaction it streams, committing at its consistent point, is archived whole', async () => {
    // The consistent point is where the record that made the new slot consistent ends, so the next WAL
    // record may be a commit: that transaction's commit LSN is then the point itself (5 of 10 slot
    // creations under two concurrent writers, measured). The backfill stood at the point too and took
    // that transaction's first positions: its events were skipped as already stored, silently.
    // Made here step by step, as PostgreSQL builds a slot's snapshot (snapbuild.c): A runs when the
    // slot is created, so the server waits for A; C starts meanwhile, so the server then waits for C;
    // D starts meanwhile and still runs when the slot becomes consistent; D commits right after that.
    // Another session's WAL can slip in between (test files run in parallel): then it is made again.
    const db = await freshDatabase('shipcreate');
    const waitedOn = (xid: string) =>
      withClient(
        db.url,
        async (c) => (await c.query(`SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' AND transactionid = $1::xid AND NOT granted`, [xid])).rowCount,
      );
    const seenWaitingOn = async (xid: string): Promise<boolean> => {
      for (const until = Date.now() + 15_000; Date.now() < until; await sleep(20)) if ((await waitedOn(xid)) === 1) return true;
      return false;
    };
    // A transaction left open would hold every slot creation in the cluster (other test files' too)
    // until the server stops: whatever fails, the ones still open are rolled back (finally, below).
    const opened = new Set<pg.Client>();
    const open = async (id: number): Promise<{ c: pg.Client; xid: string }> => {
      const c = new pg.Client(db.url);
      await c.connect();
      opened.add(c);
      await c.query('BEGIN');
      await c.query(`INSERT INTO customers (id, full_name) VALUES ($1, 'p'), ($1 + 1, 'p')`, [id]);
      return { c, xid: (await c.query<{ x: string }>('SELECT txid_current()::text AS x')).rows[0]!.x };
    };
    const commit = async (t: { c: pg.Client }) => {
      await t.c.query('COMMIT');
      opened.delete(t.c);
      await t.c.end();
    };
    let made = false;
    for (let attempt = 0; attempt < 4 && !made; attempt++) {
      let shipper: ReturnType<typeof startCli> | null = null;
      try {
        const archive = await tempArchiveDir();
        const slot = `${slotOf(db)}_${attempt}`;
        const a = await open(1000 + attempt * 10);
        const child = startCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', slot, '--drain'] }), { DATABASE_URL: shipperUrl(db.name) });
        shipper = child;
        const done = waitFor(child);
        // The server may wait on another test file's transaction first: an attempt whose wait is not
        // seen in time is given up (its transactions rolled back) and made again.
        if (!(await seenWaitingOn(a.xid))) continue;
        const c = await open(1002 + attempt * 10);
        await commit(a);
        if (!(await seenWaitingOn(c.xid))) continue;
        const d = await open(1004 + attempt * 10);
        await commit(c);
        // The server writes the record that makes the slot consistent as soon as C ends (it waits on C's
        // lock); the shipper writes its first row some 40 ms after (measured). D commits in between.
        await sleep(5);
        await commit(d);
        const r = await done;
        expect(r.code, r.stderr).toBe(0);
        const { report, records } = await readArchive(archive, keys.keys);
        expect(report.findings).toEqual([]);
        await expectExactlyOnce(records, db.url, { inIdOrder: false });
        const marker = records.findIndex((x) => x.op === 'marker');
        const first = records[marker + 1]!;
        made = parseLsn(first.lsn) === parseLsn(records[marker]!.lsn) + 1n; // D, at the consistent point
        if (made) expect(records.slice(marker + 1, marker + 3).map((x) => x.row_id)).toEqual([String(1004 + attempt * 10), String(1005 + attempt * 10)]);
      } finally {
        for (const c of opened)
          await c.query('ROLLBACK').then(
            () => c.end(),
            () => c.end().catch(() => undefined),
          );
        opened.clear();
        if (shipper && shipper.exitCode === null && shipper.signalCode === null) shipper.kill('SIGTERM');
      }
    }
    expect(made, 'no attempt had its transaction commit right at the consistent point: the case was not made').toBe(true);
  });

  it('--drain seals the open file once the stream has passed the start position, not at --batch-max-age', async () => {
    const db = await freshDatabase('shipdrain');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    await writeEvents(db.url, 1, 10);
    // With an age limit of an hour, only the drain's own sealing can end this run.
    const out = await drain(db, archive, ['--batch-max-age', '1h']);
    expect(out.stdout).toMatch(/stored 1 files with 11 records/); // 10 and the attestation at start
  });

  it('survives kill -9 at random moments: nothing lost, nothing duplicated, chain intact', async () => {
    const db = await freshDatabase('shipkill');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    let next = 1;
    let kills = 0;
    for (let round = 0; round < 8; round++) {
      const child = startCli(args(db, archive, ['--batch-max-records', '300', '--batch-max-age', '50ms']), { DATABASE_URL: shipperUrl(db.name) });
      const done = waitFor(child);
      const writing = writeEvents(db.url, next, 3000, 100);
      next += 3000;
      await sleep(200 + Math.floor(Math.random() * 900));
      child.kill('SIGKILL');
      kills++;
      await done;
      await writing;
    }
    expect(kills).toBe(8);
    await drain(db, archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    // The verification job passes the crashed-and-restarted archive, leftovers of interrupted writes included.
    const verified = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
    expect(verified.code, verified.stdout).toBe(0);
    await expectExactlyOnce(records, db.url, { inIdOrder: true });
  });

  it('reconnects when the server drops the replication connection mid-stream: nothing lost, nothing duplicated', async () => {
    // The process lives on, holding received but unstored records, while its stream starts again
    // from wherever the replication library asks the server to resume.
    const db = await freshDatabase('shipdrop');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    const child = startCli(args(db, archive, ['--batch-max-records', '500', '--batch-max-age', '2s']), { DATABASE_URL: shipperUrl(db.name) });
    const done = waitFor(child);
    let writtenTo = 0;
    const writing = (async () => {
      for (let from = 1; from <= 60_000; from += 2_000) {
        await writeEvents(db.url, from, 2_000, 100);
        writtenTo = from + 1_999;
      }
    })();
    const dropsAt: number[] = [];
    while (dropsAt.length < 4) {
      // Wait for the stream to be back, let it read a little, then drop its connection.
      const pid = await withClient(db.url, async (c) => {
        for (let i = 0; i < 200; i++) {
          const r = await c.query<{ pid: number | null }>('SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1', [slotOf(db)]);
          if (r.rows[0]?.pid) return r.rows[0].pid;
          await sleep(50);
        }
        return null;
      });
      expect(pid, 'the shipper reconnects').not.toBeNull();
      await sleep(100 + Math.floor(Math.random() * 400));
      await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend($1)', [pid]));
      dropsAt.push(writtenTo);
    }
    await writing;
    expect(
      dropsAt.some((n) => n > 0 && n < 60_000),
      `drops while writing (at ${dropsAt.join(', ')})`,
    ).toBe(true);
    child.kill('SIGTERM');
    const stopped = await done;
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stderr).toMatch(/replication stream ended; reconnecting/);
    await drain(db, archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    // The shipper's attestations take ids while the writer's transactions are still open: not id order.
    await expectExactlyOnce(records, db.url, { inIdOrder: false });
    const written = records.filter((r) => r.op === 'insert' && r.source === 'trigger').map((r) => Number(r.id));
    expect(written).toEqual([...written].sort((a, b) => a - b));
  });

  it("refuses another database's trail into an archive, also under the same slot name (its audit_log ids would be taken for archived ones)", async () => {
    const first = await freshDatabase('shipdb_a');
    const second = await freshDatabase('shipdb_b');
    const archive = await tempArchiveDir();
    const slot = `s_shared_${first.name}`;
    const shipTo = (db: { name: string }) =>
      runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--drain', '--slot', slot] }), { DATABASE_URL: shipperUrl(db.name) });
    expect((await shipTo(first)).code).toBe(0);
    await withClient(first.url, (c) => c.query('SELECT pg_drop_replication_slot($1)', [slot]));
    const r = await shipTo(second);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `holds the trail of database ${first.name} \\(system \\d+, slot ${slot}\\), not of ${second.name} \\(system \\d+, slot ${slot}\\): give each database and slot its own --archive prefix`,
      ),
    );
  });

  it('never acknowledges past what is stored, and recovers by itself when storage comes back', async () => {
    const db = await freshDatabase('shipack');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    const child = startCli(args(db, archive), { DATABASE_URL: shipperUrl(db.name), LOG_LEVEL: 'warn' });
    const done = waitFor(child);
    await sleep(2000); // streaming
    // Storage fails: the date folder cannot be created because a file stands where it would go.
    const dataDir = path.join(archive, 'data');
    await rename(dataDir, `${dataDir}.away`);
    await writeFile(dataDir, 'storage outage');
    await writeEvents(db.url, 1, 2000, 2000);
    const committedAt = await withClient(db.url, async (c) => (await c.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l);
    await sleep(1000); // the shipper has the rows now, and cannot store them
    const held = (await slotPosition(db.url))!.confirmed;
    // Below the end of the commit that holds the rows: a restart would receive them again.
    expect(await lsnLe(db.url, held, committedAt)).toBe(true);
    expect(held).not.toBe(committedAt);
    // Long enough for several keepalives, status updates and storage retries.
    for (let i = 0; i < 12; i++) {
      await sleep(1000);
      expect((await slotPosition(db.url))!.confirmed).toBe(held); // not one byte further while anything is unstored
    }
    await unlink(dataDir);
    await rename(`${dataDir}.away`, dataDir);
    let advanced = false;
    // Retries back off up to 30 s (with jitter) during an outage, so recovery can take that long.
    for (let i = 0; i < 150 && !advanced; i++) {
      await sleep(500);
      advanced = !(await lsnLe(db.url, (await slotPosition(db.url))!.confirmed, committedAt));
    }
    child.kill('SIGTERM');
    const result = await done;
    expect(advanced, result.stderr.slice(-3000)).toBe(true);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/failed; retrying/);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    await expectExactlyOnce(records, db.url, { inIdOrder: true });
  });

  it('keeps an idle audit_log from pinning WAL while other tables are written', async () => {
    const db = await freshDatabase('shipidle');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    await withClient(db.url, (c) => c.query('CREATE TABLE busy (id serial, pad text)'));
    const child = startCli(args(db, archive), { DATABASE_URL: shipperUrl(db.name) });
    const done = waitFor(child);
    await withClient(db.url, async (c) => {
      for (let i = 0; i < 20; i++) await c.query(`INSERT INTO busy (pad) SELECT repeat('x', 1000) FROM generate_series(1, 1000)`);
    });
    const afterWrites = (await slotPosition(db.url))!.lagBytes;
    expect(afterWrites).toBeGreaterThan(10_000_000); // the writes made WAL the slot had to consider
    let lag = afterWrites;
    for (let i = 0; i < 40 && lag > 1_000_000; i++) {
      await sleep(500);
      lag = (await slotPosition(db.url))!.lagBytes;
    }
    child.kill('SIGTERM');
    expect((await done).code).toBe(0);
    expect(lag).toBeLessThan(1_000_000);
  });

  it('writes signed heartbeats while idle, and they verify', async () => {
    const db = await freshDatabase('shiphb');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    const child = startCli(args(db, archive, ['--heartbeat-interval', '1s']), { DATABASE_URL: shipperUrl(db.name) });
    const done = waitFor(child);
    // The attestation at start is a file of its own; heartbeats follow once a second of idleness has passed.
    const heartbeats = async () => (await readArchive(archive, keys.keys).catch(() => ({ report: { heartbeats: 0 } }))).report.heartbeats;
    for (const until = Date.now() + 15_000; Date.now() < until && (await heartbeats()) < 2;) await sleep(250);
    child.kill('SIGTERM');
    expect((await done).code).toBe(0);
    const { report } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(report.heartbeats).toBeGreaterThanOrEqual(2);
  });

  it('records UPDATE and DELETE of audit_log as tamper attempts and raises an alert', async () => {
    const db = await freshDatabase('shiptamper');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 3);
    await drain(db, archive);
    await writeEvents(db.url, 10, 2);
    await withClient(db.url, async (c) => {
      // A superuser can switch triggers off; the stream still sees what happened.
      await c.query(`SET session_replication_role = replica`);
      await c.query(`UPDATE audit.audit_log SET session_user_name = 'nobody' WHERE row_id = '10'`);
      await c.query(`DELETE FROM audit.audit_log WHERE row_id = '11'`);
    });
    const r = await drain(db, archive, [], true);
    expect(r.stderr).toMatch(/TAMPER ATTEMPT: UPDATE/);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    const tamper = records.filter((x) => x.tamper === true);
    expect(tamper.map((x) => x.op)).toEqual(['update', 'delete']);
    expect((tamper[0]!.old as Record<string, string>).session_user_name).toBe('postgres');
    expect(tamper[0]!.session_user_name).toBe('nobody');
    expect((tamper[1]!.old as Record<string, string>).row_id).toBe('11');
  });

  it('records a lost replication slot as a gap, recovers the missed rows from audit_log, and refuses an archive whose newest digests are gone', async () => {
    const db = await freshDatabase('shipgap');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 10);
    await drain(db, archive);
    await writeEvents(db.url, 100, 10);
    await drain(db, archive);
    await withClient(db.url, (c) => c.query(`SELECT pg_drop_replication_slot('${slotOf(db)}')`));
    await writeEvents(db.url, 200, 5); // committed while no slot existed
    const r = await drain(db, archive, [], true);
    expect(r.stderr).toMatch(/GAP: the replication slot was missing/);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(records.filter((x) => x.op === 'gap').map((x) => x.reason)).toEqual(['replication slot missing or re-created']);
    // The rows committed while no slot existed are archived as a backfill segment: each once.
    const events = await expectExactlyOnce(records, db.url, { inIdOrder: true });
    const recovered = events.filter((x) => x.backfill === 'slot-lost').map((x) => x.row_id);
    expect(recovered).toEqual(['200', '201', '202', '203', '204']);

    // Remove the newest digest: the database remembers a later head than the archive has.
    const digests = (await readdir(path.join(archive, 'digests'))).sort();
    const newest = path.join(archive, 'digests', digests[digests.length - 1]!);
    await chmod(newest, 0o644);
    await rm(newest);
    const refused = await runCli(args(db, archive, ['--drain']), { DATABASE_URL: shipperUrl(db.name) });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/records file \d+ as shipped, but .* is missing/);
  });

  it('serves /healthz, /readyz and /metrics, and ingests pgaudit reads in the same process with --log-dir', async () => {
    const db = await freshDatabase('shiphttp');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    const port = 19000 + Math.floor(Math.random() * 1000);
    const child = startCli(args(db, archive, ['--http-port', String(port), '--log-dir', process.env.TEST_PG_LOG_DIR!]), {
      DATABASE_URL: urlFor(db.name, 'ship_ingest_login'),
    });
    const done = waitFor(child);
    const get = httpGet(port);
    expect((await get('/healthz')).status).toBe(200);
    await writeEvents(db.url, 1, 10);
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      await c.query(`SET app.customer_id = '3'`);
      await c.query('SELECT full_name FROM customers WHERE id = 3');
    });
    // Stored: the 10 writes, the read and the ingester's receipts (one per commit, so a count says little).
    // Waited for by the read itself: the shipper's own snapshot read of the trail is a pgaudit event
    // too, and can be stored well before the application's read (the test once stopped in between).
    const readArchived = async () => (await readArchive(archive, keys.keys)).records.some((r) => r.source === 'pgaudit' && r.table_name === 'customers');
    await expect.poll(readArchived, { timeout: 15_000, interval: 200 }).toBe(true);
    const metrics = (await get('/metrics')).body;
    expect(await get('/readyz')).toEqual({ status: 200, body: 'ready\n' });
    child.kill('SIGTERM');
    expect((await done).code).toBe(0);
    // at least the 10 writes and the read (a pattern on the digits failed on 100-109: a busy log makes many receipts)
    expect(Number(/audit_shipper_rows_shipped_total (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(11);
    expect(metrics).toMatch(/audit_shipper_slot_lag_bytes \d+/);
    expect(metrics).toMatch(/audit_shipper_upload_seconds_count \d+/);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(records.filter((r) => r.source === 'pgaudit' && r.table_name === 'customers').map((r) => [r.action, r.outcome, r.app_customer_id])).toEqual([
      ['SELECT', 'success', '3'],
    ]);
    // The shipper's own snapshot read of the trail (the initial backfill) is audited like any read of it.
    expect(records.filter((r) => r.source === 'pgaudit' && r.table_name === 'audit_log').map((r) => r.action)).toContain('SELECT');
  });

  it('with --log-dir, a failing ingester is not ready on /readyz, counted, and restarts by itself; an unreadable --log-dir exits 2', async () => {
    const db = await freshDatabase('shipingest');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    const bad = await runCli(args(db, archive, ['--drain', '--log-dir', '/nonexistent/pglog']), { DATABASE_URL: urlFor(db.name, 'ship_ingest_login') });
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(/^pg-audit-shipper: error: --log-dir \(PGAUDIT_LOG_DIR\) \/nonexistent\/pglog cannot be read: ENOENT/);

    // The ingester's privilege is taken away in this database only: role memberships are cluster-wide,
    // and every other test's shipper attests them.
    const login = 'ship_ingest_login';
    const port = 19000 + Math.floor(Math.random() * 1000);
    const child = startCli(args(db, archive, ['--http-port', String(port), '--log-dir', process.env.TEST_PG_LOG_DIR!]), {
      DATABASE_URL: urlFor(db.name, login),
      LOG_LEVEL: 'info',
    });
    const done = waitFor(child);
    // What the ingester said and when, for the message of a failed expectation (it once took 20 s
    // to fail on a loaded machine, cause not known yet).
    const t0 = Date.now();
    const timeline: string[] = [];
    child.stderr?.on('data', (d: Buffer) => {
      for (const l of d.toString().split('\n')) if (l.includes('ingest')) timeline.push(`+${Date.now() - t0}ms ${l.slice(0, 400)}`);
    });
    const get = httpGet(port);
    const until = async (p: string, ok: (r: { status: number; body: string }) => boolean) => {
      let r = await get(p);
      for (let i = 0; i < 100 && !ok(r); i++) {
        await sleep(200);
        r = await get(p);
      }
      return r;
    };
    expect(await until('/readyz', (r) => r.status === 200)).toEqual({ status: 200, body: 'ready\n' });
    timeline.push(`+${Date.now() - t0}ms REVOKE`);
    await withClient(db.url, (c) => c.query('REVOKE INSERT ON audit.audit_log FROM audit_ingester'));
    // A line for the ingester to read, so it fails now, not whenever some other line comes by: a read,
    // which pgaudit logs (audit_auditor holds SELECT only, so an INSERT logs nothing: the test once
    // waited 20 s in vain on an idle log for the line it thought an INSERT wrote).
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) VALUES (2, 'two')`));
    await withClient(db.url, (c) => c.query(`SELECT full_name FROM customers WHERE id = 2`));
    const failing = await until('/readyz', (r) => r.status === 503);
    expect(failing.status, timeline.join('\n')).toBe(503);
    // (Which refusal comes first depends on whether the chunk held events: the table's grant, or the source guard.)
    expect(failing.body).toMatch(/^ingest: failed: .*(permission denied|may append only pgaudit events)/);
    expect((await get('/metrics')).body).toMatch(/audit_shipper_ingest_up 0/);
    await withClient(db.url, (c) => c.query('GRANT INSERT ON audit.audit_log TO audit_ingester'));
    // (a read that returns a row: one that returns none waits a minute for the server's line with its context)
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) VALUES (3, 'three')`));
    await withClient(urlFor(db.name, 'app_login'), (c) =>
      c.query(`SET app.customer_id = '3'; SELECT full_name FROM customers WHERE id = 3 /* after the restart */`),
    );
    expect(await until('/readyz', (r) => r.status === 200)).toEqual({ status: 200, body: 'ready\n' });
    const metrics = (await get('/metrics')).body;
    expect(metrics).toMatch(/audit_shipper_ingest_up 1/);
    expect(metrics).toMatch(/audit_shipper_ingest_restarts_total [1-9]/);
    for (let i = 0; i < 50; i++) {
      const n = await withClient(
        db.url,
        async (c) =>
          (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE table_name = 'customers' AND statement LIKE '%after the restart%'`)).rows[0].n,
      );
      if (n > 0) break;
      await sleep(200);
    }
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/"msg":"ingest stopped; restarting it"/);
    expect(r.stderr, r.stderr.slice(0, 3000)).toMatch(/"msg":"ingest is running again"/);
    expect(
      await withClient(
        db.url,
        async (c) =>
          (await c.query(`SELECT count(*)::int AS n FROM audit.audit_log WHERE table_name = 'customers' AND statement LIKE '%after the restart%'`)).rows[0].n,
      ),
    ).toBe(1);
  });

  it('kill -9 in the middle of the initial backfill: the restart finishes it, every row is archived once, verify finds nothing', async () => {
    const db = await freshDatabase('shipbackfillkill');
    const archive = await tempArchiveDir();
    const rows = 60_000;
    await writeEvents(db.url, 1, rows); // committed before the slot exists: the initial backfill archives them
    const dataFiles = async () => {
      const days = await readdir(path.join(archive, 'data')).catch(() => [] as string[]);
      // (stored files only: the file sink writes a hidden temporary file first)
      return (await Promise.all(days.map((d) => readdir(path.join(archive, 'data', d))))).flat().filter((f) => !f.startsWith('.')).length;
    };
    const child = startCli(args(db, archive, ['--batch-max-records', '1000']), { DATABASE_URL: shipperUrl(db.name) });
    const done = waitFor(child);
    for (let i = 0; i < 600 && (await dataFiles()) < 5; i++) await sleep(20);
    child.kill('SIGKILL');
    await done;
    const atKill = await dataFiles();
    expect(atKill, 'data files when killed').toBeGreaterThanOrEqual(5);
    expect(atKill, 'data files when killed').toBeLessThan(rows / 1000); // killed before the backfill's last file
    await drain(db, archive, ['--batch-max-records', '1000'], true);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    const ids = records.filter((r) => r.op === 'insert' && r.action === 'INSERT').map((r) => r.id);
    expect(new Set(ids).size, `distinct rows archived (${atKill} data files when killed)`).toBe(rows);
    expect(ids.length, `rows in the chain (${atKill} data files when killed)`).toBe(rows); // none twice
    const verify = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
    expect(verify.code, verify.stdout).toBe(0);
  });

  it("killed after its first heartbeat and before the backfill's first digest: the restart backfills (an archive of heartbeats only holds no row)", async () => {
    // The state a kill -9 leaves in that window (CI hit it once): the slot exists, created with the
    // snapshot the rows before it were to be archived from, and the archive holds one heartbeat.
    const db = await freshDatabase('shipheartbeatonly');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 3000);
    const source = await withClient(db.url, async (c) => {
      await c.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [slotOf(db)]);
      const r = await c.query<{ sys: string; tli: number; lsn: string }>(
        `SELECT (SELECT system_identifier::text FROM pg_control_system()) AS sys, (SELECT timeline_id FROM pg_control_checkpoint()) AS tli,
                (SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1) AS lsn`,
        [slotOf(db)],
      );
      return { systemIdentifier: r.rows[0]!.sys, timeline: r.rows[0]!.tli, database: db.name, slot: slotOf(db), lsn: r.rows[0]!.lsn };
    });
    const { sealHeartbeat } = await import('../../src/seal/sealer.js');
    const { EMPTY_HEAD } = await import('../../src/ship/resume.js');
    const { loadSigningKey } = await import('../../src/seal/keys.js');
    const { fileArchive } = await import('../../src/sink/file/file-archive.js');
    const { parseLsn } = await import('../../src/source/lsn.js');
    const hb = sealHeartbeat(EMPTY_HEAD, source, await loadSigningKey(keys.signingKey), parseLsn(source.lsn));
    for (const o of hb.objects) await fileArchive(archive).sink.put(o);
    await drain(db, archive, [], true);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(records.filter((r) => r.op === 'insert' && r.action === 'INSERT').length).toBe(3000);
  });

  it('refuses to start when the newest data file is not what its signed digest names: that file decides whether the slot is re-created', async () => {
    const db = await freshDatabase('shiptamper');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 5);
    await drain(db, archive);
    const days = await readdir(path.join(archive, 'data'));
    const files = (
      await Promise.all(days.map(async (d) => (await readdir(path.join(archive, 'data', d))).map((f) => path.join(archive, 'data', d, f))))
    ).flat();
    const newest = files.sort((a, b) => path.basename(a).localeCompare(path.basename(b))).at(-1)!;
    // A last record saying the initial backfill never finished would make the shipper drop the slot and back-fill again.
    const { gzipSync } = await import('node:zlib');
    await chmod(newest, 0o644);
    await writeFile(newest, gzipSync('{"op":"insert","backfill":"initial"}\n'));
    const before = await slotPosition(db.url);
    expect(before).not.toBeNull();
    const r = await runCli(args(db, archive, ['--drain']), { DATABASE_URL: shipperUrl(db.name) });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/does not match the hash its signed digest records; refusing to continue the chain \(run `pg-audit-shipper verify`\)/);
    // the same slot, where it was (other tests' WAL moves the lag, not the confirmed position)
    expect((await slotPosition(db.url))?.confirmed).toBe(before!.confirmed);
  });

  it('the installed command runs ship with a bounded heap (backfill and recovery stay under 256 MiB), unless NODE_OPTIONS sets one', async () => {
    const db = await freshDatabase('shipbin');
    const archive = await tempArchiveDir();
    const bin = path.resolve(path.dirname(CLI), '../../bin/pg-audit-shipper');
    const heapLimit = async (nodeOptions?: string) => {
      const env = {
        PATH: process.env.PATH!,
        HOME: '/tmp',
        LOG_LEVEL: 'info',
        DATABASE_URL: shipperUrl(db.name),
        ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
      };
      const r = await waitFor(spawn(bin, args(db, archive, ['--drain']), { env, stdio: ['ignore', 'pipe', 'pipe'] }));
      expect(r.code, r.stderr).toBe(0);
      return Number(/"heap_limit_mib":(\d+)/.exec(r.stderr)?.[1]);
    };
    const bounded = await heapLimit();
    expect(bounded).toBeGreaterThan(150);
    expect(bounded).toBeLessThanOrEqual(256); // the old generation's 192 MiB and the young generation
    expect(await heapLimit('--max-old-space-size=400')).toBeGreaterThan(400);
  });

  it('refuses at start what would fail later or forever: a file:// URL with a host, a retention Object Lock cannot keep, heartbeats under a minute', async () => {
    const base = ['ship', '--signing-key', keys.signingKey, '--database-url', 'postgresql://nobody@127.0.0.1:1/none', '--http-port', '0'];
    const cases: [string[], string][] = [
      [
        ['--archive', 'file://tmp/x'],
        '--archive (AUDIT_ARCHIVE) file://tmp/x names a host (tmp): a local archive is file:///absolute/path, e.g. file:///tmp/x',
      ],
      [
        ['--archive', 'file:///tmp/never-written', '--retention', '300000y'],
        '--retention 300000y is longer than 100 years (36500 days), the most Object Lock keeps',
      ],
      [
        ['--archive', 'file:///tmp/never-written', '--heartbeat-interval', '1ms'],
        '--heartbeat-interval (AUDIT_HEARTBEAT_INTERVAL) is invalid: must be at least 1s, not 1ms',
      ],
      [
        ['--archive', 'file:///tmp/never-written', '--heartbeat-interval', '10s'],
        '--heartbeat-interval (AUDIT_HEARTBEAT_INTERVAL) 10s is shorter than a minute: every heartbeat is an object locked for the retention period; shorter only with --allow-short-retention (tests and trials)',
      ],
    ];
    for (const [extra, message] of cases) {
      const r = await runCli([...base, ...extra]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim()).toBe(`pg-audit-shipper: error: ${message}`);
    }
    // ...and names what to change for a log level, a port that is taken, and the wrong kind of key.
    const loud = await runCli([...base, '--archive', 'file:///tmp/never-written'], { LOG_LEVEL: 'loud' });
    expect(loud.stderr.trim()).toBe('pg-audit-shipper: error: LOG_LEVEL "loud" is not a log level: use trace, debug, info, warn, error, fatal, silent');
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '0.0.0.0', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await runCli([
        'ship',
        '--signing-key',
        keys.signingKey,
        '--database-url',
        'postgresql://nobody@127.0.0.1:1/none',
        '--archive',
        'file:///tmp/never-written',
        '--http-port',
        String(port),
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim()).toBe(
        `pg-audit-shipper: error: --http-port (AUDIT_HTTP_PORT) ${port} is in use by another process: choose another port, or 0 to serve no health and metrics endpoint`,
      );
    } finally {
      taken.close();
    }
    const publicKey = await runCli([
      'ship',
      '--signing-key',
      keys.verifyKey,
      '--database-url',
      'postgresql://nobody@127.0.0.1:1/none',
      '--archive',
      'file:///tmp/never-written',
    ]);
    expect(publicKey.code).toBe(2);
    expect(publicKey.stderr).toMatch(/is a public key \(the verify key\?\); --signing-key takes the private key/);
  });

  it('split brain, the lease: a paused shipper whose slot another took over writes nothing when it wakes, stopped by its lost writer lease before any storage check', async () => {
    const { db, archive, a, aDone } = await pausedShipper('shiplease', 20);
    const b = await drain(db, archive); // B takes the slot and the lease (and stores only its start-up attestation)
    expect(b.code).toBe(0);
    const objectsBefore = await listAll(archive);
    await writeEvents(db.url, 100, 10); // A's stream (once it reconnects) would seal these as its next file
    a.kill('SIGCONT');
    const stopped = await aDone;
    expect(stopped.code).toBe(2);
    expect(stopped.stderr).toMatch(/another shipper took over slot \S+ \(\S+ pid \d+, at [^)]+\); this one's writer lease \(generation 1\) is gone/);
    expect(await listAll(archive)).toEqual(objectsBefore);
    await drain(db, archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(records.filter((r) => r.op === 'insert' && r.action === 'INSERT').length).toBe(30);
  });

  it('split brain: a shipper paused while another took over its slot stops when it wakes, and writes nothing into the archive', async () => {
    const { db, archive, a, aDone } = await pausedShipper('shipsplit', 50);
    await writeEvents(db.url, 100, 50);
    await drain(db, archive); // B: takes the slot, ships, records its head, exits
    await writeEvents(db.url, 200, 10);
    const objectsBefore = await listAll(archive);
    a.kill('SIGCONT'); // A wakes up with its old head and the slot free again: its next file's place is B's
    const stopped = await aDone;
    expect(stopped.code).toBe(2);
    expect(stopped.stderr.trim().split('\n').at(-1)).toMatch(
      /^pg-audit-shipper: error: .*failed 3 times and retrying cannot fix it: ObjectExists: two shippers write to this archive/,
    );
    expect(await listAll(archive)).toEqual(objectsBefore); // not one object from the stale writer
    await drain(db, archive); // what A held is still in the slot
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(records.filter((r) => r.op === 'insert' && r.action === 'INSERT').length).toBe(110);
  });

  it("refuses to start with a clock far from the database server's (faketime: 400 days behind, 3 hours ahead); a minute off is fine", async () => {
    const db = await freshDatabase('shipclock');
    const archive = await tempArchiveDir();
    for (const [offset, words] of [
      ['-400d', '400 days behind'],
      ['+3h', '3 h ahead of'],
    ] as const) {
      const r = await waitFor(startCli(args(db, archive, ['--drain']), { DATABASE_URL: shipperUrl(db.name) }, ['faketime', '-f', offset]));
      expect(r.code).toBe(2);
      expect(r.stderr.trim()).toBe(
        `pg-audit-shipper: error: this machine's clock is ${words} the database server's (more than 60s): ` +
          'Object Lock retention dates and event-date partitions are computed from it; fix the clock (NTP) on the machine that is wrong',
      );
    }
    expect(await listAll(archive)).toEqual([]); // nothing written with the wrong dates
    const ok = await waitFor(startCli(args(db, archive, ['--drain']), { DATABASE_URL: shipperUrl(db.name) }, ['faketime', '-f', '-50s']));
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('refuses a slot that another shipper is using, and a missing signing key, in one line', async () => {
    const db = await freshDatabase('shipbusy');
    const archive = await tempArchiveDir();
    await drain(db, archive);
    const first = startCli(args(db, archive), { DATABASE_URL: shipperUrl(db.name) });
    const firstDone = waitFor(first);
    await sleep(1500);
    const second = await runCli(args(db, archive, ['--drain']), { DATABASE_URL: shipperUrl(db.name) });
    first.kill('SIGTERM');
    await firstDone;
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(
      /replication slot s_t_shipbusy_[0-9a-f]+ is in use by process \d+ \(serving pg-audit-shipper from .* since .*\): another shipper is running; .*\(waited 15s for it to be released\)/,
    );
    const nokey = await runCli(['ship', '--archive', `file://${archive}`], { DATABASE_URL: shipperUrl(db.name) });
    expect(nokey.code).toBe(2);
    expect(nokey.stderr.trim()).toBe(
      'pg-audit-shipper: error: --signing-key (AUDIT_SIGNING_KEY) is required; e.g. --signing-key /etc/pg-audit-shipper/signing-key.pem',
    );
  });
});

/**
 * Shipper A, running, has archived `events` events; then it freezes (a VM paused) and the server
 * drops its connection: the slot is free for another shipper.
 */
async function pausedShipper(label: string, events: number) {
  const db = await freshDatabase(label);
  const archive = await tempArchiveDir();
  const a = startCli(args(db, archive), { DATABASE_URL: shipperUrl(db.name) });
  const aDone = waitFor(a);
  await writeEvents(db.url, 1, events);
  const archived = async () =>
    (await readArchive(archive, keys.keys).catch(() => ({ records: [] as { op: string }[] }))).records.filter((r) => r.op === 'insert').length;
  await expect.poll(archived, { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(events);
  a.kill('SIGSTOP');
  await withClient(db.url, (c) => c.query('SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active', [slotOf(db)]));
  return { db, archive, a, aDone };
}

async function listAll(dir: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const all = await readdir(dir, { recursive: true }).catch(() => [] as string[]); // not created yet: nothing written
  return all
    .map(String)
    .filter((f) => f.endsWith('.gz') || f.endsWith('.digest'))
    .sort();
}

async function lsnLe(url: string, a: string, b: string): Promise<boolean> {
  return withClient(url, async (c) => (await c.query('SELECT $1::pg_lsn <= $2::pg_lsn AS le', [a, b])).rows[0].le);
}
