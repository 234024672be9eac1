import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeKeys, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';

/**
 * `verify --reconcile`: every audit_log row committed before the run began is in the archive. Real
 * PostgreSQL 15 and the real shipper; the loss is made the way an insider with replication rights
 * (or a shipper bug) would make it: the slot moved past rows that were never stored.
 */
let keys: TestKeys;
beforeAll(async () => {
  keys = await makeKeys();
});

interface Finding {
  code: string;
  message: string;
  detail?: Record<string, unknown>;
}

describe('verify --reconcile', () => {
  it('passes when every row is archived, names the rows a moved slot skipped, and passes again once a new slot backfilled them', async () => {
    const db = await freshDatabase('reconcile');
    const archive = await tempArchiveDir();
    const slot = `s_${db.name}`;
    const write = (from: number, n: number) =>
      withClient(db.url, (c) =>
        c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series($1::int, $1::int + $2::int - 1) g`, [from, n]),
      );
    const ship = () =>
      runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', slot, '--drain'] }), { DATABASE_URL: urlFor(db.name, 'ship_login') });
    const verify = async (extra: string[] = []) => {
      const r = await runCli(
        [
          'verify',
          '--archive',
          `file://${archive}`,
          '--verify-key',
          keys.verifyKey,
          '--database-url',
          db.url,
          '--slot',
          slot,
          '--reconcile',
          '--json',
          ...extra,
        ],
        {},
      );
      return { code: r.code, stderr: r.stderr, report: r.stdout ? (JSON.parse(r.stdout) as { findings: Finding[]; notes: Finding[] }) : null };
    };
    /** verify while a shipper runs on the slot (reconciling waits for it to store what was committed) */
    const verifyWhileShipping = async () => {
      const child = startCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', slot] }), { DATABASE_URL: urlFor(db.name, 'ship_login') });
      const done = waitFor(child);
      try {
        return await verify();
      } finally {
        child.kill('SIGTERM');
        await done;
      }
    };

    await write(1, 300);
    expect((await ship()).code).toBe(0);
    await write(1000, 200);

    // Everything shipped: the rows written after the last drain are stored by the running shipper first.
    const clean = await verifyWhileShipping();
    expect(clean.code, clean.stderr + JSON.stringify(clean.report?.findings)).toBe(0);
    expect(clean.report!.findings).toEqual([]);
    const rows = await withClient(db.url, async (c) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM audit.audit_log')).rows[0]!.n));
    const note = clean.report!.notes.find((n) => n.code === 'reconciled')!;
    // the rows committed when it began (the running shipper's attestation comes after)
    expect(note.detail).toMatchObject({ missing: 0 });
    expect(Number(note.detail!.rows)).toBeGreaterThanOrEqual(502); // 500, the PROTECT of init --example, an attestation
    expect(Number(note.detail!.rows)).toBeLessThanOrEqual(rows);

    // Rows committed, then the slot moved past them by hand while no shipper ran: never streamed.
    await write(2000, 25);
    const skipped = await withClient(db.url, async (c) =>
      (await c.query<{ id: string }>(`SELECT id::text AS id FROM audit.audit_log WHERE row_id::int BETWEEN 2000 AND 2024 ORDER BY id`)).rows.map((r) => r.id),
    );
    expect(skipped).toHaveLength(25);
    await sleep(1000); // the last walsender lets go of the slot
    await withClient(db.url, (c) => c.query('SELECT pg_replication_slot_advance($1, pg_current_wal_lsn())', [slot]));
    await write(3000, 10); // after the move: streamed as usual
    const lost = await verifyWhileShipping();
    expect(lost.code, lost.stderr).toBe(1);
    const notArchived = lost.report!.findings.filter((f) => f.code === 'not-archived');
    expect(notArchived.map((f) => [f.detail!.first_id, f.detail!.last_id, f.detail!.rows])).toEqual([[skipped[0], skipped.at(-1), 25]]);
    expect(notArchived[0]!.message).toMatch(/lost on the way.*pg_drop_replication_slot/);
    expect(lost.report!.findings.map((f) => f.code)).toEqual(['not-archived']); // the archive alone looks intact

    // The remedy the finding names: a new slot records a gap and archives the rows the archive lacks.
    await sleep(1000);
    await withClient(db.url, (c) => c.query('SELECT pg_drop_replication_slot($1)', [slot]));
    expect((await ship()).code).toBe(0);
    const recovered = await verifyWhileShipping();
    expect(recovered.report!.findings.map((f) => f.code)).toEqual(['gap']); // said, to be acknowledged
    expect(recovered.report!.notes.find((n) => n.code === 'reconciled')!.detail).toMatchObject({ missing: 0 });
  });

  it('refuses what it cannot judge, in one line: no shipper running, no --database-url, a partial walk, a wrong slot', async () => {
    const db = await freshDatabase('reconcilerefuse');
    const archive = await tempArchiveDir();
    const slot = `s_${db.name}`;
    expect(
      (await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', slot, '--drain'] }), { DATABASE_URL: urlFor(db.name, 'ship_login') }))
        .code,
    ).toBe(0);
    await withClient(db.url, (c) => c.query(`INSERT INTO customers (id, full_name) VALUES (1, 'x')`)); // committed, not shipped: no shipper runs
    const base = ['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey];
    const cases: [string[], RegExp][] = [
      [
        ['--database-url', db.url, '--slot', slot, '--reconcile', '--reconcile-wait', '1s'],
        /^reconciling: waiting for slot s_\w+ to be confirmed past \S+ \(it is at \S+\)\npg-audit-shipper: error: --reconcile: slot s_\w+ was not confirmed past \S+ .* within 1 s: a shipper must be running on that slot/,
      ],
      [['--reconcile'], /^pg-audit-shipper: error: --reconcile compares the archive with audit_log: give --database-url \(DATABASE_URL\) too\n$/],
      [
        ['--database-url', db.url, '--reconcile', '--state', path.join(archive, '..', 'state.json')],
        /^pg-audit-shipper: error: --reconcile needs every audit_log id the archive holds/,
      ],
      [
        ['--database-url', db.url, '--reconcile', '--slot', 'no_such_slot'],
        /^pg-audit-shipper: error: --reconcile: the database has no replication slot no_such_slot: name the shipper's slot with --slot/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = await runCli([...base, ...args], {});
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});
