import { beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';
import { makeKeys, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';

/**
 * What the chain records as wrong must reach the person who runs `verify`: a committed change of
 * audit_log (made here as audit_owner with the append-only guard switched off, as a DBA could) and
 * a lost slot are findings, exit 1, until a reviewer acknowledges them through the trail itself.
 * Archives made by the real shipper from a real PostgreSQL.
 */
let keys: TestKeys;
beforeAll(async () => {
  keys = await makeKeys();
});

interface Report {
  ok: boolean;
  findings: { code: string; id?: string; message: string; detail?: Record<string, unknown> }[];
  acknowledged: { id: string; acknowledgement: { by: string; reviewer: string | null; reason: string } }[];
  expect_head: string;
}

const slotOf = (db: { name: string }) => `s_${db.name}`;

async function drain(db: { name: string }, archive: string): Promise<void> {
  const r = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--drain', '--slot', slotOf(db)] }), {
    DATABASE_URL: urlFor(db.name, 'ship_login'),
  });
  expect(r.code, r.stderr).toBe(0);
}

async function verify(archive: string, extra: string[] = []): Promise<{ code: number | null; report: Report; stderr: string }> {
  const r = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json', ...extra]);
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}

async function writeEvents(url: string, from: number, n: number): Promise<void> {
  await withClient(url, (c) =>
    c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series($1::int, $2::int) g`, [from, from + n - 1]),
  );
}

describe('verify reports what the chain records', () => {
  it('a committed UPDATE and DELETE of audit_log by its owner: findings until a reviewer acknowledges them through the trail', async () => {
    const db = await freshDatabase('vrtamper');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 5);
    await drain(db, archive);
    const clean = await verify(archive);
    expect(clean.code).toBe(0);

    await withClient(db.url, async (c) => {
      await c.query('SET ROLE audit_owner');
      await c.query('ALTER TABLE audit.audit_log DISABLE TRIGGER audit_log_append_only');
      await c.query(`UPDATE audit.audit_log SET app_user_id = 'nobody' WHERE row_id = '2'`);
      await c.query(`DELETE FROM audit.audit_log WHERE row_id IN ('3', '4')`);
      await c.query('ALTER TABLE audit.audit_log ENABLE TRIGGER audit_log_append_only');
    });
    await drain(db, archive);

    const found = await verify(archive);
    expect(found.code, found.stderr).toBe(1);
    const tamper = found.report.findings.filter((f) => f.code === 'tamper');
    expect(tamper.map((f) => f.detail?.op)).toEqual(['update', 'delete']);
    expect(tamper[1]!.detail?.count).toBe(2); // one statement, one finding
    expect((tamper[0]!.detail?.old_rows as { app_user_id: string }[])[0]!.app_user_id).toBeNull();
    expect((tamper[0]!.detail?.new_row as { app_user_id: string }).app_user_id).toBe('nobody');
    expect((tamper[1]!.detail?.old_rows as { row_id: string }[]).map((r) => r.row_id)).toEqual(['3', '4']);
    const text = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey]);
    expect(text.stdout).toMatch(/a DELETE of 2 audit_log rows was committed/);
    expect(text.stdout).not.toMatch(/Result: intact/);

    // query tells the truth about them too: committed, not "never applied".
    const q = await runCli(['query', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey]);
    expect(q.stdout).toMatch(/a DELETE of 2 audit_log rows was committed/);
    expect(q.stdout).not.toMatch(/never applied/);

    // The ingester's role appends pgaudit events only: it cannot forge an acknowledgement (or a trigger event).
    for (const source of ['review', 'trigger']) {
      await expect(
        withClient(urlFor(db.name, 'ingest_login'), (c) =>
          c.query(
            `INSERT INTO audit.audit_log (occurred_at, source, action, outcome, row_id, session_user_name, statement)
         VALUES (now(), $1, 'ACKNOWLEDGE', 'success', $2, 'review_login', 'forged')`,
            [source, tamper[0]!.id],
          ),
        ),
      ).rejects.toThrow(/may append only pgaudit events/);
    }
    // The application's role cannot acknowledge; a reviewer can, and says why.
    const denied = await runCli(['acknowledge', tamper[0]!.id!, '--reason', 'looked at it, fine'], { DATABASE_URL: urlFor(db.name, 'app_login') });
    expect(denied.code).toBe(2);
    expect(denied.stderr).toMatch(/GRANT audit_reviewer TO <login>/);
    const noReason = await runCli(['acknowledge', tamper[0]!.id!], { DATABASE_URL: urlFor(db.name, 'review_login') });
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/--reason is required/);
    const ack = await runCli(['acknowledge', tamper[0]!.id!, '--reason', 'DBA test on staging data, ticket 7', '--reviewer', 'ann.compliance'], {
      DATABASE_URL: urlFor(db.name, 'review_login'),
    });
    expect(ack.code, ack.stderr).toBe(0);
    await drain(db, archive);

    const half = await verify(archive);
    expect(half.code).toBe(1);
    expect(half.report.findings.map((f) => f.id)).toEqual([tamper[1]!.id]);
    expect(half.report.acknowledged).toEqual([
      expect.objectContaining({
        id: tamper[0]!.id,
        acknowledgement: expect.objectContaining({ by: 'review_login', reviewer: 'ann.compliance', reason: 'DBA test on staging data, ticket 7' }),
      }),
    ]);

    expect(
      (
        await runCli(['acknowledge', tamper[1]!.id!, '--reason', 'restored rows 3 and 4 from the archive, ticket 8'], {
          DATABASE_URL: urlFor(db.name, 'review_login'),
        })
      ).code,
    ).toBe(0);
    await drain(db, archive);
    const green = await verify(archive);
    expect(green.code, JSON.stringify(green.report.findings)).toBe(0);
    expect(green.report.acknowledged.map((a) => a.id)).toEqual(tamper.map((f) => f.id));
    const greenText = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey]);
    expect(greenText.stdout).toMatch(/Result: no open problems/);
    expect(greenText.stdout).toMatch(/acknowledged by review_login \(ann\.compliance\)/);
  });

  it('a lost replication slot: the gap record is a finding', async () => {
    const db = await freshDatabase('vrgap');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 5);
    await drain(db, archive);
    await withClient(db.url, (c) => c.query(`SELECT pg_drop_replication_slot('${slotOf(db)}')`));
    await writeEvents(db.url, 100, 3);
    await drain(db, archive);
    const r = await verify(archive);
    expect(r.code).toBe(1);
    expect(r.report.findings).toEqual([expect.objectContaining({ code: 'gap', id: expect.stringMatching(/^record:\d+$/) })]);
    expect(r.report.findings[0]!.detail?.reason).toBe('replication slot missing or re-created');
  });

  it('every report ends with its head; --expect-head with it catches the newest files cut away', async () => {
    const db = await freshDatabase('vrhead');
    const archive = await tempArchiveDir();
    await writeEvents(db.url, 1, 3);
    await drain(db, archive);
    const before = (await verify(archive)).report.expect_head;
    expect(before).toMatch(/^\d+:[0-9a-f]{64}$/);
    await writeEvents(db.url, 10, 3);
    await drain(db, archive);
    const after = await verify(archive, ['--expect-head', before]);
    expect(after.code).toBe(0);
    const head = after.report.expect_head;
    const text = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey]);
    expect(text.stdout.trim().split('\n').pop()).toMatch(new RegExp(`^Head: ${head}`));

    // Cut the newest file and its digest: the archive alone still looks whole, the recorded head does not.
    const { chmod, rm, readdir } = await import('node:fs/promises');
    const seq = Number(head.split(':')[0]);
    const digest = `${archive}/digests/${String(seq).padStart(12, '0')}.digest`;
    const dataDir = `${archive}/data`;
    for (const part of await readdir(dataDir)) {
      for (const f of await readdir(`${dataDir}/${part}`)) {
        if (f.startsWith(String(seq).padStart(12, '0'))) {
          await chmod(`${dataDir}/${part}/${f}`, 0o644);
          await rm(`${dataDir}/${part}/${f}`);
        }
      }
    }
    await chmod(digest, 0o644);
    await rm(digest);
    expect((await verify(archive)).code).toBe(0);
    const cut = await verify(archive, ['--expect-head', head]);
    expect(cut.code).toBe(1);
    expect(cut.report.findings.map((f) => f.code)).toEqual(['tail-missing']);
    // Compared with a database that is not the shipper's: say so, not "relation does not exist".
    const wrongDb = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--database-url', urlFor('postgres')]);
    expect(wrongDb.code).toBe(2);
    expect(wrongDb.stderr.trim()).toBe(
      'pg-audit-shipper: error: --database-url (DATABASE_URL) names database postgres, which has no pg-audit-shipper schema (audit.shipper_head): name the database the shipper streams from',
    );
    const bad = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--expect-head', 'latest']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe(
      'pg-audit-shipper: error: --expect-head (AUDIT_EXPECT_HEAD) is invalid: takes SEQ:SHA256 as a report\'s "Head:" line prints it, not "latest"',
    );
  });

  it('rows that predate the slot are filed under their event dates: a March query finds them, and verify checks the partition', async () => {
    const db = await freshDatabase('vrbackfill');
    const archive = await tempArchiveDir();
    // Events of two March days already in audit_log before the shipper first starts (in id order, interleaved).
    await withClient(db.url, (c) =>
      c.query(`INSERT INTO audit.audit_log (occurred_at, source, action, outcome, schema_name, table_name, row_id, session_user_name, app_customer_id)
      SELECT timestamptz '2026-03-01 23:59:59+00' + (g % 2) * interval '1 second', 'trigger', 'UPDATE', 'success', 'public', 'customers', g::text, 'phi_app', '4711'
        FROM generate_series(1, 20) g`),
    );
    await writeEvents(db.url, 1, 2); // and two of today
    await drain(db, archive);
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(`${archive}/data`)).sort()).toEqual(expect.arrayContaining(['dt=2026-03-01', 'dt=2026-03-02']));
    const ok = await verify(archive);
    expect(ok.code, JSON.stringify(ok.report.findings)).toBe(0);
    const q = await runCli([
      'query',
      '--archive',
      `file://${archive}`,
      '--verify-key',
      keys.verifyKey,
      '--customer',
      '4711',
      '--from',
      '2026-03-01',
      '--to',
      '2026-06-01',
      '--format',
      'json',
    ]);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout.trim().split('\n')).toHaveLength(20);
  });
});
