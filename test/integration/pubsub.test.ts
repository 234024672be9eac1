import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeKeys, readArchive, shipArgs, tempArchiveDir } from '../helpers/archive.js';
import { runCli, startCli, waitFor } from '../helpers/cli.js';
import { freshDatabase, taggedReads, urlFor, withClient } from '../helpers/db.js';
import { requireEnv } from '../helpers/env.js';
import type { ArchivedRecord } from '../../src/verify/chain.js';
import { fakeCloudLogging, type FakeCloudLogging } from '../helpers/fake-cloud-logging.js';

/**
 * `ingest --log-source pubsub`: a Cloud SQL instance's pgaudit entries through a log sink to
 * Pub/Sub. Pub/Sub, the sink and the metadata server are a fake (test/helpers/fake-cloud-logging.ts:
 * no Google Cloud project is reachable here) that publishes the entries it makes from the real
 * PostgreSQL's pgaudit lines, and delivers them as Pub/Sub is documented to without exactly-once
 * delivery: in no order, a few per pull, again when not acknowledged in time, now and then again
 * after an acknowledgement, some pulls throttled; every request is refused without the metadata
 * server's token.
 */
let db: { name: string; url: string };
let gcp: FakeCloudLogging;
const where = { project: 'clinic-prj', instance: 'clinic-db' };

beforeAll(async () => {
  db = await freshDatabase('gps');
  gcp = await fakeCloudLogging(requireEnv('TEST_PG_LOG_DIR'), where, { delayMs: 200, chunkChars: 4000, ackDeadlineMs: 800 });
});
afterAll(() => gcp?.close());

const env = () => ({
  DATABASE_URL: urlFor(db.name, 'ingest_login'),
  ...gcp.googleEnv(),
});
const args = (...more: string[]) => [
  'ingest',
  '--log-source',
  'pubsub',
  '--gcp-project',
  where.project,
  '--gcp-instance',
  where.instance,
  '--pubsub-subscription',
  gcp.pubsub.subscription,
  '--pubsub-endpoint',
  gcp.url,
  '--pubsub-chunk-wait',
  '3s',
  '--statement-max-length',
  '20000',
  ...more,
];
const q = async <R>(sql: string): Promise<R[]> => withClient(db.url, async (c) => (await c.query(sql)).rows as R[]);
const tagged = () => taggedReads(db.url);

/** One-shot runs until `done` holds (each run pulls what is there and stores it in one transaction). */
async function ingestUntil(done: () => Promise<boolean>, runs = 60): Promise<void> {
  for (let i = 0; i < runs && !(await done()); i++) {
    const r = await runCli(args(), env());
    expect(r.code, r.stderr).toBe(0);
    await sleep(200);
  }
}

describe('ingest --log-source pubsub', () => {
  it('stores every read once from messages delivered out of order and again, joins chunks across pulls, and records a chunk that never came', async () => {
    const long = 'y'.repeat(9_000); // three chunks of 4,000 characters
    const sent: Record<string, string> = {};
    gcp.dropChunkOf = 'case:lost';
    await withClient(urlFor(db.name, 'app_login'), async (c) => {
      for (const [tag, pad] of [
        ['small', ''],
        ['long', long],
        ['lost', 'z'.repeat(6_000)],
      ] as const) {
        sent[tag] = `SELECT full_name FROM customers WHERE id = 7 /* case:${tag} ${pad} */`;
        await c.query(sent[tag]);
      }
      for (let i = 0; i < 12; i++) await c.query(`SELECT full_name FROM customers WHERE id = ${i} /* case:many */`);
    });
    const want = JSON.stringify(['long', 'lost', 'many', 'small']);
    await ingestUntil(async () => JSON.stringify((await tagged()).filter((r) => r.tag !== 'many' || r.n === 12).map((r) => r.tag)) === want);
    const rows = await tagged();
    expect(rows.map((r) => [r.tag, r.n])).toEqual([
      ['long', 1],
      ['lost', 1],
      ['many', 12],
      ['small', 1],
    ]);
    for (const r of rows) expect([r.who, r.context]).toEqual(['app_login', 'unknown']);
    const statements = Object.fromEntries(
      (
        await q<{ tag: string; statement: string }>(
          `SELECT substring(statement FROM 'case:([a-z]+)') AS tag, statement FROM audit.audit_log WHERE source = 'pgaudit' AND statement ~ 'case:(long|lost) '`,
        )
      ).map((r) => [r.tag, r.statement]),
    );
    // The long statement's three chunks, delivered in no order and in several pulls, joined as sent.
    expect(statements.long).toBe(sent.long);
    // The one whose second chunk never came: kept as far as it came, once the wait was over, and the loss is an event.
    expect(sent.lost!.startsWith(statements.lost!)).toBe(true);
    expect(statements.lost!.length).toBeLessThan(sent.lost!.length);
    const missing = await q<{ statement: string }>(`SELECT statement FROM audit.audit_log WHERE action = 'LOG LINES MISSING'`);
    expect(missing.map((m) => m.statement)).toEqual([
      expect.stringMatching(/^Pub\/Sub projects\/clinic-prj\/subscriptions\/pgaudit entry .* chunks 2 of 2 of a pgaudit line/),
    ]);

    // Pub/Sub was exercised as documented: throttled pulls, messages delivered again.
    expect(gcp.throttled).toBeGreaterThan(0);
    expect(gcp.pubsub.redeliveries).toBeGreaterThan(0);

    // Later runs add nothing, however often the messages come again.
    await sleep(1_000);
    for (let i = 0; i < 3; i++) expect((await runCli(args(), env())).code).toBe(0);
    expect((await tagged()).map((r) => [r.tag, r.n])).toEqual(rows.map((r) => [r.tag, r.n]));
    expect(await q(`SELECT 1 FROM audit.audit_log WHERE action = 'LOG LINES MISSING'`)).toHaveLength(1);
  });

  it('a message is acknowledged only once stored: a run that cannot store loses nothing, a crash before the acknowledgement stores nothing twice; a message that is no log entry is recorded, never dropped', async () => {
    const count = async (tag: string) => (await tagged()).find((r) => r.tag === tag)?.n ?? 0;
    // The ingester may not write: its run fails, and what it pulled stays with Pub/Sub.
    await withClient(db.url, (c) => c.query('REVOKE INSERT ON audit.audit_log FROM audit_ingester'));
    try {
      await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT full_name FROM customers WHERE id = 3 /* case:refused */`));
      await sleep(400); // published
      const failed = await runCli(args(), env());
      expect(failed.code, failed.stderr).toBe(2);
      expect(failed.stderr).toMatch(/permission denied for table audit_log/);
    } finally {
      await withClient(db.url, (c) => c.query('GRANT INSERT ON audit.audit_log TO audit_ingester'));
    }
    await sleep(1_000); // its deadline passes
    await ingestUntil(async () => (await count('refused')) > 0, 30);
    expect(await count('refused')).toBe(1);

    gcp.pubsub.refuseAcks = true;
    await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT full_name FROM customers WHERE id = 3 /* case:unacked */`));
    gcp.pubsub.publish(Buffer.from('not a log entry'));
    await ingestUntil(async () => (await count('unacked')) > 0, 30);
    expect(await count('unacked')).toBe(1);
    // Stored, but Pub/Sub was never told: it delivers the message again once its deadline passes.
    gcp.pubsub.refuseAcks = false;
    await sleep(1_000);
    await ingestUntil(async () => gcp.pubsub.unacked('case:unacked') === 0, 30);
    expect(gcp.pubsub.unacked('case:unacked')).toBe(0);
    expect(await count('unacked')).toBe(1);
    const unreadable = await q<{ statement: string; error: string }>(`SELECT statement, error FROM audit.audit_log WHERE action = 'UNREADABLE LOG RECORD'`);
    expect(unreadable).toEqual([
      {
        statement: expect.stringMatching(/^Pub\/Sub projects\/clinic-prj\/subscriptions\/pgaudit message \d+ published /),
        error: expect.stringMatching(/not JSON/),
      },
    ]);
    // Every run's receipt follows the one before (messages counted without gap), through the chain like a log file's.
    const receipts = await q<{ r: { from: number; to: number } }>(
      `SELECT statement::jsonb AS r FROM audit.audit_log WHERE source = 'ingest' AND statement::jsonb->>'file_key' LIKE 'gps:%' ORDER BY id`,
    );
    expect(receipts.length).toBeGreaterThan(1);
    receipts.forEach(({ r }, i) => {
      if (i > 0) expect(r.from).toBe(receipts[i - 1]!.r.to);
    });
  });

  it('an ingester that did not pull for longer than the subscription keeps a message says so once: what was published then may be gone unread', async () => {
    const run = async () => {
      const r = await runCli(args(), env());
      expect(r.code, r.stderr).toBe(0);
      return r;
    };
    await run();
    const notPulled = () =>
      q<{ statement: string; error: string }>(
        `SELECT statement, error FROM audit.audit_log WHERE action = 'LOG LINES MISSING' AND statement LIKE '%: not pulled from %'`,
      );
    expect(await notPulled()).toEqual([]);
    // Eight days without a pull (the clock is the position row's, moved back as the test's only way to wait that long).
    await withClient(db.url, (c) => c.query(`UPDATE audit.ingest_files SET updated_at = updated_at - interval '8 days' WHERE file_key LIKE 'gps:%'`));
    const r = await run();
    expect(r.stderr).toMatch(/not pulled from .* longer than it keeps a message \(--pubsub-retention 168h\)/);
    const events = await notPulled();
    expect(events).toEqual([
      {
        statement: expect.stringMatching(/^Pub\/Sub projects\/clinic-prj\/subscriptions\/pgaudit: not pulled from \S+ to \S+, longer than it keeps a message/),
        error: expect.stringMatching(/^pgaudit entries published before \S+ and not pulled by then may have been deleted unread/),
      },
    ]);
    // Once: the run stored it with the pull's time.
    await run();
    expect(await notPulled()).toHaveLength(1);
    // Within the retention, a run on an idle subscription says nothing, and marks that it pulled.
    await withClient(db.url, (c) => c.query(`UPDATE audit.ingest_files SET updated_at = updated_at - interval '6 days' WHERE file_key LIKE 'gps:%'`));
    gcp.pubsub.idle = true;
    try {
      await run();
    } finally {
      gcp.pubsub.idle = false;
    }
    expect(await notPulled()).toHaveLength(1);
    expect(await q(`SELECT 1 FROM audit.ingest_files WHERE file_key LIKE 'gps:%' AND updated_at > now() - interval '1 minute'`)).toHaveLength(1);
  });

  it('ship --log-source pubsub runs the same ingester beside the shipper: a read pulled from Pub/Sub reaches the archive once', async () => {
    const archive = await tempArchiveDir();
    const keys = await makeKeys();
    const pubsubFlags = args().slice(1, args().indexOf('--statement-max-length'));
    const child = startCli(shipArgs({ archive: `file://${archive}`, keys, extra: ['--slot', `s_${db.name}`, ...pubsubFlags] }), {
      ...env(),
      DATABASE_URL: urlFor(db.name, 'ship_ingest_login'),
    });
    const done = waitFor(child);
    try {
      await withClient(urlFor(db.name, 'app_login'), (c) => c.query(`SELECT full_name FROM customers WHERE id = 5 /* case:shipped */`));
      const shipped = async () =>
        (await readArchive(archive, keys.keys).catch(() => ({ records: [] as ArchivedRecord[] }))).records.filter(
          (r) => r.source === 'pgaudit' && String(r.statement ?? '').includes('case:shipped'),
        ).length;
      await expect.poll(shipped, { timeout: 30_000, interval: 300 }).toBe(1);
    } finally {
      child.kill('SIGTERM');
    }
    const r = await done;
    expect(r.code, r.stderr.slice(-2000)).toBe(0);
    expect((await tagged()).find((t) => t.tag === 'shipped')?.n).toBe(1);
  });

  it('refuses a subscription name that is none, and a missing one, in one line', async () => {
    const bad = await runCli(
      [...args().filter((a) => a !== gcp.pubsub.subscription && a !== '--pubsub-subscription'), '--pubsub-subscription', 'pgaudit'],
      env(),
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe(
      'pg-audit-shipper: error: --pubsub-subscription pgaudit is not a subscription name: projects/<project>/subscriptions/<name>',
    );
    const none = await runCli(
      args().filter((a) => a !== gcp.pubsub.subscription && a !== '--pubsub-subscription'),
      env(),
    );
    expect(none.code).toBe(2);
    expect(none.stderr.trim()).toMatch(/^pg-audit-shipper: error: --log-source pubsub needs --pubsub-subscription \(AUDIT_PUBSUB_SUBSCRIPTION\)/);
    const unknown = await runCli(
      [
        ...args().filter((a) => a !== gcp.pubsub.subscription && a !== '--pubsub-subscription'),
        '--pubsub-subscription',
        'projects/clinic-prj/subscriptions/other',
      ],
      env(),
    );
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/pull on projects\/clinic-prj\/subscriptions\/other failed \(HTTP 404\).*no such subscription/);
  });
});
