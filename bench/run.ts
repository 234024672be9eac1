/**
 * npm run bench: speed and memory of the shipper, each reported as a ratio against a baseline
 * measured in the same run on the same machine (never as absolute targets in tests).
 *
 *   1. decode throughput: pg_recvlogical (pgoutput, the server's own client) vs `ship --drain` to S3
 *   2. commit-to-locked latency: single-row commits until the slot confirms them (after HeadObject)
 *   3. peak RSS of `ship --drain` with a backlog of BENCH_BACKLOG rows (default 1,000,000), of the
 *      initial backfill of as many rows and of recovery after a dropped slot, then
 *      `verify --full` and an unbounded `query` over the whole archive (time and peak RSS)
 *   4. the audit trigger's cost: pgbench single-row inserts, protected vs unprotected table
 *
 * Writes bench/results.json and bench/results.md. Needs the services of with-test-services.sh.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir, cpus, totalmem } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { CreateBucketCommand, PutObjectLockConfigurationCommand, S3Client } from '@aws-sdk/client-s3';
import { init } from '../src/capture/migrate.js';
import { protect } from '../src/capture/protect.js';
import { createLogger } from '../src/log.js';
import { keygen, loadSigningKey } from '../src/seal/keys.js';
import { buildSyntheticArchive, downgradeToFormat2, TARGET } from './synthetic-archive.js';
import { PACKAGE_ROOT } from '../src/paths.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const run = promisify(execFile);
const PGBIN = '/usr/lib/postgresql/15/bin';
const ROWS = Number(process.env.BENCH_ROWS ?? 200_000);
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 1_000_000);
const READ_MESSAGES = Number(process.env.BENCH_READS ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/**
 * BENCH_ONLY=throughput, trigger, ingest or reads: just that step, for quick iterations (writes no
 * results). BENCH_ONLY=index or verify: the key index or the parallel verify step alone (no
 * database), written into the results.
 */
const ONLY = process.env.BENCH_ONLY ?? null;
if (ONLY !== null && !['throughput', 'trigger', 'ingest', 'reads', 'index', 'verify'].includes(ONLY)) {
  throw new Error(`BENCH_ONLY=${ONLY} is not a step: use throughput, trigger, ingest, reads, index or verify, or leave it unset for all`);
}
/** Events of the synthetic archive the parallel verify step checks. */
const VERIFY_EVENTS = Number(process.env.BENCH_VERIFY_EVENTS ?? 1_000_000);
/** Sizes of the synthetic archives the key index step searches (events). */
const INDEX_SIZES = (process.env.BENCH_INDEX_SIZES ?? '1000000,10000000,50000000').split(',').map(Number);
/** Lines of the normal pgaudit log, and bytes of the one huge record (a 140 MB statement of quotes). */
const INGEST_LINES = Number(process.env.BENCH_INGEST_LINES ?? 200_000);
const HUGE_RECORD_BYTES = Number(process.env.BENCH_HUGE_RECORD_BYTES ?? 560 * 2 ** 20);
const ONLY_THROUGHPUT = ONLY === 'throughput';
const CLI = path.join(PACKAGE_ROOT, 'dist', 'src', 'cli.js');
/** `ship` runs as users run it: the installed command, which bounds its heap (bin/pg-audit-shipper). */
const BIN = path.join(PACKAGE_ROOT, 'bin', 'pg-audit-shipper');

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the benchmark with \`npm run bench\``);
  return v;
}

const say = (s: string): void => {
  process.stdout.write(`${s}\n`);
};

async function main(): Promise<void> {
  if (ONLY === 'index' || ONLY === 'verify') {
    // No database: merged into the last full run's results, saying when it was measured.
    const file = path.join(PACKAGE_ROOT, 'bench', 'results.json');
    const results = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    if (ONLY === 'index') results.key_index = await keyIndexBench();
    else results.parallel_verify = await parallelVerifyBench();
    await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(path.join(PACKAGE_ROOT, 'bench', 'results.md'), report(results));
    say(`\nwritten: bench/results.json, bench/results.md (the ${ONLY} step; the others are the last full run's)`);
    return;
  }
  const adminUrl = env('TEST_DATABASE_URL');
  const url = new URL(adminUrl);
  url.pathname = '/bench';
  const dbUrl = url.toString();
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS bench');
  await admin.query('CREATE DATABASE bench');
  await admin.end();
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  await init(db, { example: true, log: createLogger('silent') });
  await readMessagesSetup(db);

  const s3 = new S3Client({
    endpoint: env('TEST_S3_ENDPOINT'),
    region: env('TEST_S3_REGION'),
    forcePathStyle: true,
    credentials: { accessKeyId: env('TEST_S3_ACCESS_KEY'), secretAccessKey: env('TEST_S3_SECRET_KEY') },
  });
  const bucket = `bench-${Date.now().toString(36)}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }));
  await s3.send(
    new PutObjectLockConfigurationCommand({
      Bucket: bucket,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 1 } },
      },
    }),
  );
  const keys = await keygen(path.join(await mkdtemp(path.join(tmpdir(), 'bench-keys-')), 'k'));
  const shipEnv = {
    PATH: process.env.PATH ?? '',
    DATABASE_URL: dbUrl,
    LOG_LEVEL: 'warn',
    AWS_ENDPOINT_URL_S3: env('TEST_S3_ENDPOINT'),
    AWS_REGION: env('TEST_S3_REGION'),
    AWS_ACCESS_KEY_ID: env('TEST_S3_ACCESS_KEY'),
    AWS_SECRET_ACCESS_KEY: env('TEST_S3_SECRET_KEY'),
    AUDIT_S3_FORCE_PATH_STYLE: 'true',
    AUDIT_S3_SSE: 'none',
  };
  /** `ship` into a prefix of the bench bucket, locked for a day. */
  const shipInto = (prefix: string, ...extra: string[]) => [
    'ship',
    '--archive',
    `s3://${bucket}/${prefix}`,
    '--signing-key',
    keys.signingKeyPath,
    '--http-port',
    '0',
    '--retention',
    '1d',
    '--allow-short-retention',
    ...extra,
  ];
  const shipArgs = shipInto('bench');
  const results: Record<string, unknown> = {
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version },
    settings: {
      rows: ROWS,
      rounds: ROUNDS,
      backlog: BACKLOG,
      synchronous_commit: (await db.query('SHOW synchronous_commit')).rows[0].synchronous_commit,
      fsync: (await db.query('SHOW fsync')).rows[0].fsync,
    },
  };

  if (ONLY === null || ONLY === 'ingest') {
    say('0/4 ingest: a normal pgaudit log, and one holding a single huge record…');
    // A database of its own: 200k rows in this one's audit_log would put autovacuum into the trigger's numbers.
    results.ingest = await ingestBench(adminUrl);
    say(`    ${JSON.stringify(results.ingest)}`);
    if (ONLY === 'ingest') {
      await db.end();
      say('(BENCH_ONLY=ingest: the other steps and the results files were skipped)');
      return;
    }
  }

  if (ONLY === null || ONLY === 'reads') {
    say('0/4 reads: pgbench lookups by key and 100-row ranges on a table unprotected, and protected with --reads statements, rows and both…');
    results.reads = await readCost(adminUrl);
    say(`    ${JSON.stringify(results.reads)}`);
    if (ONLY === 'reads') {
      await db.end();
      say('(BENCH_ONLY=reads: the other steps and the results files were skipped)');
      return;
    }
  }

  // The trigger first, on fresh tables: after the backlogs below, autovacuum on a large audit_log
  // would be measured instead of the trigger.
  if (!ONLY_THROUGHPUT && ONLY !== 'ingest' && ONLY !== 'reads') {
    say('1/4 audit trigger cost: pgbench single-row inserts, protected vs unprotected…');
    results.trigger = await triggerCost(db, dbUrl);
    say(`    ${JSON.stringify(results.trigger)}`);
    if (ONLY === 'trigger') {
      await db.end();
      say('(BENCH_ONLY=trigger: the other steps and the results files were skipped)');
      return;
    }
  }

  // Rounds of: fresh rows, pg_recvlogical over them, then ship --drain over the same rows. The
  // machine's noise (a shared 2-core VM: the same run varies by 30%) hits both sides of a round
  // alike, so each round gives a ratio and the median round is reported, with the spread.
  // Both slots live through all rounds, each confirmed to the end of the previous one: decoding
  // starts from a restart point that may lie rounds back (it moves with the server's periodic
  // snapshots), so a fresh slot for one side only would not be the same work.
  await db.query(`SELECT pg_create_logical_replication_slot('bench_recv', 'pgoutput')`);
  await timed(() => runShip(shipArgs, shipEnv, ['--drain'])); // creates the shipper's slot, empty backfill
  const rounds: {
    recv_s: number;
    ship_s: number;
    ratio: number;
    ship_start_up_s: number;
    streaming_ratio: number;
    cpu_busy_recv: number | null;
    cpu_busy_ship: number | null;
    ship_cpu: CpuUse | null;
  }[] = [];
  say(`2/4 decode throughput: pg_recvlogical vs ship --drain to S3, ${ROUNDS} rounds of ${ROWS} events (1,000 per transaction)…`);
  for (let i = 0; i < ROUNDS; i++) {
    await writeRows(db, ROWS, 1 + i * ROWS);
    // Autovacuum and checkpoints triggered by the rows just written would otherwise land in the
    // middle of one side's measurement (seen: a round 30% slower); settle them first.
    await db.query('VACUUM (ANALYZE) customers, audit.audit_log');
    await db.query('CHECKPOINT');
    const endpos = (await db.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l as string;
    const recvCpu = cpuMeter();
    const recv = await timed(() => recvlogical(dbUrl, endpos));
    const recvBusy = recvCpu();
    const shipCpu = cpuMeter();
    const e2e = await timed(() => runShip(shipArgs, shipEnv, ['--drain']));
    const shipBusy = shipCpu();
    const streaming = e2e.value.streamingSeconds;
    rounds.push({
      recv_s: round3(recv.seconds),
      ship_s: round3(e2e.seconds),
      ratio: round(recv.seconds / e2e.seconds),
      ship_start_up_s: round3(e2e.seconds - streaming),
      streaming_ratio: round(recv.seconds / streaming),
      cpu_busy_recv: recvBusy,
      cpu_busy_ship: shipBusy,
      ship_cpu: e2e.value.cpu,
    });
    say(
      `    round ${i + 1}: pg_recvlogical ${recv.seconds.toFixed(2)}s, ship ${e2e.seconds.toFixed(2)}s (${streaming.toFixed(2)}s of it streaming): ` +
        `ratio ${round(recv.seconds / e2e.seconds)}, streaming ${round(recv.seconds / streaming)}; both cores busy ${pct(recvBusy)} vs ${pct(shipBusy)}; ` +
        `ship's main thread ran ${e2e.value.cpu?.main_run_s ?? 'n/a'}s, waited for a core ${e2e.value.cpu?.main_wait_s ?? 'n/a'}s, all its threads ${e2e.value.cpu?.all_threads_s ?? 'n/a'}s`,
    );
  }
  const mid = medianRound(rounds);
  const busy = (side: 'cpu_busy_recv' | 'cpu_busy_ship') => (rounds.some((r) => r[side] === null) ? null : median(rounds.map((r) => r[side]!)));
  const throughput = {
    pg_recvlogical_events_per_s: Math.round(ROWS / mid.recv_s),
    ship_to_locked_s3_events_per_s: Math.round(ROWS / mid.ship_s),
    ratio: mid.ratio,
    ratio_range: [Math.min(...rounds.map((r) => r.ratio)), Math.max(...rounds.map((r) => r.ratio))],
    target_ratio: 0.6,
    streaming_ratio: median(rounds.map((r) => r.streaming_ratio)),
    ship_start_up_s: median(rounds.map((r) => r.ship_start_up_s)),
    cpu_busy_recv: busy('cpu_busy_recv'),
    cpu_busy_ship: busy('cpu_busy_ship'),
    median_round: { ship_s: mid.ship_s, ship_cpu: mid.ship_cpu },
    // The issue's goal (<= 8 us an event, all threads, from /proc): over each whole run, and from
    // "streaming from the slot" on, as a shipper that runs for months spends it.
    ship_cpu_us_per_event: perEvent(rounds, (c) => c.all_threads_s),
    ship_cpu_us_per_event_streaming: perEvent(rounds, (c) => (c.at_streaming_s === undefined ? null : c.all_threads_s - c.at_streaming_s)),
    target_cpu_us_per_event: 8,
    rounds,
  };
  results.throughput = throughput;
  await db.query(`SELECT pg_drop_replication_slot('bench_recv')`);
  say(
    `    median round: pg_recvlogical ${throughput.pg_recvlogical_events_per_s}/s, ship ${throughput.ship_to_locked_s3_events_per_s}/s: ratio ${throughput.ratio} (rounds ${throughput.ratio_range.join('-')}; target >= 0.6); ` +
      `streaming only: ${throughput.streaming_ratio}; the shipper's CPU ${throughput.ship_cpu_us_per_event ?? 'n/a'} us an event, ` +
      `${throughput.ship_cpu_us_per_event_streaming ?? 'n/a'} us while streaming (target <= 8)`,
  );

  if (ONLY_THROUGHPUT) {
    await db.end();
    say('(BENCH_ONLY=throughput: the other steps and the results files were skipped)');
    return;
  }
  say(`    row reads through the slot: ${READ_MESSAGES} rows read from a table protected with --reads rows, pg_recvlogical (messages on) vs ship --drain…`);
  results.row_reads = await readMessagesThroughput(db, dbUrl, shipArgs, shipEnv);
  say(`    ${JSON.stringify(results.row_reads)}`);

  say('3/4 commit-to-locked latency (single-row commits, --batch-max-age 250ms)…');
  results.latency = await latency(db, shipArgs, shipEnv);
  say(`    ${JSON.stringify(results.latency)}`);

  say(`4/4 peak RSS of ship --drain over a backlog of ${BACKLOG} events…`);
  // pg_recvlogical over the same backlog too: with a million events, start-up is a small part of
  // either side, so this ratio is close to the steady state's.
  await db.query(`SELECT pg_create_logical_replication_slot('bench_recv', 'pgoutput')`);
  await writeRows(db, BACKLOG, ROUNDS * ROWS + 10);
  await db.query('VACUUM (ANALYZE) customers, audit.audit_log');
  await db.query('CHECKPOINT');
  const backlogEnd = (await db.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l as string;
  const backlogRecv = await timed(() => recvlogical(dbUrl, backlogEnd));
  await db.query(`SELECT pg_drop_replication_slot('bench_recv')`);
  const backlog = await timed(() => runShip(shipArgs, shipEnv, ['--drain']));
  const ARCHIVED = ROUNDS * ROWS + READ_MESSAGES + BACKLOG + 200; // the rounds, the row reads, the backlog, the latency commits
  say('    verify --full over the same archive (every file, record hash and object lock)…');
  const verifyRun = await timed(() =>
    runCli(
      [
        'verify',
        '--archive',
        `s3://${bucket}/bench`,
        '--verify-key',
        keys.verifyKeyPath,
        '--min-retention',
        '1d',
        '--allow-short-retention',
        '--full',
        '--json',
      ],
      shipEnv,
    ),
  );
  results.verify = {
    events: ARCHIVED,
    seconds: round(verifyRun.seconds),
    events_per_s: Math.round(ARCHIVED / verifyRun.seconds),
    peak_rss_mib: Math.round(verifyRun.value.peakRssKib / 1024),
  };
  say(`    ${JSON.stringify(results.verify)}`);
  say('    query over the same archive (one customer, every file read and verified)…');
  const queryRun = await timed(() =>
    runCli(['query', '--archive', `s3://${bucket}/bench`, '--verify-key', keys.verifyKeyPath, '--row-id', '4711', '--format', 'json'], shipEnv),
  );
  results.query = {
    events: ARCHIVED,
    seconds: round(queryRun.seconds),
    events_per_s: Math.round(ARCHIVED / queryRun.seconds),
    peak_rss_mib: Math.round(queryRun.value.peakRssKib / 1024),
  };
  say(`    ${JSON.stringify(results.query)}`);
  results.backlog = {
    events: BACKLOG,
    seconds: round(backlog.seconds),
    events_per_s: Math.round(BACKLOG / backlog.seconds),
    peak_rss_mib: Math.round(backlog.value.peakRssKib / 1024),
    target_peak_rss_mib: 256,
    pg_recvlogical_events_per_s: Math.round(BACKLOG / backlogRecv.seconds),
    ratio: round(backlogRecv.seconds / backlog.seconds),
    streaming_ratio: round(backlogRecv.seconds / backlog.value.streamingSeconds),
  };
  say(`    ${JSON.stringify(results.backlog)}`);

  say(`    backfill and recovery: ${BACKLOG} rows that predate the slot, from its snapshot; then the same archive after its slot was dropped…`);
  // The initial backfill, in a database of its own: rows committed before the slot exists.
  const backfillUrl = new URL(adminUrl);
  backfillUrl.pathname = '/bench_backfill';
  const admin2 = new pg.Client({ connectionString: adminUrl });
  await admin2.connect();
  await admin2.query('DROP DATABASE IF EXISTS bench_backfill');
  await admin2.query('CREATE DATABASE bench_backfill');
  const bdb = new pg.Client({ connectionString: backfillUrl.toString() });
  await bdb.connect();
  await init(bdb, { example: true, log: createLogger('silent') });
  await writeRows(bdb, BACKLOG);
  const backfillArgs = shipInto('backfill', '--slot', 'bench_backfill');
  const initial = await timed(() => runShip(backfillArgs, { ...shipEnv, DATABASE_URL: backfillUrl.toString() }, ['--drain']));
  // Recovery: the slot is gone, so the shipper reads every archived id (to skip them) and archives what is missing (nothing here).
  await bdb.query(`SELECT pg_drop_replication_slot('bench_backfill')`);
  const recovery = await timed(() => runShip(backfillArgs, { ...shipEnv, DATABASE_URL: backfillUrl.toString() }, ['--drain']));
  await bdb.end();
  await admin2.query('DROP DATABASE bench_backfill');
  await admin2.end();
  results.backfill = {
    events: BACKLOG,
    initial_seconds: round(initial.seconds),
    initial_peak_rss_mib: Math.round(initial.value.peakRssKib / 1024),
    recovery_seconds: round(recovery.seconds),
    recovery_peak_rss_mib: Math.round(recovery.value.peakRssKib / 1024),
    target_peak_rss_mib: 256,
  };
  say(`    ${JSON.stringify(results.backfill)}`);

  await db.end();
  results.key_index = await keyIndexBench();
  results.parallel_verify = await parallelVerifyBench();
  const out = path.join(PACKAGE_ROOT, 'bench');
  await writeFile(path.join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(path.join(out, 'results.md'), report(results));
  say(`\nwritten: bench/results.json, bench/results.md`);
}

/**
 * `ingest` over two synthetic csvlogs as PostgreSQL 15 + pgaudit write them: INGEST_LINES object
 * READ lines, and one file holding a single record of HUGE_RECORD_BYTES (a statement of quotes,
 * which csvlog and pgaudit's CSV each double) followed by a few normal lines. The baseline is
 * reading the same bytes with `cat`. Memory must not grow with a record's size.
 */
async function ingestBench(adminUrl: string) {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS bench_ingest');
  await admin.query('CREATE DATABASE bench_ingest');
  const u = new URL(adminUrl);
  u.pathname = '/bench_ingest';
  const dbUrl = u.toString();
  const setup = new pg.Client({ connectionString: dbUrl });
  await setup.connect();
  await init(setup, { example: true, log: createLogger('silent') });
  await setup.end();
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-ingest-'));
  // Each read, then the line the server writes in it with its app context (audit_read_context, migration 007).
  const prefix = (n: number, k: number) =>
    `2026-11-28 10:00:00.${String(n % 1000).padStart(3, '0')} UTC,"app_login","bench_ingest",4242,"10.0.0.7:50432",6b0b0000.${Math.floor(n / 1e6).toString(16)},${2 * (n % 1e6) + k},"SELECT",` +
    `2026-11-28 10:00:00 UTC,3/${n},0,LOG,00000,`;
  const read = (n: number, stmt: string) =>
    `${prefix(n, 1)}"AUDIT: OBJECT,${n},1,READ,SELECT,TABLE,public.customers,""${stmt}"",<not logged>",,,,,,,,,"clinic-web","client backend",,0\n`;
  const context = (n: number, stmt: string) =>
    `${prefix(n, 2)}"audit read context {""user"" : ""dr.${n % 40}"", ""customer"" : ""${n % 5000}""}",,,,,"PL/pgSQL function audit.read_context() line 3 at RAISE",` +
    `"${stmt}",,,"clinic-web","client backend",,0\n`;
  const line = (n: number, stmt: string) => read(n, stmt) + context(n, stmt);
  const normalDir = path.join(dir, 'normal');
  const hugeDir = path.join(dir, 'huge');
  await run('mkdir', ['-p', normalDir, hugeDir]);
  const normal = [];
  for (let i = 0; i < INGEST_LINES; i++) normal.push(line(i, `SELECT full_name FROM customers WHERE id = ${i % 5000}`));
  await writeFile(path.join(normalDir, 'postgresql-normal.csv'), normal.join(''));
  // The huge record, written in pieces: one '"' of the statement is four bytes in the file.
  const { open } = await import('node:fs/promises');
  const fh = await open(path.join(hugeDir, 'postgresql-huge.csv'), 'w');
  const head = read(10_000_000, 'X'); // no context line: written as unknown when the (shortened) wait runs out
  const [before, after] = head.split('X');
  await fh.write(before!);
  const piece = Buffer.alloc(8 * 2 ** 20, '"');
  for (let left = HUGE_RECORD_BYTES; left > 0; left -= piece.length) await fh.write(piece.subarray(0, Math.min(piece.length, left) & ~3));
  await fh.write(after!);
  for (let i = 1; i <= 5; i++) await fh.write(line(10_000_000 + i, `SELECT 1 FROM customers WHERE id = ${i}`));
  await fh.close();

  const envVars = { PATH: process.env.PATH ?? '', DATABASE_URL: dbUrl, LOG_LEVEL: 'warn' };
  const measure = async (logDir: string, events: number) => {
    const bytes = Number((await run('du', ['-sb', logDir])).stdout.split('\t')[0]);
    const cat = await timed(() => run('sh', ['-c', `cat ${logDir}/*.csv > /dev/null`]));
    const r = await timed(() => runCli(['ingest', '--log-dir', logDir, '--context-wait', '1ms'], envVars));
    return {
      bytes,
      events,
      seconds: round(r.seconds),
      events_per_s: Math.round(events / r.seconds),
      mib_per_s: round(bytes / 2 ** 20 / r.seconds),
      cat_mib_per_s: round(bytes / 2 ** 20 / cat.seconds),
      peak_rss_mib: Math.round(r.value.peakRssKib / 1024),
    };
  };
  const normalRun = await measure(normalDir, INGEST_LINES);
  const hugeRun = await measure(hugeDir, 6);
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  const huge = (
    await db.query(`SELECT count(*)::int AS n, max(length(statement))::int AS longest FROM audit.audit_log WHERE log_session_id LIKE '6b0b0000.a%'`)
  ).rows[0];
  await db.end();
  await admin.query('DROP DATABASE bench_ingest');
  await admin.end();
  await run('rm', ['-rf', dir]);
  if (huge.n !== 6) throw new Error(`ingest of the huge-record log stored ${huge.n} events, not 6`);
  return {
    normal: normalRun,
    huge_record: { ...hugeRun, record_mib: round(HUGE_RECORD_BYTES / 2 ** 20), longest_statement_kept: huge.longest },
    target_peak_rss_mib: 256,
  };
}

/**
 * `verify --full` with worker threads against the same command on one thread, over one synthetic
 * archive (no database, no S3: the checking is measured, not the storage), rounds alternating so
 * the neighbours' noise hits both sides alike. The reports must be byte-identical.
 */
async function parallelVerifyBench() {
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-verify-'));
  const k = await keygen(path.join(dir, 'keys'));
  const key = await loadSigningKey(k.signingKeyPath);
  say(`    parallel verify: sealing a synthetic archive of ${VERIFY_EVENTS} events…`);
  const a = await buildSyntheticArchive(path.join(dir, 'archive'), VERIFY_EVENTS, key, () => undefined);
  const workers = availableParallelism();
  const verify = async (n: number) => {
    const t = await timed(() =>
      runCli(
        // The synthetic archive's head is years old: the age check is not what is measured.
        ['verify', '--archive', `file://${a.root}`, '--verify-key', k.verifyKeyPath, '--full', '--max-head-age', '100000d', '--workers', String(n), '--json'],
        { PATH: process.env.PATH ?? '' },
        { stdout: true },
      ),
    );
    return { seconds: t.seconds, cpu: t.value.cpu?.all_threads_s ?? null, rss: Math.round(t.value.peakRssKib / 1024), report: t.value.stdout };
  };
  const ROUNDS_V = 3;
  const one: Awaited<ReturnType<typeof verify>>[] = [];
  const many: Awaited<ReturnType<typeof verify>>[] = [];
  for (let i = 0; i < ROUNDS_V; i++) {
    one.push(await verify(0));
    many.push(await verify(workers));
  }
  const median = <T extends { seconds: number }>(xs: T[]): T => [...xs].sort((p, q) => p.seconds - q.seconds)[Math.floor(xs.length / 2)]!;
  const side = (xs: Awaited<ReturnType<typeof verify>>[]) => {
    const m = median(xs);
    return { seconds: round3(m.seconds), events_per_s: Math.round(a.events / m.seconds), cpu_s: m.cpu, peak_rss_mib: m.rss };
  };
  const ratios = one.map((o, i) => round(o.seconds / many[i]!.seconds)).sort((p, q) => p - q);
  // An unbounded query that reads every file (actions are not in the key index), rows to stdout.
  const query = async (n: number) => {
    const t = await timed(() =>
      runCli(
        ['query', '--archive', `file://${a.root}`, '--verify-key', k.verifyKeyPath, '--action', 'UPDATE', '--format', 'json', '--workers', String(n)],
        { PATH: process.env.PATH ?? '' },
        { stdout: true },
      ),
    );
    return { seconds: t.seconds, cpu: t.value.cpu?.all_threads_s ?? null, rss: Math.round(t.value.peakRssKib / 1024), report: t.value.stdout };
  };
  const qOne: Awaited<ReturnType<typeof query>>[] = [];
  const qMany: Awaited<ReturnType<typeof query>>[] = [];
  for (let i = 0; i < ROUNDS_V; i++) {
    qOne.push(await query(0));
    qMany.push(await query(workers));
  }
  const result = {
    measured_at: new Date().toISOString().slice(0, 10),
    events: a.events,
    files: a.files,
    rounds: ROUNDS_V,
    workers,
    one_thread: side(one),
    workers_side: side(many),
    ratio: round(median(one).seconds / median(many).seconds),
    ratio_range: [ratios[0]!, ratios[ratios.length - 1]!],
    target_ratio: 1.8,
    same_report: one.every((o) => o.report === many[0]!.report) && many.every((m) => m.report === many[0]!.report),
    query: {
      matches: qOne[0]!.report.split('\n').filter(Boolean).length,
      one_thread: side(qOne),
      workers_side: side(qMany),
      ratio: round(median(qOne).seconds / median(qMany).seconds),
      same_answer: [...qOne, ...qMany].every((x) => x.report === qOne[0]!.report),
    },
  };
  say(`    ${JSON.stringify(result)}`);
  await rm(dir, { recursive: true, force: true });
  return result;
}

/** The baseline: the server's own client decodes slot bench_recv up to `endpos` and discards it. */
/**
 * Point queries over archives of INDEX_SIZES events, built by the sealer (bench/synthetic-archive.ts):
 * `query --customer` for a patient in 0.1% of the files, which reads the digests and only the files
 * whose signed key index may hold the patient. Baseline, same run: the smallest archive with its
 * digests rewritten as format 2 (no index), where the same query reads every file.
 */
async function keyIndexBench() {
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-index-'));
  const k = await keygen(path.join(dir, 'keys'));
  const key = await loadSigningKey(k.signingKeyPath);
  const query = async (root: string): Promise<{ seconds: number; filesRead: number; skipped: number; matches: number; peakRssMib: number }> => {
    const runs = [];
    for (let i = 0; i < 3; i++) {
      const t = await timed(() =>
        runCli(['query', '--archive', `file://${root}`, '--verify-key', k.verifyKeyPath, '--customer', TARGET, '--format', 'json'], {
          PATH: process.env.PATH ?? '',
        }),
      );
      const summary = t.value.stderr;
      runs.push({
        seconds: t.seconds,
        filesRead: Number(/(\d+) files? read/.exec(summary)?.[1] ?? NaN),
        skipped: Number(/(\d+) files? not read: the key index/.exec(summary)?.[1] ?? 0),
        matches: Number(/answer: +(\d+) event/.exec(summary)?.[1] ?? NaN),
        peakRssMib: Math.round(t.value.peakRssKib / 1024),
      });
    }
    return runs.sort((a, b) => a.seconds - b.seconds)[1]!; // the median of three
  };
  const sizes = [];
  let baseline: { events: number; files_read: number; query_s: number } | null = null;
  for (const events of INDEX_SIZES) {
    say(`    key index: sealing a synthetic archive of ${events} events…`);
    const built = await timed(() => buildSyntheticArchive(path.join(dir, String(events)), events, key, () => undefined));
    const a = built.value;
    const q = await query(a.root);
    if (q.matches !== a.targetFiles) throw new Error(`query --customer found ${q.matches} events, the archive holds ${a.targetFiles}`);
    const row = {
      events,
      files: a.files,
      target_files: a.targetFiles,
      files_read: q.filesRead,
      files_skipped_by_index: q.skipped,
      query_s: round3(q.seconds),
      query_peak_rss_mib: q.peakRssMib,
      data_kib_per_file: Math.round(a.compressedBytes / a.files / 1024),
      digest_kib_per_file: Math.round(a.digestBytes / a.files / 1024),
      seal_s: round(built.seconds),
    };
    say(`    ${JSON.stringify(row)}`);
    sizes.push(row);
    if (baseline === null) {
      await downgradeToFormat2(a.root, key);
      const b = await query(a.root);
      baseline = { events, files_read: b.filesRead, query_s: round3(b.seconds) };
      say(`    baseline (the same archive without indexes): ${JSON.stringify(baseline)}`);
    }
    await rm(path.join(dir, String(events)), { recursive: true, force: true });
  }
  await rm(dir, { recursive: true, force: true });
  const first = sizes[0]!;
  const last = sizes[sizes.length - 1]!;
  return {
    measured_at: new Date().toISOString().slice(0, 10),
    sizes,
    baseline,
    ratio_largest_to_smallest: round(last.query_s / first.query_s),
    target_ratio: 3,
  };
}

function recvlogical(dbUrl: string, endpos: string, options: string[] = []) {
  return run(`${PGBIN}/pg_recvlogical`, [
    ...options.flatMap((o) => ['-o', o]),
    '-d',
    dbUrl,
    '-S',
    'bench_recv',
    '--start',
    '--no-loop',
    '-o',
    'proto_version=1',
    '-o',
    'publication_names=audit_log_publication',
    '-E',
    endpos,
    '-f',
    '/dev/null',
  ]);
}

/** The login the read steps read as: no superuser, which would skip row-level security. */
async function ensureReader(db: pg.Client): Promise<void> {
  await db.query(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_reader') THEN CREATE ROLE bench_reader LOGIN; END IF; END $$`);
}

/**
 * The table of the row-read step, protected with --reads rows before the shipper first starts: a
 * table protected while it runs changes the capture configuration it attests, which `verify`
 * reports as a finding (capture-changed), as it should.
 */
async function readMessagesSetup(db: pg.Client): Promise<void> {
  await db.query('CREATE TABLE bench_notes (id int PRIMARY KEY, body text)');
  await db.query(`INSERT INTO bench_notes SELECT g, 'note ' || g FROM generate_series(1, ${READ_MESSAGES}) g`);
  await db.query('VACUUM ANALYZE bench_notes');
  await protect(db, 'public.bench_notes', undefined, { reads: 'rows' });
  await ensureReader(db);
  await db.query('GRANT SELECT ON bench_notes TO bench_reader');
}

/**
 * The shipper on row-read messages (sql/migrations/009), against the server's own client on the
 * same WAL: a table protected with --reads rows is read by a login without superuser, 1,000 rows a
 * statement, each row a message; pg_recvlogical (pgoutput with messages) decodes them from a slot
 * made just before, then `ship --drain` archives them. Also the shipper's CPU per message.
 */
async function readMessagesThroughput(db: pg.Client, dbUrl: string, shipArgs: string[], shipEnv: Record<string, string>) {
  await timed(() => runShip(shipArgs, shipEnv, ['--drain'])); // whatever came before: the round starts empty
  await db.query(`SELECT pg_create_logical_replication_slot('bench_recv', 'pgoutput')`);
  const reader = new URL(dbUrl);
  reader.username = 'bench_reader';
  const r = new pg.Client({ connectionString: reader.toString() });
  await r.connect();
  try {
    for (let from = 1; from <= READ_MESSAGES; from += 1000) {
      await r.query('SELECT id FROM bench_notes WHERE id BETWEEN $1 AND $2', [from, from + 999]);
    }
  } finally {
    await r.end();
  }
  await db.query('CHECKPOINT'); // flushes the messages (read-only statements do not ask for it)
  const endpos = (await db.query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l as string;
  const recv = await timed(() => recvlogical(dbUrl, endpos, ['messages=true']));
  await db.query(`SELECT pg_drop_replication_slot('bench_recv')`);
  const ship = await timed(() => runShip(shipArgs, shipEnv, ['--drain']));
  return {
    messages: READ_MESSAGES,
    pg_recvlogical_s: round3(recv.seconds),
    ship_s: round3(ship.seconds),
    ship_streaming_s: round3(ship.value.streamingSeconds),
    ratio: round(recv.seconds / ship.seconds),
    streaming_ratio: round(recv.seconds / ship.value.streamingSeconds),
    ship_cpu_us_per_message: ship.value.cpu ? round((ship.value.cpu.all_threads_s * 1e6) / READ_MESSAGES) : null,
  };
}

async function writeRows(db: pg.Client, n: number, from = 1): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    await db.query(`INSERT INTO customers (id, full_name) SELECT g, 'patient ' || g FROM generate_series($1::int, $2::int) g`, [
      from + i,
      from + Math.min(i + 1000, n) - 1,
    ]);
  }
}

/**
 * Run `ship`; besides its peak memory, how long it streamed: from its "streaming from the slot"
 * line (start-up done, the replication request about to go out) to its exit after the last lock.
 */
async function runShip(
  args: string[],
  envVars: Record<string, string>,
  extra: string[],
): Promise<{ peakRssKib: number; streamingSeconds: number; cpu: CpuUse | null }> {
  const r = await runCli([...args, ...extra], { ...envVars, LOG_LEVEL: 'info' }, { mark: '"streaming from the slot"' });
  const line = r.stderr.split('\n').find((l) => l.includes('"streaming from the slot"'));
  const at = line ? Number((JSON.parse(line) as { time?: number }).time) : NaN;
  if (!Number.isFinite(at)) throw new Error(`ship did not log when it started streaming: ${r.stderr.slice(-500)}`);
  return { peakRssKib: r.peakRssKib, streamingSeconds: (r.exitedAt - at) / 1000, cpu: r.cpu };
}

/**
 * Where a process's time went, from the kernel's scheduler statistics: how long its main thread
 * (the one reading the replication stream) ran, how long it was ready to run but waited for a
 * core, and the CPU time of all its threads. Sampled while it runs, so up to one sampling
 * interval is missing at the end.
 */
interface CpuUse {
  main_run_s: number;
  main_wait_s: number;
  all_threads_s: number;
  /**
   * all threads' CPU when the shipper logged "streaming from the slot" (start-up done), read as that
   * line reached this process: a pipe's delay late, so a few milliseconds of streaming may be in it
   */
  at_streaming_s?: number;
}

async function cpuUse(pid: number): Promise<CpuUse | null> {
  try {
    // schedstat: "<ns on a cpu> <ns waiting on a runqueue> <timeslices>" of the main thread
    const [run, wait] = (await readFile(`/proc/${pid}/schedstat`, 'utf8')).split(' ').map(Number);
    // stat's utime and stime (clock ticks, USER_HZ = 100 on Linux) also count threads that have
    // already ended, which the compression worker does before the main thread. Fields are counted
    // after the command name's closing parenthesis: utime and stime are the 14th and 15th.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return { main_run_s: round3(run! / 1e9), main_wait_s: round3(wait! / 1e9), all_threads_s: round3(ticks / 100) };
  } catch {
    return null; // gone, or no scheduler statistics in this kernel
  }
}

/** Run the CLI, sampling its resident memory and CPU use; resolves with the peaks, its stderr and when it exited. */
function runCli(
  args: string[],
  envVars: Record<string, string>,
  opts: { stdout?: boolean; mark?: string } = {},
): Promise<{ peakRssKib: number; stderr: string; stdout: string; exitedAt: number; cpu: CpuUse | null }> {
  return new Promise((resolve, reject) => {
    const [cmd, argv] = args[0] === 'ship' ? [BIN, args] : [process.execPath, [CLI, ...args]];
    const child = spawn(cmd, argv, {
      env: { ...envVars, PATH: `${path.dirname(process.execPath)}:${envVars.PATH ?? process.env.PATH ?? ''}` },
      stdio: ['ignore', opts.stdout ? 'pipe' : 'ignore', 'pipe'],
    });
    let stdout = '';
    child.stdout?.on('data', (d) => {
      stdout += d;
    });
    let stderr = '';
    let peak = 0;
    let cpu: CpuUse | null = null;
    let atMark: Promise<CpuUse | null> | null = null;
    child.stderr!.on('data', (d) => {
      stderr += d;
      if (opts.mark && atMark === null && stderr.includes(opts.mark)) atMark = cpuUse(child.pid!);
    });
    const sampler = setInterval(async () => {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
      const kib = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      if (kib > peak) peak = kib;
      cpu = (await cpuUse(child.pid!)) ?? cpu;
    }, 50);
    child.on('close', async (code) => {
      clearInterval(sampler);
      const exitedAt = Date.now();
      const marked = await (atMark ?? Promise.resolve(null));
      if (cpu && marked) cpu = { ...(cpu as CpuUse), at_streaming_s: marked.all_threads_s };
      if (code === 0) resolve({ peakRssKib: peak, stderr, stdout, exitedAt, cpu });
      else reject(new Error(`${args[0]} exited ${code}: ${stderr.slice(-2000)}`));
    });
  });
}

async function latency(db: pg.Client, shipArgs: string[], envVars: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, ...shipArgs, '--batch-max-age', '250ms'], { env: envVars, stdio: 'ignore' });
  await sleep(2000);
  const poller = new pg.Client(clientConfig(db));
  await poller.connect();
  const samples: number[] = [];
  for (let i = 0; i < 200; i++) {
    await db.query('BEGIN');
    await db.query(`INSERT INTO customers (id, full_name) VALUES ($1, 'latency')`, [-1 - i]);
    // The commit record starts after this position: once the slot confirms past it, the row is locked in S3.
    const before = (await db.query('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l as string;
    await db.query('COMMIT');
    const t0 = performance.now();
    for (;;) {
      const r = await poller.query(`SELECT confirmed_flush_lsn > $1::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = 'pg_audit_shipper'`, [before]);
      if (r.rows[0]?.done) break;
      await sleep(2);
    }
    samples.push(performance.now() - t0);
    await sleep(20);
  }
  await poller.end();
  child.kill('SIGTERM');
  await new Promise((r) => child.on('close', r));
  samples.sort((a, b) => a - b);
  return {
    commits: samples.length,
    batch_max_age_ms: 250,
    p50_ms: Math.round(samples[Math.floor(samples.length * 0.5)]!),
    p99_ms: Math.round(samples[Math.floor(samples.length * 0.99)]!),
  };
}

function clientConfig(db: pg.Client): pg.ClientConfig {
  const p = db as unknown as { connectionParameters: { host: string; port: number; user: string; database: string } };
  return { host: p.connectionParameters.host, port: p.connectionParameters.port, user: p.connectionParameters.user, database: p.connectionParameters.database };
}

async function triggerCost(db: pg.Client, dbUrl: string) {
  await db.query('CREATE TABLE bench_plain (id bigserial PRIMARY KEY, name text NOT NULL)');
  await db.query('CREATE TABLE bench_protected (id bigserial PRIMARY KEY, name text NOT NULL)');
  await protect(db, 'public.bench_protected', undefined);
  const dir = await mkdtemp(path.join(tmpdir(), 'bench-pgbench-'));
  const tps = async (table: string): Promise<number> => {
    const script = path.join(dir, `${table}.sql`);
    await writeFile(script, `INSERT INTO ${table} (name) VALUES ('x');\n`);
    await db.query('CHECKPOINT'); // each run starts with the same WAL state
    const { stdout } = await run(`${PGBIN}/pgbench`, ['-n', '-c', '2', '-j', '2', '-T', '10', '-f', script, dbUrl]);
    return Number(/tps = ([\d.]+)/.exec(stdout)![1]);
  };
  // Rounds of both, back to back, each round giving a ratio; the order alternates, so neither side
  // is always the one that runs on a larger table or after the other's autovacuum.
  const rounds: { plain_tps: number; protected_tps: number; ratio: number }[] = [];
  for (let i = 0; i < 5; i++) {
    const got: Record<string, number> = {};
    for (const table of i % 2 === 0 ? ['bench_plain', 'bench_protected'] : ['bench_protected', 'bench_plain']) got[table] = await tps(table);
    const [plain, prot] = [got.bench_plain!, got.bench_protected!];
    rounds.push({ plain_tps: Math.round(plain), protected_tps: Math.round(prot), ratio: round(prot / plain) });
  }
  const mid = medianRound(rounds);
  return {
    plain_tps: mid.plain_tps,
    protected_tps: mid.protected_tps,
    ratio: mid.ratio,
    ratio_range: [Math.min(...rounds.map((r) => r.ratio)), Math.max(...rounds.map((r) => r.ratio))],
    target_ratio: 0.9,
    seconds_each: 10,
    rounds,
  };
}

/**
 * What reading costs: pgbench (2 clients, 8 s a side) of lookups by key and of 100-row range scans
 * on four copies of one table: unprotected; protected with --reads statements (pgaudit logs each
 * statement, the read-context policy writes a line per scan); --reads rows (a WAL message per row
 * returned, no log line); --reads both. Each round runs the four back to back in rotating order;
 * the median round (by the rows ratio) is reported, with the WAL written per transaction (row
 * reads are WAL; pgaudit's lines are not).
 */
async function readCost(adminUrl: string) {
  const url = new URL(adminUrl);
  url.pathname = '/bench_reads';
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS bench_reads');
  await admin.query('CREATE DATABASE bench_reads');
  await admin.end();
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  try {
    await init(db, { example: false, log: createLogger('silent') });
    for (const t of ['reads_plain', 'reads_statements', 'reads_rows', 'reads_both']) {
      await db.query(`CREATE TABLE ${t} (id int PRIMARY KEY, name text NOT NULL, note text)`);
      await db.query(`INSERT INTO ${t} SELECT g, 'patient ' || g, repeat('x', 200) FROM generate_series(1, 100000) g`);
      await db.query(`VACUUM ANALYZE ${t}`);
    }
    await protect(db, 'public.reads_statements', undefined, { reads: 'statements' });
    await protect(db, 'public.reads_rows', undefined, { reads: 'rows' });
    await protect(db, 'public.reads_both', undefined, { reads: 'both' });
    // As an application reads: a role without superuser (which would skip row-level security).
    await ensureReader(db);
    await db.query('GRANT SELECT ON reads_plain, reads_statements, reads_rows, reads_both TO bench_reader');
    const reader = new URL(url.toString());
    reader.username = 'bench_reader';
    const dir = await mkdtemp(path.join(tmpdir(), 'bench-reads-'));
    const scripts = {
      pk: (t: string) => `\\set id random(1, 100000)\nSELECT name FROM ${t} WHERE id = :id;\n`,
      range: (t: string) => `\\set id random(1, 99900)\nSELECT name FROM ${t} WHERE id BETWEEN :id AND :id + 99;\n`,
    };
    const measure = async (kind: keyof typeof scripts, t: string): Promise<{ tps: number; wal_per_tx: number }> => {
      const script = path.join(dir, `${kind}-${t}.sql`);
      await writeFile(script, scripts[kind](t));
      const before = (await db.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0]!.l;
      const { stdout } = await run(`${PGBIN}/pgbench`, ['-n', '-c', '2', '-j', '2', '-T', '8', '-f', script, reader.toString()]);
      const wal = Number((await db.query<{ b: string }>('SELECT (pg_current_wal_insert_lsn() - $1::pg_lsn)::text AS b', [before])).rows[0]!.b);
      const tx = Number(/number of transactions actually processed: (\d+)/.exec(stdout)![1]);
      return { tps: Number(/tps = ([\d.]+)/.exec(stdout)![1]), wal_per_tx: Math.round(wal / tx) };
    };
    const out: Record<string, unknown> = { seconds_each: 8, clients: 2, table_rows: 100_000 };
    for (const kind of ['pk', 'range'] as const) {
      const rounds: (Record<string, number> & { ratio: number })[] = [];
      for (let i = 0; i < 3; i++) {
        const order = ['reads_plain', 'reads_statements', 'reads_rows', 'reads_both'];
        const got: Record<string, { tps: number; wal_per_tx: number }> = {};
        for (const t of [...order.slice(i), ...order.slice(0, i)]) got[t] = await measure(kind, t);
        const plain = got.reads_plain!.tps;
        const round_: Record<string, number> & { ratio: number } = { plain_tps: Math.round(plain), ratio: 0 };
        for (const mode of ['statements', 'rows', 'both']) {
          const m = got[`reads_${mode}`]!;
          round_[`${mode}_tps`] = Math.round(m.tps);
          round_[`${mode}_ratio`] = round(m.tps / plain);
          round_[`${mode}_wal_per_tx`] = m.wal_per_tx;
        }
        round_.ratio = round_.rows_ratio!;
        rounds.push(round_);
      }
      out[kind] = { ...medianRound(rounds), rounds };
    }
    return out;
  } finally {
    await db.end();
  }
}

/**
 * How busy the whole machine's CPUs were from now until the returned function is called (0..1), or
 * null where /proc/stat is not there. The baseline and the shipper share the cores with the
 * database and the S3 server, so this says whether a side was limited by CPU or by waiting.
 */
function cpuMeter(): () => number | null {
  const sample = (): number[] | null => {
    try {
      return readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    } catch {
      return null;
    }
  };
  const a = sample();
  return () => {
    const b = sample();
    if (!a || !b) return null;
    const d = b.map((v, i) => v - a[i]!);
    const total = d.reduce((x, y) => x + y, 0);
    const idle = d[3]! + d[4]!; // idle + iowait
    return total > 0 ? round((total - idle) / total) : null;
  };
}

/** The median over rounds of the shipper's CPU (seconds, as `pick` reads it) per event, in microseconds; null when not measured. */
function perEvent(rounds: { ship_cpu: CpuUse | null }[], pick: (c: CpuUse) => number | null): number | null {
  const us = rounds.map((r) => (r.ship_cpu ? pick(r.ship_cpu) : null));
  return us.some((x) => x === null) ? null : round((median(us as number[]) * 1e6) / ROWS);
}

/** The median round's scheduler figures, in words (see CpuUse). */
function cpuLine(m: { ship_s: number; ship_cpu: CpuUse | null }): string {
  if (!m.ship_cpu) return '- (no scheduler statistics on this machine: how the shipper waited for the CPU is not known)';
  const c = m.ship_cpu;
  return `- In the median round (${m.ship_s}s) the shipper's main thread, which reads the stream and encodes and chains every record,
  ran ${c.main_run_s}s and was ready to run but waiting for a free core ${c.main_wait_s}s; all its threads used ${c.all_threads_s}s of CPU.`;
}

function pct(x: number | null): string {
  return x === null ? 'n/a' : `${Math.round(x * 100)}%`;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - t0) / 1000, value };
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** The round whose ratio is the median (the report shows that round's own numbers beside it). */
function medianRound<R extends { ratio: number }>(rounds: R[]): R {
  return [...rounds].sort((a, b) => a.ratio - b.ratio)[Math.floor(rounds.length / 2)]!;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function readsLines(r: Record<string, Record<string, number>> | undefined): string {
  if (!r) return '';
  const line = (what: string, x: Record<string, number>): string =>
    `  - ${what}: unprotected ${x.plain_tps} tps; --reads statements ${x.statements_tps} tps (${x.statements_ratio}); ` +
    `--reads rows ${x.rows_tps} tps (${x.rows_ratio}), ${x.rows_wal_per_tx} bytes of WAL per transaction; ` +
    `--reads both ${x.both_tps} tps (${x.both_ratio}).`;
  return `- Reads (pgbench, 2 clients, 8 s a side, median of 3 rounds; ratios against the unprotected table):\n${line('lookup by key', r.pk!)}\n${line('100-row range', r.range!)}\n`;
}

function readMessagesLine(x: Record<string, number> | undefined): string {
  if (!x) return '';
  return (
    `- Row reads through the slot (${x.messages} rows read, 1,000 a statement, from a table protected with --reads rows): pg_recvlogical (messages on) ` +
    `${x.pg_recvlogical_s}s, ship --drain ${x.ship_s}s (${x.ship_streaming_s}s streaming): ratio ${x.ratio}, ${x.streaming_ratio} streaming only; ` +
    `the shipper's CPU ${x.ship_cpu_us_per_message ?? 'n/a'} us per message.\n`
  );
}

type KeyIndexResult = Awaited<ReturnType<typeof keyIndexBench>>;
type ParallelVerifyResult = Awaited<ReturnType<typeof parallelVerifyBench>>;

function parallelVerifyLines(x: ParallelVerifyResult | undefined): string {
  if (!x) return '';
  const side = (s: ParallelVerifyResult['one_thread']): string =>
    `${s.seconds} s (${s.events_per_s} events/s), CPU ${s.cpu_s ?? 'n/a'} s (${s.cpu_s ? (s.cpu_s / s.seconds).toFixed(2) : 'n/a'} cores busy), peak RSS ${s.peak_rss_mib} MiB`;
  return `
\`verify --full\` over a synthetic archive of ${x.events} events (${x.files} files, file://; median of ${x.rounds} alternating rounds; measured ${x.measured_at}):
--workers 0 (the walk and every file on one thread) ${side(x.one_thread)}; --workers ${x.workers} ${side(x.workers_side)}:
${x.ratio}x the events/s (rounds: ${x.ratio_range.join(' to ')}; target >= ${x.target_ratio}). Both reports identical: ${x.same_report}.
One thread already keeps more than one core busy (V8 collects garbage on threads of its own), which bounds the ratio on two cores below 2.
${
  x.query
    ? `\`query --action UPDATE\` over the same archive (every file read, ${x.query.matches} events written out): --workers 0 ${side(x.query.one_thread)}; ` +
      `--workers ${x.workers} ${side(x.query.workers_side)}: ${x.query.ratio}x. Same answer: ${x.query.same_answer}.\n`
    : ''
}`;
}

function keyIndexLines(x: KeyIndexResult | undefined): string {
  if (!x) return '';
  const rows = x.sizes.map(
    (s) =>
      `| ${(s.events / 1e6).toString()}M | ${s.files} | ${s.target_files} | ${s.files_read} | ${s.query_s} s | ${s.query_peak_rss_mib} MiB | ${s.digest_kib_per_file} KiB / ${s.data_kib_per_file} KiB | ${s.seal_s} s |`,
  );
  const b = x.baseline;
  return `
\`query --customer X\` over synthetic archives sealed by the sealer (a hospital at 5,000 events/s, files of 10,000 records, X in one file in a thousand;
median of 3 queries, file:// archive; measured ${x.measured_at}, no database involved). Time should grow with the files that match, not with the archive: largest over smallest ${x.ratio_largest_to_smallest} (target <= ${x.target_ratio}).

| events | files | files holding X | files read | query | peak RSS | digest / data per file | sealing |
| --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Baseline, same run: the ${b ? `${(b.events / 1e6).toString()}M archive with its digests rewritten as format 2 (no index): ${b.files_read} files read, ${b.query_s} s` : 'none'}.
`;
}

function report(r: Record<string, unknown>): string {
  const t = r.throughput as Record<string, number>;
  const l = r.latency as Record<string, number>;
  const b = r.backlog as Record<string, number>;
  const f = r.backfill as Record<string, number>;
  const g = r.trigger as Record<string, number>;
  const v = r.verify as Record<string, number>;
  const q = r.query as Record<string, number>;
  const m = r.machine as Record<string, unknown>;
  type IngestRun = { [k: string]: number; bytes: number };
  const ig = r.ingest as { normal: IngestRun; huge_record: IngestRun; target_peak_rss_mib: number };
  const s = r.settings as Record<string, unknown>;
  return `# Benchmark results

Measured by \`npm run bench\` on ${m.cpus} cores (${m.cpu}), ${m.memory_gib} GiB, Node ${m.node};
PostgreSQL 15 with fsync=${s.fsync}, synchronous_commit=${s.synchronous_commit}; Ceph radosgw (memstore) as S3.
Each number is compared with a baseline measured in the same run.

| what | baseline | pg-audit-shipper | ratio | target |
| --- | --- | --- | --- | --- |
| decode ${s.rows} events (commit to locked S3 object), median of ${s.rounds} rounds | pg_recvlogical ${t.pg_recvlogical_events_per_s}/s | ${t.ship_to_locked_s3_events_per_s}/s | ${t.ratio} (rounds: ${(t.ratio_range as unknown as number[]).join(' to ')}) | >= ${t.target_ratio} |
| the same rounds, the shipper timed from "streaming from the slot" (start-up of ${t.ship_start_up_s}s left out) | | | ${t.streaming_ratio} | |
| audit trigger, single-row inserts (pgbench, 2 clients, 10 s a side), median of ${(g.rounds as unknown as unknown[]).length} rounds | unprotected ${g.plain_tps} tps | protected ${g.protected_tps} tps | ${g.ratio} (rounds: ${(g.ratio_range as unknown as number[]).join(' to ')}) | >= ${g.target_ratio} |

- Both cores were ${pct(t.cpu_busy_recv ?? null)} busy while pg_recvlogical ran and ${pct(t.cpu_busy_ship ?? null)} while the shipper did (median
  round): the database's walsender, the S3 server and the shipper share this machine's two cores.
${cpuLine(t.median_round as unknown as { ship_s: number; ship_cpu: CpuUse | null })}
- The shipper's CPU per event (all its threads, from /proc; median of the rounds): ${t.ship_cpu_us_per_event ?? 'n/a'} us over the whole run,
  ${t.ship_cpu_us_per_event_streaming ?? 'n/a'} us from "streaming from the slot" on (start-up left out, as a shipper that runs for months spends it); target <= ${t.target_cpu_us_per_event} us.
- Commit-to-locked latency (${l.commits} single-row commits, --batch-max-age ${l.batch_max_age_ms}ms): p50 ${l.p50_ms} ms, p99 ${l.p99_ms} ms.
  The age limit dominates: a file is sealed when its first record is that old (default 5s).
- \`verify --full\` over the whole archive (${v.events} events, S3): ${v.seconds}s (${v.events_per_s} events/s), peak RSS ${v.peak_rss_mib} MiB.
- \`query --row-id 4711\` over the same archive (no time range: every file read and verified): ${q.seconds}s (${q.events_per_s} events/s), peak RSS ${q.peak_rss_mib} MiB.
- \`ingest\` of ${ig.normal.events} pgaudit reads, each followed by the server's read-context line (${Math.round(ig.normal.bytes / 2 ** 20)} MiB): ${ig.normal.seconds}s, ${ig.normal.events_per_s} events/s
  (${ig.normal.mib_per_s} MiB/s; \`cat\` reads the same file at ${ig.normal.cat_mib_per_s} MiB/s), peak RSS ${ig.normal.peak_rss_mib} MiB.
  A log holding one ${ig.huge_record.record_mib} MiB record (a statement of quotes) and 5 normal lines: ${ig.huge_record.seconds}s
  (${ig.huge_record.mib_per_s} MiB/s), all 6 events stored (statement kept: ${ig.huge_record.longest_statement_kept} characters), peak RSS ${ig.huge_record.peak_rss_mib} MiB (target <= ${ig.target_peak_rss_mib}).
- Backlog of ${b.events} events shipped in ${b.seconds}s (${b.events_per_s}/s) with a peak RSS of ${b.peak_rss_mib} MiB (target <= ${b.target_peak_rss_mib} MiB);
  pg_recvlogical decoded the same backlog at ${b.pg_recvlogical_events_per_s}/s: ratio ${b.ratio} (one round), ${b.streaming_ratio} from "streaming from the slot".
- The same number of rows committed before the slot existed (the initial backfill, from the slot's snapshot): ${f.initial_seconds}s,
  peak RSS ${f.initial_peak_rss_mib} MiB; recovery after the slot was dropped (every archived id read to skip it): ${f.recovery_seconds}s,
  peak RSS ${f.recovery_peak_rss_mib} MiB (target <= ${f.target_peak_rss_mib} MiB for both).
${readsLines(r.reads as Record<string, Record<string, number>> | undefined)}${readMessagesLine(r.row_reads as Record<string, number> | undefined)}${keyIndexLines(r.key_index as KeyIndexResult | undefined)}${parallelVerifyLines(r.parallel_verify as ParallelVerifyResult | undefined)}
Reproduce: \`npm run bench\` (BENCH_ROWS, BENCH_ROUNDS, BENCH_READS and BENCH_BACKLOG change the sizes).
`;
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack}\n`);
  process.exit(1); // the database connection would otherwise keep a failed run waiting forever
});
