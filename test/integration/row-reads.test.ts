import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ArchivedRecord } from '../../src/verify/chain.js';
import { makeKeys, readArchive, shipArgs, tempArchiveDir, type TestKeys } from '../helpers/archive.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { freshDatabase, urlFor, withClient } from '../helpers/db.js';
import { createLogger } from '../../src/log.js';
import { loadSigningKey } from '../../src/seal/keys.js';
import { createMetrics } from '../../src/ship/metrics.js';
import { ship as shipInProcess } from '../../src/ship/shipper.js';
import { openArchive } from '../../src/sink/open.js';
import type { Archive } from '../../src/sink/sink.js';

/**
 * Reads with row identifiers, through the replication slot (`protect --reads rows|both`,
 * sql/migrations/008, 009): each row a read returns is a `read` record with its key, the login, the role
 * and the application's settings of that moment. Real PostgreSQL 15; the reads are made as the
 * application would make them, and the archive is read back through the shipper's own files.
 */
let db: { name: string; url: string };
let keys: TestKeys;
const OWNER = 'rr_notes_owner';

/** Each test ships into an archive of its own, through a slot of its own. */
const slots = new Map<string, string>();
async function newArchive(): Promise<string> {
  const archive = await tempArchiveDir();
  slots.set(archive, `s_${db.name}_${slots.size}`);
  return archive;
}
const ship = (archive: string, extra: string[] = []) => shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', slots.get(archive)!, ...extra] });

async function drain(archive: string): Promise<void> {
  const r = await runCli(ship(archive, ['--drain']), { DATABASE_URL: urlFor(db.name, 'ship_login') });
  expect(r.code, r.stderr).toBe(0);
}

/** Run `fn` as `user` with the application's settings and a name for the case (application_name). */
async function as<T>(user: string, app: string, fn: (c: pg.Client) => Promise<T>, settings: Record<string, string> = {}): Promise<T> {
  return withClient(urlFor(db.name, user, { application_name: app }), async (c) => {
    for (const [k, v] of Object.entries(settings)) await c.query('SELECT set_config($1, $2, false)', [k, v]);
    return fn(c);
  });
}

/** `query ... --format json` over the archive: the events it answers with (exit 0 asserted). */
async function queryJson(archive: string, args: string[]): Promise<Record<string, unknown>[]> {
  const r = await runCli(['query', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--format', 'json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Ingest pgaudit's lines until `count()` passes `above` (a marker read's line is in: any line the server wrote before it is in too). */
async function ingestPast(count: () => Promise<number>, above: number): Promise<void> {
  const env = { DATABASE_URL: urlFor(db.name, 'ingest_login'), PGAUDIT_LOG_DIR: process.env.TEST_PG_LOG_DIR! };
  await expect
    .poll(
      async () => {
        expect((await runCli(['ingest'], env)).code).toBe(0);
        return count();
      },
      { timeout: 20_000, interval: 200 },
    )
    .toBeGreaterThan(above);
}

const readsOf = (records: ArchivedRecord[], app: string) => records.filter((r) => r.op === 'read' && r.application_name === app);

beforeAll(async () => {
  keys = await makeKeys();
  db = await freshDatabase('rowreads');
  await withClient(urlFor('postgres'), (c) =>
    c.query(`DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${OWNER}') THEN CREATE ROLE ${OWNER} LOGIN; END IF; END $$`),
  );
  await withClient(db.url, async (c) => {
    await c.query('CREATE SCHEMA clinic');
    await c.query(`GRANT USAGE, CREATE ON SCHEMA clinic TO ${OWNER}`);
    await c.query('CREATE TABLE clinic.notes (id int PRIMARY KEY, body text)');
    await c.query(`INSERT INTO clinic.notes SELECT g, 'note ' || g FROM generate_series(1, 400) g`);
    await c.query(`ALTER TABLE clinic.notes OWNER TO ${OWNER}`); // an owner that is no superuser
    await c.query('GRANT USAGE ON SCHEMA clinic TO phi_app');
    await c.query('GRANT SELECT ON clinic.notes TO phi_app');
    await c.query(`INSERT INTO customers (id, full_name) SELECT g, 'p' || g FROM generate_series(1, 50) g`);
  });
  for (const table of ['clinic.notes', 'public.customers']) {
    const r = await runCli(['protect', table, '--reads', 'both'], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    // The example protects customers already (statements): protect says what changed.
    expect(r.stdout).toBe(`protected ${table} (reads recorded: both${table === 'public.customers' ? ', were statements' : ''})\n`);
    expect(r.stderr).toMatch(
      /^warning: reads by .*\bpostgres\b.* skip row-level security \(superuser or BYPASSRLS\): they are recorded as statements by pgaudit, not row by row\n$/,
    );
  }
  // Protecting again (as a migration script would, every deploy) keeps row reads on and records no
  // new protection event for them: the trail says when they were switched, not how often protect ran.
  for (const again of [[], ['--reads', 'both']]) {
    const r = await runCli(['protect', 'clinic.notes', ...again], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
  }
  const switched = await withClient(
    db.url,
    async (c) =>
      (await c.query<{ statement: string }>(`SELECT statement FROM audit.audit_log WHERE action = 'ROW READS' AND table_name = 'notes' ORDER BY id`)).rows,
  );
  expect(switched.map((r) => r.statement)).toEqual(['every row read is recorded with its key (id), through the replication slot']);
});

describe('protect --reads both', () => {
  it('records each row a read returns, with its key, login, role and the settings of that moment; exactly what was seen', async () => {
    const archive = await newArchive();
    await drain(archive); // the slot exists from here

    // A lookup by key, and a range: the rows returned, no other.
    const pk = await as('app_login', 'case-pk', async (c) => (await c.query('SELECT body FROM clinic.notes WHERE id = 7')).rowCount, {
      'app.user_id': 'dr.alice',
      'app.customer_id': '7',
    });
    const range = await as('app_login', 'case-range', async (c) => (await c.query('SELECT id FROM clinic.notes WHERE id BETWEEN 10 AND 19')).rowCount);
    // Under the example's own policy (customer isolation): the customer sees their row only, as without
    // row reads, and only that row is recorded as read (the audit part runs after the table's policy).
    const isolated = await as('app_login', 'case-rls', async (c) => (await c.query('SELECT id FROM customers')).rows.map((r: { id: number }) => r.id), {
      'app.customer_id': '23',
    });
    // A read in a read-only transaction that rolls back happened all the same.
    await as('app_login', 'case-rollback', async (c) => {
      await c.query('BEGIN READ ONLY');
      await c.query('SELECT body FROM clinic.notes WHERE id = 3');
      await c.query('ROLLBACK');
    });
    // The role in effect is the one the session SET, the login stays the login.
    await as('app_login', 'case-setrole', async (c) => {
      await c.query('SET ROLE phi_app');
      await c.query('SELECT body FROM clinic.notes WHERE id = 8');
    });
    // The table's owner is no exception (row-level security is forced for owners too).
    const owned = await as(OWNER, 'case-owner', async (c) => (await c.query('SELECT body FROM clinic.notes WHERE id = 5')).rowCount);
    // A superuser skips row-level security: no row event (pgaudit's statement path still has the read).
    await as('postgres', 'case-superuser', (c) => c.query('SELECT body FROM clinic.notes WHERE id = 6'));
    expect([pk, range, owned]).toEqual([1, 10, 1]);
    expect(isolated).toEqual([23]);

    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    const seen = (app: string) =>
      readsOf(records, app).map((r) => [r.schema_name, r.table_name, r.row_id, r.session_user_name, r.app_user_id ?? null, r.app_customer_id ?? null]);
    expect(seen('case-pk')).toEqual([['clinic', 'notes', '7', 'app_login', 'dr.alice', '7']]);
    expect(readsOf(records, 'case-range').map((r) => r.row_id)).toEqual(['10', '11', '12', '13', '14', '15', '16', '17', '18', '19']);
    expect(seen('case-rls')).toEqual([['public', 'customers', '23', 'app_login', null, '23']]);
    expect(seen('case-rollback')).toEqual([['clinic', 'notes', '3', 'app_login', null, null]]);
    expect(seen('case-owner')).toEqual([['clinic', 'notes', '5', OWNER, null, null]]);
    expect(seen('case-superuser')).toEqual([]);
    expect(readsOf(records, 'case-setrole').map((r) => [r.row_id, r.session_user_name, r.current_role_name])).toEqual([['8', 'app_login', 'phi_app']]);
    const pkRead = readsOf(records, 'case-pk')[0]!;
    expect(pkRead).toMatchObject({ source: 'row-read', action: 'SELECT', outcome: 'success', current_role_name: 'app_login' });
    expect(Math.abs(Date.parse(String(pkRead.occurred_at).replace(' ', 'T').replace('+00', 'Z')) - Date.now())).toBeLessThan(120_000);

    // query finds them by row and by customer, verified like every answer.
    const byRow = await queryJson(archive, ['--table', 'clinic.notes', '--row-id', '7']);
    expect(byRow.filter((e) => e.source === 'row-read').map((e) => [e.action, e.row_id, e.app_user_id])).toEqual([['SELECT', '7', 'dr.alice']]);
    const byCustomer = await queryJson(archive, ['--customer', '23', '--source', 'row-read']);
    expect(byCustomer.map((e) => e.row_id)).toEqual(['23']);
    const verified = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
    expect(verified.code, verified.stdout).toBe(0);
  });

  it("an application can neither write read messages nor call the policy's function; a role that can records its own login", async () => {
    const archive = await newArchive();
    await drain(archive);
    await as('app_login', 'case-forge', async (c) => {
      await expect(
        c.query(`SELECT pg_logical_emit_message(false, 'pg-audit-shipper/read', '{"s":"clinic","t":"notes","k":"1","su":"dr.mallory"}')`),
      ).rejects.toThrow(/permission denied for function pg_logical_emit_message/);
    });
    // Nor call the policy's function by hand: it cannot even name it (no USAGE on schema audit; the
    // policy holds the function by its oid, and EXECUTE is PUBLIC's so that it runs for every reader).
    await as('app_login', 'case-by-hand', async (c) => {
      await expect(c.query(`SELECT audit.note_read('clinic.notes'::regclass::oid, '999')`)).rejects.toThrow(/permission denied for schema audit/);
    });
    // A role that may use schema audit (here the ingester's) can, but the login recorded is the
    // caller's own, computed inside: a made-up read incriminates only its maker.
    const notes = await withClient(db.url, async (c) => (await c.query<{ oid: string }>(`SELECT 'clinic.notes'::regclass::oid::text AS oid`)).rows[0]!.oid);
    await as('ingest_login', 'case-by-hand', (c) => c.query(`SELECT audit.note_read($1::oid, '999')`, [notes]));
    await drain(archive);
    const { records } = await readArchive(archive, keys.keys);
    expect(readsOf(records, 'case-forge')).toEqual([]);
    expect(readsOf(records, 'case-by-hand').map((r) => [r.row_id, r.session_user_name])).toEqual([['999', 'ingest_login']]);
  });

  it("a read inside the owner's SECURITY DEFINER function, granted to the application, is recorded row by row with the caller's login; pgaudit does not log it", async () => {
    // The table's owner hands the application a function that reads the table as the owner. pgaudit
    // logs no object read for it unless the function's creator calls it (pgaudit/pgaudit#157); the
    // policy runs for the owner too (row-level security is forced), so each row returned is a read.
    await as(OWNER, 'case-definer-setup', async (c) => {
      await c.query(
        `CREATE FUNCTION clinic.peek(n int) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
           AS $$ SELECT body FROM clinic.notes WHERE id = n $$`,
      );
      await c.query('GRANT EXECUTE ON FUNCTION clinic.peek(int) TO phi_app');
    });
    const archive = await newArchive();
    await drain(archive);
    const body = await as('app_login', 'case-definer', async (c) => (await c.query<{ b: string }>('SELECT clinic.peek(42) AS b')).rows[0]!.b, {
      'app.user_id': 'dr.eve',
    });
    expect(body).toBe('note 42');
    // A read of the table by statement after it: once its line is ingested, a line for the read
    // above would have been too (the server writes its log in order).
    await as('app_login', 'case-definer-marker', (c) => c.query('SELECT body FROM clinic.notes WHERE id = 43'));
    const pgaudit = (app: string) =>
      withClient(
        db.url,
        async (c) =>
          (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'pgaudit' AND application_name = $1`, [app])).rows[0]!.n,
      );
    await ingestPast(() => pgaudit('case-definer-marker'), 0);
    expect(await pgaudit('case-definer')).toBe(0);
    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(readsOf(records, 'case-definer').map((r) => [r.table_name, r.row_id, r.session_user_name, r.current_role_name, r.app_user_id])).toEqual([
      // The role recorded is the one the session acts as (its SET ROLE, else its login), as for writes: not the function's owner.
      ['notes', '42', 'app_login', 'app_login', 'dr.eve'],
    ]);
  });

  it("keeps a transaction's first event when its commit record follows a read (the read's LSN is the transaction's commit LSN)", async () => {
    // PostgreSQL gives a message the LSN where its record ends, where the next record begins: an
    // UPDATE then a read of the row in one transaction puts the commit record right after the read.
    // When both stood at (LSN, 0), the UPDATE's event was skipped as already stored. Another session's
    // WAL may slip in between (this suite runs files in parallel), so the case is made until it happens.
    const archive = await newArchive();
    await drain(archive);
    const rounds = 5;
    for (let i = 0; i < rounds; i++) {
      await as(
        'app_login',
        `case-write-read-${i}`,
        async (c) => {
          await c.query('BEGIN');
          await c.query(`UPDATE customers SET full_name = full_name || '.' WHERE id = 24`);
          await c.query('SELECT full_name FROM customers WHERE id = 24');
          await c.query('COMMIT');
        },
        { 'app.customer_id': '24' },
      );
    }
    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    const updates = records.filter((r) => r.op === 'insert' && r.action === 'UPDATE' && r.row_id === '24');
    const reads = records.filter((r) => r.op === 'read' && String(r.application_name).startsWith('case-write-read-'));
    expect(updates).toHaveLength(rounds); // one lost per coinciding round before the fix
    // The SELECT's read of row 24 (the UPDATE's own reads of the row are recorded too, before it).
    const coinciding = reads.filter((r) => updates.some((u) => u.lsn === r.lsn));
    expect(coinciding.length, 'no round had its commit record right after its read: the case was not made').toBeGreaterThan(0);
    for (const r of coinciding) expect(r.idx).toBe(-1);
  });

  it('a read right after one whose file was stored and confirmed survives a crash of the shipper before its own file is stored', async () => {
    // Two rows read by one statement: two messages, the second beginning where the first ends. The
    // shipper stores the first (one record a file), confirms it, and dies while storing the second.
    // The server skips, after a restart, every message beginning before the confirmed position, so
    // confirming one byte past the first lost the second (the kill -9 test's 399 of 400, once).
    const archive = await newArchive();
    await drain(archive);
    await as('app_login', 'case-confirm', (c) => c.query('SELECT body FROM clinic.notes WHERE id IN (31, 32) ORDER BY id'));
    const real = await openArchive(`file://${archive}`, { forcePathStyle: false, sse: 'none', retention: { days: 1 } });
    let dataPuts = 0;
    const crashed: Archive = {
      ...real,
      sink: { put: (obj) => (obj.key.startsWith('data/') && ++dataPuts > 1 ? new Promise(() => undefined) : real.sink.put(obj)) },
    };
    const stop = new AbortController();
    const running = shipInProcess({
      databaseUrl: urlFor(db.name, 'ship_login'),
      archive: crashed,
      key: await loadSigningKey(keys.signingKey),
      verifyKeys: [],
      slot: slots.get(archive)!,
      limits: { maxRecords: 1, maxBytes: 1 << 20, maxAgeMs: 200 },
      maxInflightBytes: 64 << 20,
      heartbeatMs: 3_600_000,
      drain: false,
      graceMs: 500,
      log: createLogger('silent'),
      metrics: createMetrics(),
      signal: stop.signal,
      statementMaxLength: 2000,
    }).catch((err: unknown) => err);
    try {
      const first = await expect
        .poll(async () => readsOf((await readArchive(archive, keys.keys)).records, 'case-confirm'), { timeout: 10_000, interval: 100 })
        .toHaveLength(1)
        .then(async () => readsOf((await readArchive(archive, keys.keys)).records, 'case-confirm')[0]!);
      expect(first.row_id).toBe('31');
      const confirmedPast = () =>
        withClient(
          db.url,
          async (c) =>
            (
              await c.query<{ past: boolean }>('SELECT confirmed_flush_lsn >= $2::pg_lsn AS past FROM pg_replication_slots WHERE slot_name = $1', [
                slots.get(archive),
                first.lsn,
              ])
            ).rows[0]!.past,
        );
      // The first read is confirmed (its file is stored) before the shipper dies storing the second.
      await expect.poll(confirmedPast, { timeout: 10_000, interval: 100 }).toBe(true);
    } finally {
      stop.abort();
      await running;
    }
    await sleep(1500); // a slot whose walsender went away stays active a moment
    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(readsOf(records, 'case-confirm').map((r) => r.row_id)).toEqual(['31', '32']);
  });

  it('ship --drain ships a read made just before it, though nothing has flushed its WAL yet', async () => {
    // A read in a transaction that rolls back leaves its message in WAL buffers, unflushed, so not
    // streamed yet. A drain ends at the server's write position taken after its start-up attestation,
    // whose commit flushes everything before it: so the read is in, with no shipper running meanwhile.
    const archive = await newArchive();
    await drain(archive);
    for (let round = 0; round < 3; round++) {
      await as('app_login', `case-drain-${round}`, async (c) => {
        await c.query('BEGIN READ ONLY');
        await c.query('SELECT body FROM clinic.notes WHERE id = $1', [100 + round]);
        await c.query('ROLLBACK');
      });
      await drain(archive);
      const { records } = await readArchive(archive, keys.keys);
      expect(readsOf(records, `case-drain-${round}`).map((r) => r.row_id)).toEqual([String(100 + round)]);
    }
  });

  it('a read on a quiet server reaches the archive within seconds while the shipper runs', async () => {
    // The first test of row reads with a running shipper (the others drain). The read's transaction
    // rolls back, so PostgreSQL 15 does not ask for its WAL to be flushed: the shipper's once-a-second
    // flush does (src/ship/shipper.ts). Without it the read still arrives, later: whatever else flushes
    // the cluster's WAL (3-10 s on a quiet server, measured), so this checks the promise, not the timing.
    const archive = await newArchive();
    await drain(archive);
    const child = startCli(ship(archive), { DATABASE_URL: urlFor(db.name, 'ship_login') });
    const done = waitFor(child);
    try {
      await sleep(1500); // streaming
      await as('app_login', 'case-quiet', async (c) => {
        await c.query('BEGIN READ ONLY');
        await c.query('SELECT body FROM clinic.notes WHERE id = 42');
        await c.query('ROLLBACK');
      });
      await expect
        .poll(async () => readsOf((await readArchive(archive, keys.keys)).records, 'case-quiet').map((r) => r.row_id), { timeout: 8000, interval: 250 })
        .toEqual(['42']);
    } finally {
      child.kill('SIGTERM');
      await done;
    }
  });

  it('archives every row read exactly once while the shipper is killed (kill -9) and restarted', async () => {
    const archive = await newArchive();
    await drain(archive);
    let next = 1;
    const reading = (async () => {
      await as('app_login', 'case-kill', async (c) => {
        for (; next <= 400; next++) {
          await c.query('SELECT body FROM clinic.notes WHERE id = $1', [next]);
          if (next % 20 === 0) await sleep(25);
        }
      });
    })();
    reading.catch(() => undefined); // awaited below; not unhandled meanwhile
    for (let kills = 0; kills < 4; kills++) {
      const child = startCli(ship(archive, ['--batch-max-records', '25']), { DATABASE_URL: urlFor(db.name, 'ship_login') });
      const done = waitFor(child);
      await sleep(300 + Math.floor(Math.random() * 500));
      child.kill('SIGKILL');
      await done;
    }
    await reading;
    await sleep(1500); // a slot whose walsender was killed stays active a moment
    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    const ids = readsOf(records, 'case-kill').map((r) => Number(r.row_id));
    // Which, if any, so a failure says where to look (one fresh-clone run on Node 24 under load had 399).
    const missing = Array.from({ length: 400 }, (_, i) => i + 1).filter((i) => !ids.includes(i));
    const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
    const around = records
      .filter((r) => r.op === 'read' && missing.some((m) => Math.abs(Number(r.row_id) - m) <= 1))
      .map((r) => `${String(r.row_id)}@${r.lsn}#${r.idx}`);
    expect(ids.length, `read records (none twice): missing ${missing.join(',') || 'none'}, twice ${twice.join(',') || 'none'}; near: ${around.join(' ')}`).toBe(
      400,
    );
    expect(ids).toEqual(Array.from({ length: 400 }, (_, i) => i + 1)); // once each, in the order read
  });
});

describe('protect --reads rows', () => {
  const pgauditReads = (table: string) =>
    withClient(
      db.url,
      async (c) =>
        (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'pgaudit' AND table_name = $1`, [table])).rows[0]!.n,
    );

  beforeAll(async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE TABLE clinic.scans (id int PRIMARY KEY, body text)');
      await c.query(`INSERT INTO clinic.scans SELECT g, 'scan ' || g FROM generate_series(1, 50) g`);
      await c.query(`ALTER TABLE clinic.scans OWNER TO ${OWNER}`);
      await c.query('GRANT SELECT ON clinic.scans TO phi_app');
    });
    const r = await runCli(['protect', 'clinic.scans', '--reads', 'rows'], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('protected clinic.scans (reads recorded: rows)\n');
    expect(r.stderr).toMatch(/: with --reads rows they are not recorded at all \(--reads both keeps their statements\)\n$/);
  });

  it('records each row read through the slot, and pgaudit no statement (no grant, no read-context line per scan)', async () => {
    const archive = await newArchive();
    await drain(archive);
    await as('app_login', 'case-rows-only', (c) => c.query('SELECT body FROM clinic.scans WHERE id BETWEEN 3 AND 5'), { 'app.customer_id': '3' });
    // A superuser skips row-level security, and with rows only there is no statement either: this
    // read is recorded nowhere (the trust model says so; `protect` warned above).
    await as('postgres', 'case-rows-superuser', (c) => c.query('SELECT body FROM clinic.scans WHERE id = 9'));
    // pgaudit logs a later read of a table with statements; once that line is ingested, a line for
    // the reads above would have been too (the server writes its log in order).
    const before = await pgauditReads('notes');
    await as('app_login', 'case-rows-marker', (c) => c.query('SELECT body FROM clinic.notes WHERE id = 1'));
    await ingestPast(() => pgauditReads('notes'), before);
    expect(await pgauditReads('scans')).toBe(0);
    const setup = await withClient(db.url, async (c) => {
      const { rows } = await c.query<{ grant: boolean; qual: string; statement_reads: boolean }>(
        `SELECT has_table_privilege('audit_auditor', 'clinic.scans', 'SELECT') AS grant, pg_get_expr(polqual, polrelid) AS qual, pt.statement_reads
           FROM pg_policy JOIN audit.protected_tables pt ON pt.relid = polrelid WHERE polrelid = 'clinic.scans'::regclass AND polname = 'audit_read_context'`,
      );
      return rows[0];
    });
    expect(setup).toEqual({ grant: false, qual: expect.stringMatching(/^audit\.note_read\('\d+'::oid, \(id\)::text\)$/), statement_reads: false });

    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(readsOf(records, 'case-rows-only').map((r) => [r.table_name, r.row_id, r.app_customer_id])).toEqual([
      ['scans', '3', '3'],
      ['scans', '4', '3'],
      ['scans', '5', '3'],
    ]);
    expect(readsOf(records, 'case-rows-superuser')).toEqual([]);
  });

  it("the table's owner can neither take the policy's row part off nor need pgaudit's grant back; protecting again keeps rows only", async () => {
    await withClient(urlFor(db.name, OWNER), async (c) => {
      for (const sql of [
        'ALTER POLICY audit_read_context ON clinic.scans USING (true)',
        'ALTER TABLE clinic.scans NO FORCE ROW LEVEL SECURITY',
        'DROP POLICY audit_read_context ON clinic.scans',
      ]) {
        await expect(c.query(sql), sql).rejects.toThrow(
          /refused: clinic\.scans is protected by pg-audit-shipper and its row-level security policy audit_read_context/,
        );
      }
      await c.query("COMMENT ON TABLE clinic.scans IS 'scans'"); // other DDL passes the guard: a missing grant is not a finding here
    });
    const r = await runCli(['protect', 'clinic.scans'], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    const mode = await withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ statement_reads: boolean; rows: boolean; grant: boolean }>(
            `SELECT statement_reads, row_reads IS NOT NULL AS rows, has_table_privilege('audit_auditor', relid, 'SELECT') AS grant FROM audit.protected_tables WHERE relid = 'clinic.scans'::regclass`,
          )
        ).rows[0],
    );
    expect(mode).toEqual({ statement_reads: false, rows: true, grant: false });
  });

  it('switches between rows, both and statements, one protection event per change', async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE TABLE clinic.labs (id int PRIMARY KEY, body text)');
    });
    const events = () =>
      withClient(db.url, async (c) =>
        (
          await c.query<{ action: string }>(
            `SELECT action FROM audit.audit_log WHERE table_name = 'labs' AND action IN ('ROW READS', 'STATEMENT READS') ORDER BY id`,
          )
        ).rows.map((r) => r.action),
      );
    const modeOf = () =>
      withClient(
        db.url,
        async (c) =>
          (
            await c.query<{ statements: boolean; rows: boolean; grant: boolean }>(
              `SELECT statement_reads AS statements, row_reads IS NOT NULL AS rows, has_table_privilege('audit_auditor', relid, 'SELECT') AS grant
                 FROM audit.protected_tables WHERE relid = 'clinic.labs'::regclass`,
            )
          ).rows[0],
      );
    // Each step: the arguments, the mode it leaves, the events it adds, and what `protect` says.
    const steps: [string[], { statements: boolean; rows: boolean; grant: boolean }, string[], string][] = [
      // Not protected before: PROTECT, then rows instead of the first protection's statements.
      [['--reads', 'rows'], { statements: false, rows: true, grant: false }, ['ROW READS', 'STATEMENT READS'], '(reads recorded: rows)'],
      [['--reads', 'rows'], { statements: false, rows: true, grant: false }, [], '(reads recorded: rows)'],
      [['--reads', 'both'], { statements: true, rows: true, grant: true }, ['STATEMENT READS'], '(reads recorded: both, were rows)'],
      [['--reads', 'statements'], { statements: true, rows: false, grant: true }, ['ROW READS'], '(reads recorded: statements, were both)'],
      [['--reads', 'rows'], { statements: false, rows: true, grant: false }, ['ROW READS', 'STATEMENT READS'], '(reads recorded: rows, were statements)'],
      [['--reads', 'statements'], { statements: true, rows: false, grant: true }, ['ROW READS', 'STATEMENT READS'], '(reads recorded: statements, were rows)'],
      [['--reads', 'rows'], { statements: false, rows: true, grant: false }, ['ROW READS', 'STATEMENT READS'], '(reads recorded: rows, were statements)'],
      // Taking the policy off takes the rows with it: said, not only recorded.
      [
        ['--read-context', 'off'],
        { statements: true, rows: false, grant: true },
        ['ROW READS', 'STATEMENT READS'],
        '(reads not attributed: --read-context off) (reads recorded: statements, were rows)',
      ],
      [[], { statements: true, rows: false, grant: true }, [], ''],
    ];
    let seen = await events();
    for (const [args, mode, added, said] of steps) {
      const r = await runCli(['protect', 'clinic.labs', ...args], { DATABASE_URL: db.url });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout, args.join(' ')).toBe(`protected clinic.labs${said ? ` ${said}` : ''}\n`);
      expect(await modeOf(), args.join(' ')).toEqual(mode);
      const now = await events();
      expect(now.slice(seen.length).sort(), args.join(' ')).toEqual(added);
      seen = now;
    }
  });

  it('follows a rename of the table and of its key column (the policy holds both by number): reads are still recorded, under the new names', async () => {
    const archive = await newArchive();
    await drain(archive);
    await withClient(urlFor(db.name, OWNER), async (c) => {
      await c.query('ALTER TABLE clinic.scans RENAME COLUMN id TO scan_id');
      await c.query('ALTER TABLE clinic.scans RENAME TO imaging');
    });
    await as('app_login', 'case-renamed', (c) => c.query('SELECT body FROM clinic.imaging WHERE scan_id = 8'));
    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(readsOf(records, 'case-renamed').map((r) => [r.table_name, r.row_id])).toEqual([['imaging', '8']]);
    const renames = records.filter((r) => r.action === 'KEY RENAMED' || (r.action === 'RENAME' && r.table_name === 'imaging')).map((r) => r.action);
    expect(renames).toEqual(['KEY RENAMED', 'RENAME']);
    // And the guard still holds the policy as it was made.
    await withClient(urlFor(db.name, OWNER), async (c) => {
      await expect(c.query('ALTER POLICY audit_read_context ON clinic.imaging USING (true)')).rejects.toThrow(/refused: clinic\.imaging is protected/);
    });
  });

  it('refuses what would leave reads unrecorded or recorded only in part, saying why', async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE TABLE clinic.stays (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)');
      await c.query("CREATE TABLE clinic.stays_2026 PARTITION OF clinic.stays FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
    });
    // A partition protected on its own: a read through its (unprotected) partitioned table checks
    // only that table's policies, so its rows would go unrecorded without pgaudit's statements.
    const partition = await runCli(['protect', 'clinic.stays_2026', '--reads', 'rows'], { DATABASE_URL: db.url });
    expect(partition.code).toBe(2);
    expect(partition.stderr).toMatch(
      /reads of clinic\.stays_2026 must keep their statements \(pgaudit\): it is protected on its own, .* protect that table instead/,
    );
    const noPolicy = await runCli(['protect', 'clinic.scans', '--reads', 'rows', '--read-context', 'off'], { DATABASE_URL: db.url });
    expect(noPolicy.code).toBe(2);
    expect(noPolicy.stderr).toMatch(/--reads rows records rows through the policy that --read-context on installs/);
    // Nothing changed by either.
    const listed = await withClient(
      db.url,
      async (c) =>
        (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit.protected_tables WHERE relid = 'clinic.stays_2026'::regclass`)).rows[0]!.n,
    );
    expect(listed).toBe(0);
  });
});

describe('protect --reads rows on a partitioned table', () => {
  /** The policy audit_read_context of each relation, and whether its row-level security is on and forced. */
  const policies = (names: string[]) =>
    withClient(
      db.url,
      async (c) =>
        (
          await c.query<{ rel: string; policy: string | null; rls: boolean; forced: boolean; auditor: boolean }>(
            `SELECT r::text AS rel, (SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = r AND polname = 'audit_read_context') AS policy,
                  c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, has_table_privilege('audit_auditor', r, 'SELECT') AS auditor
             FROM unnest($1::regclass[]) WITH ORDINALITY AS u(r, o) JOIN pg_class c ON c.oid = r ORDER BY o`,
            [names],
          )
        ).rows,
    );

  it('records every row read, through the partitioned table or a partition by its own name (one created later too), with the partition; the owner cannot take a partition out', async () => {
    await withClient(db.url, async (c) => {
      await c.query('CREATE TABLE clinic.visits (id int, at date, body text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)');
      await c.query("CREATE TABLE clinic.visits_2025 PARTITION OF clinic.visits FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')");
      await c.query(`INSERT INTO clinic.visits SELECT g, date '2025-03-01' + g, 'v' || g FROM generate_series(1, 5) g`);
      await c.query(`ALTER TABLE clinic.visits OWNER TO ${OWNER}`);
      await c.query(`ALTER TABLE clinic.visits_2025 OWNER TO ${OWNER}`);
      await c.query('GRANT SELECT ON clinic.visits, clinic.visits_2025 TO phi_app');
    });
    const r = await runCli(['protect', 'clinic.visits', '--reads', 'rows'], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    const archive = await newArchive();
    await drain(archive);
    // The owner adds a partition: it is covered as it is created, its policy included.
    await withClient(urlFor(db.name, OWNER), async (c) => {
      await c.query("CREATE TABLE clinic.visits_2026 PARTITION OF clinic.visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
      await c.query(`INSERT INTO clinic.visits VALUES (6, '2026-02-01', 'v6'), (7, '2026-02-02', 'v7')`);
      await c.query('GRANT SELECT ON clinic.visits_2026 TO phi_app');
    });
    expect(await policies(['clinic.visits', 'clinic.visits_2025', 'clinic.visits_2026'])).toEqual([
      {
        rel: 'clinic.visits',
        policy: "audit.note_read('" + (await oidOf('clinic.visits')) + "'::oid, concat_ws(','::text, (id)::text, (at)::text), tableoid)",
        rls: true,
        forced: true,
        auditor: false,
      },
      {
        rel: 'clinic.visits_2025',
        policy: "audit.note_read('" + (await oidOf('clinic.visits')) + "'::oid, concat_ws(','::text, (id)::text, (at)::text), tableoid)",
        rls: true,
        forced: true,
        auditor: false,
      },
      {
        rel: 'clinic.visits_2026',
        policy: "audit.note_read('" + (await oidOf('clinic.visits')) + "'::oid, concat_ws(','::text, (id)::text, (at)::text), tableoid)",
        rls: true,
        forced: true,
        auditor: false,
      },
    ]);

    // Through the partitioned table (rows of both partitions), and each partition by its own name.
    await as('app_login', 'case-part-parent', (c) => c.query('SELECT body FROM clinic.visits WHERE id IN (2, 6)'), { 'app.customer_id': '41' });
    await as('app_login', 'case-part-direct', (c) => c.query('SELECT body FROM clinic.visits_2026 WHERE id = 7'));
    await as('app_login', 'case-part-range', (c) => c.query('SELECT body FROM clinic.visits_2025 WHERE id BETWEEN 3 AND 4'));
    await as(OWNER, 'case-part-owner', (c) => c.query('SELECT body FROM clinic.visits_2025 WHERE id = 5'));

    // What would let the partition's reads go unrecorded is refused, as on any protected table.
    await withClient(urlFor(db.name, OWNER), async (c) => {
      for (const attempt of [
        'DROP POLICY audit_read_context ON clinic.visits_2026',
        'ALTER POLICY audit_read_context ON clinic.visits_2025 USING (true)',
        'ALTER TABLE clinic.visits_2026 DISABLE ROW LEVEL SECURITY',
        'ALTER TABLE clinic.visits_2026 NO FORCE ROW LEVEL SECURITY',
        'CREATE POLICY mine ON clinic.visits_2025 USING (true)',
      ]) {
        await expect(c.query(attempt), attempt).rejects.toThrow(/refused: clinic\.visits_20(25|26) is protected by pg-audit-shipper/);
      }
    });

    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    const seen = (app: string) => readsOf(records, app).map((x) => [x.table_name, x.relation_name ?? null, x.row_id, x.app_customer_id ?? null]);
    expect(seen('case-part-parent')).toEqual([
      ['visits', 'clinic.visits_2025', '2,2025-03-03', '41'],
      ['visits', 'clinic.visits_2026', '6,2026-02-01', '41'],
    ]);
    expect(seen('case-part-direct')).toEqual([['visits', 'clinic.visits_2026', '7,2026-02-02', null]]);
    expect(seen('case-part-range')).toEqual([
      ['visits', 'clinic.visits_2025', '3,2025-03-04', null],
      ['visits', 'clinic.visits_2025', '4,2025-03-05', null],
    ]);
    expect(seen('case-part-owner')).toEqual([['visits', 'clinic.visits_2025', '5,2025-03-06', null]]);
    // Protect's own steps on the new partition are not recorded as the owner's commands: the trail
    // says the owner created it and that it was covered.
    const writes = new Set(['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']);
    const events = records
      .filter((x) => x.op === 'insert' && x.table_name === 'visits' && !writes.has(String(x.action)))
      .map((x) => [x.action, x.relation_name ?? null]);
    expect(events).toEqual([
      ['PROTECT', null],
      ['PARTITION', 'clinic.visits_2025'],
      ['ROW READS', null],
      ['STATEMENT READS', null],
      ['PARTITION', 'clinic.visits_2026'],
      ['CREATE TABLE', 'clinic.visits_2026'],
    ]);
    expect(records.find((x) => x.action === 'ROW READS' && x.table_name === 'visits')?.statement).toBe(
      'every row read is recorded with its key (id, at) and its partition, through the replication slot; its partitions, present and future, record theirs alike',
    );
    // query finds them under the partition's name too.
    const byPartition = await queryJson(archive, ['--table', 'visits_2026', '--source', 'row-read']);
    expect(byPartition.map((e) => e.row_id)).toEqual(['6,2026-02-01', '7,2026-02-02']);
  });

  it("a detached partition keeps recording its rows, under its own name; statements again, and unprotect, take the partitions' policies away", async () => {
    const archive = await newArchive();
    await drain(archive);
    await withClient(urlFor(db.name, OWNER), (c) => c.query('ALTER TABLE clinic.visits DETACH PARTITION clinic.visits_2025'));
    await as('app_login', 'case-detached', (c) => c.query('SELECT body FROM clinic.visits_2025 WHERE id = 1'));
    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    expect(readsOf(records, 'case-detached').map((x) => [x.table_name, x.relation_name ?? null, x.row_id])).toEqual([['visits_2025', null, '1,2025-03-02']]);
    expect(records.filter((x) => x.table_name === 'visits_2025' && x.op === 'insert').map((x) => [x.action, x.statement])).toEqual([
      ['DETACH', expect.stringMatching(/^no longer a partition of clinic\.visits; still protected: ALTER TABLE clinic\.visits DETACH PARTITION/)],
      ['ROW READS', 'every row read is recorded with its key (id, at), through the replication slot'],
    ]);

    // A table the owner attaches is covered like one created as a partition, its policy included.
    await withClient(urlFor(db.name, OWNER), async (c) => {
      await c.query('CREATE TABLE clinic.visits_2027 (LIKE clinic.visits)');
      await c.query("ALTER TABLE clinic.visits ATTACH PARTITION clinic.visits_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')");
    });
    const [parent, attached] = await policies(['clinic.visits', 'clinic.visits_2027']);
    expect(attached).toEqual({ ...parent, rel: 'clinic.visits_2027' });
    // A table with row-level security of its own, not forced, would let its owner read it by name
    // unrecorded: attaching it is refused; forced, it is covered, the policy restrictive beside its own.
    await withClient(urlFor(db.name, OWNER), async (c) => {
      await c.query('CREATE TABLE clinic.visits_2028 (LIKE clinic.visits)');
      await c.query('ALTER TABLE clinic.visits_2028 ENABLE ROW LEVEL SECURITY');
      await c.query('CREATE POLICY own ON clinic.visits_2028 USING (true)');
      const attach = "ALTER TABLE clinic.visits ATTACH PARTITION clinic.visits_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')";
      await expect(c.query(attach)).rejects.toThrow(
        /refused: clinic\.visits records its rows read, and its partition clinic\.visits_2028 has row-level security that is not forced/,
      );
      await c.query('ALTER TABLE clinic.visits_2028 FORCE ROW LEVEL SECURITY');
      await c.query(attach);
      await expect(c.query('ALTER TABLE clinic.visits_2028 NO FORCE ROW LEVEL SECURITY')).rejects.toThrow(/refused: clinic\.visits_2028 is protected/);
    });
    expect((await policies(['clinic.visits_2028']))[0]).toEqual({ ...parent, rel: 'clinic.visits_2028' });

    const back = await runCli(['protect', 'clinic.visits', '--reads', 'statements'], { DATABASE_URL: db.url });
    expect(back.code, back.stderr).toBe(0);
    expect(await policies(['clinic.visits', 'clinic.visits_2026', 'clinic.visits_2027', 'clinic.visits_2028'])).toEqual([
      { rel: 'clinic.visits', policy: '( SELECT audit.read_context() AS read_context)', rls: true, forced: true, auditor: true },
      { rel: 'clinic.visits_2026', policy: null, rls: false, forced: false, auditor: true },
      { rel: 'clinic.visits_2027', policy: null, rls: false, forced: false, auditor: true },
      { rel: 'clinic.visits_2028', policy: null, rls: true, forced: true, auditor: true },
    ]);
    expect((await runCli(['protect', 'clinic.visits', '--reads', 'both'], { DATABASE_URL: db.url })).code).toBe(0);
    expect((await policies(['clinic.visits_2026']))[0]!.policy).toMatch(/^\(\( SELECT audit\.read_context\(\) AS read_context\) AND audit\.note_read\(/);
    for (const table of ['clinic.visits', 'clinic.visits_2025']) {
      const u = await runCli(['unprotect', table], { DATABASE_URL: db.url });
      expect(u.code, u.stderr).toBe(0);
    }
    expect(await policies(['clinic.visits', 'clinic.visits_2025', 'clinic.visits_2026', 'clinic.visits_2027'])).toEqual(
      ['clinic.visits', 'clinic.visits_2025', 'clinic.visits_2026', 'clinic.visits_2027'].map((rel) => ({
        rel,
        policy: null,
        rls: false,
        forced: false,
        auditor: false,
      })),
    );
  });
});

const oidOf = (name: string) => withClient(db.url, async (c) => (await c.query<{ oid: string }>('SELECT $1::regclass::oid::text AS oid', [name])).rows[0]!.oid);

describe('an upgrade from version 8 (object messages, the policy held by its text)', () => {
  it('reads messages written before and after it alike, and keeps guarding the policy, now by its tree', async () => {
    const archive = await newArchive();
    await withClient(db.url, async (c) => {
      await c.query('CREATE TABLE clinic.legacy (id int PRIMARY KEY, body text)');
      await c.query(`INSERT INTO clinic.legacy SELECT g, 'old ' || g FROM generate_series(1, 20) g`);
      await c.query(`ALTER TABLE clinic.legacy OWNER TO ${OWNER}`);
      await c.query('GRANT SELECT ON clinic.legacy TO phi_app');
    });
    expect((await runCli(['protect', 'clinic.legacy', '--reads', 'both'], { DATABASE_URL: db.url })).code).toBe(0);
    await drain(archive);
    // Back to version 8 as it was installed: its functions, and every table's row reads held by the
    // policy's text (version 8's set_row_reads made the same policy as --reads both does).
    const v8 = await readFile(new URL('../../sql/migrations/008_row_reads.sql', import.meta.url), 'utf8');
    let later: string[] = [];
    await withClient(db.url, async (c) => {
      await c.query('BEGIN');
      await c.query('ALTER EVENT TRIGGER audit_guard_protected_ddl DISABLE'); // no DDL guard while the clock goes back
      later = (
        await c.query<{ id: string }>(`DELETE FROM audit.schema_migrations WHERE id > 'migrations/008_row_reads' AND id LIKE 'migrations/%' RETURNING id`)
      ).rows
        .map((m) => m.id)
        .sort();
      await c.query(`UPDATE audit.protected_tables pt SET row_reads = (SELECT pg_get_expr(polqual, polrelid) FROM pg_policy
                      WHERE polrelid = pt.relid AND polname = 'audit_read_context') WHERE row_reads IS NOT NULL`);
      await c.query(v8);
      await c.query('ALTER EVENT TRIGGER audit_guard_protected_ddl ENABLE ALWAYS');
      await c.query('COMMIT');
    });
    await as('app_login', 'case-v8', (c) => c.query('SELECT body FROM clinic.legacy WHERE id = 4'), { 'app.user_id': 'dr.old' });
    const up = await runCli(['init'], { DATABASE_URL: db.url });
    expect(up.code, up.stderr).toBe(0);
    expect(later[0]).toBe('migrations/009_row_reads_only');
    expect(up.stdout).toBe(`applied ${later.join(', ')}\n`);
    await as('app_login', 'case-v9', (c) => c.query('SELECT body FROM clinic.legacy WHERE id = 4'), { 'app.user_id': 'dr.new' });
    await withClient(urlFor(db.name, OWNER), async (c) => {
      await c.query('ALTER TABLE clinic.legacy RENAME COLUMN id TO legacy_id'); // followed
      await expect(c.query('ALTER POLICY audit_read_context ON clinic.legacy USING (true)')).rejects.toThrow(/refused: clinic\.legacy is protected/);
    });
    await drain(archive);
    const { report, records } = await readArchive(archive, keys.keys);
    expect(report.findings).toEqual([]);
    const fields = (r: ArchivedRecord) => [r.schema_name, r.table_name, r.row_id, r.session_user_name, r.current_role_name, r.app_user_id, r.malformed ?? null];
    expect(readsOf(records, 'case-v8').map(fields)).toEqual([['clinic', 'legacy', '4', 'app_login', 'app_login', 'dr.old', null]]);
    expect(readsOf(records, 'case-v9').map(fields)).toEqual([['clinic', 'legacy', '4', 'app_login', 'app_login', 'dr.new', null]]);
  });
});
