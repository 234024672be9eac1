import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys, shipArgs, tempArchiveDir } from '../helpers/archive.js';
import { runCli } from '../helpers/cli.js';
import { freshDatabase, taggedReads, urlFor, withClient } from '../helpers/db.js';
import { requireEnv } from '../helpers/env.js';
import { fakeCloudLogging, type FakeCloudLogging } from '../helpers/fake-cloud-logging.js';

/**
 * `ingest --log-source cloud-logging`: a Cloud SQL instance's pgaudit lines read as Cloud
 * Logging's Data Access entries. Cloud Logging and the metadata server are a fake
 * (test/helpers/fake-cloud-logging.ts: no Google Cloud project is reachable here) that makes the
 * entries from the real PostgreSQL's pgaudit lines as Cloud SQL does, delays, pages, repeats,
 * reorders and throttles them as the API may; Google's auth library gets its token from the fake
 * metadata server, and every request is refused without it.
 */
let db: { name: string; url: string };
let gcl: FakeCloudLogging;
const where = { project: 'clinic-prj', instance: 'clinic-db' };

beforeAll(async () => {
  db = await freshDatabase('gcl');
  gcl = await fakeCloudLogging(requireEnv('TEST_PG_LOG_DIR'), where, { delayMs: 400, pageSize: 3, chunkChars: 4000 });
});
afterAll(() => gcl?.close());

const env = () => ({
  DATABASE_URL: urlFor(db.name, 'ingest_login'),
  ...gcl.googleEnv(),
});
const args = (...more: string[]) => [
  'ingest',
  '--log-source',
  'cloud-logging',
  '--gcp-project',
  where.project,
  '--gcp-instance',
  where.instance,
  '--cloud-logging-endpoint',
  gcl.url,
  '--cloud-logging-lag',
  '1s',
  '--statement-max-length',
  '20000',
  ...more,
];
const tagged = () => taggedReads(db.url);

describe('ingest --log-source cloud-logging', () => {
  it('ingests every read once from delayed, paged, repeated and throttled entries, joins chunks and records a chunk that never came', async () => {
    // The first run starts the log from now: what came before is not read (nothing to ingest yet).
    const first = await runCli(args(), env());
    expect(first.code, first.stderr).toBe(0);
    const long = 'y'.repeat(9_000); // three chunks of 4,000 characters
    const sent: Record<string, string> = {};
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      for (const [tag, pad] of [
        ['small', ''],
        ['long', long],
        ['lost', 'z'.repeat(6_000)],
      ] as const) {
        sent[tag] = `SELECT full_name FROM customers WHERE id = 7 /* case:${tag} ${pad} */`;
        await c.query(sent[tag]);
      }
      for (let i = 0; i < 8; i++) await c.query(`SELECT full_name FROM customers WHERE id = ${i} /* case:many */`);
    });
    gcl.dropChunkOf = 'case:lost';
    const want = ['long', 'lost', 'many', 'small'];
    for (let i = 0; i < 40 && JSON.stringify((await tagged()).map((r) => r.tag)) !== JSON.stringify(want); i++) {
      const r = await runCli(args(), env());
      expect(r.code, r.stderr).toBe(0);
      await sleep(250);
    }
    const rows = await tagged();
    expect(rows.map((r) => [r.tag, r.n])).toEqual([
      ['long', 1],
      ['lost', 1],
      ['many', 8],
      ['small', 1],
    ]);
    // Who read, as Cloud SQL says it; the context is unknown: the server's line with it is not in this log.
    for (const r of rows) expect([r.who, r.context]).toEqual(['app_login', 'unknown']);
    // The long statement's three chunks were joined into the statement that was sent.
    const statements = await withClient(db.url, async (c) =>
      Object.fromEntries(
        (
          await c.query<{ tag: string; statement: string }>(
            `SELECT substring(statement FROM 'case:([a-z]+)') AS tag, statement FROM audit.audit_log WHERE source = 'pgaudit' AND statement ~ 'case:(long|lost) '`,
          )
        ).rows.map((r) => [r.tag, r.statement]),
      ),
    );
    expect(statements.long).toBe(sent.long);
    // The statement whose second chunk never came is kept as far as it came, and the loss is an event.
    expect(sent.lost!.startsWith(statements.lost!)).toBe(true);
    expect(statements.lost!.length).toBeLessThan(sent.lost!.length);
    const missing = await withClient(
      db.url,
      async (c) =>
        (await c.query<{ statement: string; error: string }>(`SELECT statement, error FROM audit.audit_log WHERE action = 'LOG LINES MISSING'`)).rows,
    );
    expect(missing).toHaveLength(1);
    expect(missing[0]!.statement).toMatch(/chunks 2 of 2 of a pgaudit line/);

    // The API was exercised as documented: pages, a throttled request retried, entries listed twice.
    expect(gcl.throttled).toBeGreaterThan(0);
    expect(gcl.requests.some((r) => r.pageToken)).toBe(true);

    // A read after those: a later window holds it (an empty window is not written up until it is a full one).
    await withClient(urlFor(db.name, 'app_login'), (c) => c.query('SELECT full_name FROM customers WHERE id = 8 /* second-window */'));
    const secondWindow = () =>
      withClient(
        db.url,
        async (c) =>
          (
            await c.query(
              `SELECT count(*)::int AS n FROM audit.audit_log WHERE source = 'pgaudit' AND statement LIKE '%/* second-window */' AND schema_name <> 'audit'`,
            )
          ).rows[0].n as number,
      );
    for (let i = 0; i < 40 && (await secondWindow()) === 0; i++) {
      expect((await runCli(args(), env())).code).toBe(0);
      await sleep(250);
    }
    expect(await secondWindow()).toBe(1);

    // Receipts: windows that follow each other without gap or overlap, in one transaction with their events.
    const receipts = await withClient(db.url, async (c) =>
      (
        await c.query<{ r: { file_key: string; from: number; to: number; lines: number } }>(
          `SELECT statement::json AS r FROM audit.audit_log WHERE source = 'ingest' AND action = 'RECEIPT' ORDER BY id`,
        )
      ).rows.map((x) => x.r),
    );
    expect(receipts.length).toBeGreaterThan(1);
    for (const r of receipts) expect(r.file_key).toBe('gcl:clinic-prj:clinic-db');
    for (let i = 1; i < receipts.length; i++) expect(receipts[i]!.from).toBe(receipts[i - 1]!.to);

    // Once more: nothing read twice (what is new is this test's own reads of the trail, events too).
    const again = await runCli(args(), env());
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/, 0 already present\)/);
    expect((await tagged()).map((r) => [r.tag, r.n])).toEqual([
      ['long', 1],
      ['lost', 1],
      ['many', 8],
      ['small', 1],
    ]);

    // Shipped and verified: the windows' receipts join up (nothing skipped or read twice), and the
    // lost chunk keeps the archive from looking complete.
    const archive = await tempArchiveDir();
    const keys = await makeKeys();
    const shipped = await runCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--drain', '--slot', `s_${db.name}`] }), {
      DATABASE_URL: urlFor(db.name, 'ship_login'),
    });
    expect(shipped.code, shipped.stderr).toBe(0);
    const verified = await runCli(['verify', '--archive', `file://${archive}`, '--verify-key', keys.verifyKey, '--json']);
    const report = JSON.parse(verified.stdout) as { findings: { code: string }[]; notes?: { code: string }[] };
    expect(verified.code).toBe(1);
    expect(report.findings.map((f) => f.code)).toEqual(['log-lines-missing']);
  });

  it('says what is wrong in one line: no project, a bad instance id, credentials the API refuses', async () => {
    const noProject = await runCli(['ingest', '--log-source', 'cloud-logging', '--gcp-instance', 'x'], env());
    expect(noProject.code).toBe(2);
    expect(noProject.stderr).toMatch(/--log-source cloud-logging needs --gcp-project \(GOOGLE_CLOUD_PROJECT\)/);
    const badInstance = await runCli(['ingest', '--log-source', 'cloud-logging', '--gcp-project', 'p-1', '--gcp-instance', 'p-1:db'], env());
    expect(badInstance.code).toBe(2);
    expect(badInstance.stderr).toMatch(/--gcp-instance p-1:db is not an instance id/);
    const withDir = await runCli(['ingest', '--log-source', 'cloud-logging', '--log-dir', '/tmp'], env());
    expect(withDir.code).toBe(2);
    expect(withDir.stderr).toMatch(/do not go together/);
    // A token the API does not accept (not the metadata server's): refused, said once, not retried forever.
    const refused = await runCli(args(), { ...env(), GCE_METADATA_HOST: '127.0.0.1:9' });
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/--log-source cloud-logging/);
  });
});
