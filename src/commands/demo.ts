import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import pg from 'pg';
import { settingDefault } from '../config.js';
import { ServiceError } from '../errors.js';
import { createLogger } from '../log.js';
import { SCRIPTS_DIR } from '../paths.js';
import { init } from '../capture/migrate.js';
import { Ingester } from '../capture/ingest/ingester.js';
import { directoryLogs } from '../capture/ingest/log-files.js';
import { keygen, loadSigningKey } from '../seal/keys.js';
import { fileArchive } from '../sink/file/file-archive.js';
import { createMetrics } from '../ship/metrics.js';
import { ship } from '../ship/shipper.js';
import { verifyChain } from '../verify/chain.js';
import { answerQuery } from '../query/answer.js';
import { EVERYTHING, type Query } from '../query/filter.js';

const run = promisify(execFile);

export interface LocalCluster {
  dir: string;
  databaseUrl: string;
  logDir: string;
  stop: () => Promise<void>;
}

/** The project's throwaway PostgreSQL (scripts/test-services/pg.sh): pgaudit, logical decoding, csvlog. */
export async function startLocalCluster(dir?: string): Promise<LocalCluster> {
  const where = dir ? path.resolve(dir) : await mkdtemp('/tmp/pg-audit-shipper-demo-');
  await mkdir(where, { recursive: true });
  // The cluster runs as the postgres OS user, which must be able to enter this directory.
  await chmod(where, 0o755);
  const script = path.join(SCRIPTS_DIR, 'test-services', 'pg.sh');
  let out: string;
  try {
    out = (await run('bash', [script, 'start', path.join(where, 'pg')])).stdout;
  } catch (err) {
    throw new ServiceError(`could not start the local PostgreSQL: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
  }
  const get = (k: string): string => new RegExp(`^${k}='([^']*)'`, 'm').exec(out)?.[1] ?? '';
  return {
    dir: where,
    databaseUrl: get('DATABASE_URL'),
    logDir: get('PGAUDIT_LOG_DIR'),
    stop: async () => {
      await run('bash', [script, 'stop', path.join(where, 'pg')]);
    },
  };
}

/** Application traffic on the example schema: writes, reads as several users, denied access. */
export async function generateTraffic(databaseUrl: string, customers = 20): Promise<void> {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    await admin.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_app') THEN CREATE ROLE demo_app LOGIN IN ROLE phi_app; END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'demo_intruder') THEN CREATE ROLE demo_intruder LOGIN; END IF;
    END $$`);
  } finally {
    await admin.end();
  }
  const as = (user: string, app: string): pg.Client => {
    const u = new URL(databaseUrl);
    u.username = user;
    return new pg.Client({ connectionString: u.toString(), application_name: app });
  };
  const key = 'demo-key-from-a-secret-store';
  const users = ['dr.smith', 'nurse.joy', 'billing.bob'];
  const app = as('demo_app', 'clinic-portal');
  await app.connect();
  try {
    for (let id = 1; id <= customers; id++) {
      const user = users[id % users.length]!;
      await app.query(`SET app.user_id = '${user}'`);
      await app.query(`SET app.customer_id = '${id}'`);
      await app.query(
        `INSERT INTO customers (id, full_name, email_encrypted) VALUES ($1, $2, pgp_sym_encrypt($3, $4))
                       ON CONFLICT (id) DO NOTHING`,
        [id, `Patient ${id}`, `patient${id}@example.org`, key],
      );
      await app.query('SELECT full_name, pgp_sym_decrypt(email_encrypted, $2) FROM customers WHERE id = $1', [id, key]);
      if (id % 3 === 0) await app.query(`UPDATE customers SET full_name = full_name || ' (verified)' WHERE id = $1`, [id]);
      if (id % 7 === 0) await app.query('DELETE FROM customers WHERE id = $1', [id]);
    }
  } finally {
    await app.end();
  }
  const intruder = as('demo_intruder', 'psql');
  await intruder.connect();
  try {
    await intruder.query('SELECT * FROM customers').catch(() => undefined);
    await intruder.query('DELETE FROM audit.audit_log').catch(() => undefined);
  } finally {
    await intruder.end();
  }
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('try it on a fresh machine: a local PostgreSQL, the example schema, traffic, and the audit trail it left')
    .option('--dir <dir>', 'where the local PostgreSQL lives (default: a new directory under /tmp)')
    .option('--keep', 'leave the local PostgreSQL running afterwards')
    .action(async (opts: { dir?: string; keep?: boolean }) => {
      const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
      const say = (s: string): void => {
        process.stdout.write(`${s}\n`);
      };
      say('1/7 starting a local PostgreSQL 15 (pgaudit, wal_level=logical, TLS on TCP)…');
      const cluster = await startLocalCluster(opts.dir);
      try {
        const client = new pg.Client({ connectionString: cluster.databaseUrl });
        await client.connect();
        try {
          say('2/7 installing the audit schema and the example PHI schema (init --example)…');
          await init(client, { example: true, log });
          say('3/7 application traffic: writes and reads by three users across 20 customers, and denied attempts…');
          await generateTraffic(cluster.databaseUrl);
          await new Promise((r) => setTimeout(r, 300)); // the server's logging collector writes asynchronously
          say('4/7 ingesting pgaudit reads from the server log…');
          const stats = await new Ingester(client, {
            logs: directoryLogs(cluster.logDir),
            statementMaxLength: settingDefault('statementMaxLength'),
            log,
          }).runOnce();
          say(`    ${stats.events} read/denied events from ${stats.lines} log lines`);
          say('5/7 shipping audit_log through a replication slot into sealed, signed files (ship --drain)…');
          const archiveDir = path.join(cluster.dir, 'archive');
          const keys = await keygen(path.join(cluster.dir, 'keys'));
          const key = await loadSigningKey(keys.signingKeyPath);
          const shipped = await ship({
            databaseUrl: cluster.databaseUrl,
            archive: fileArchive(archiveDir),
            key,
            verifyKeys: [],
            slot: settingDefault('slot'),
            // Small files (25 records) so the demo's archive shows a chain of several; everything else as ship's defaults.
            limits: { maxRecords: 25, maxBytes: settingDefault('batchMaxBytes'), maxAgeMs: settingDefault('batchMaxAge') },
            maxInflightBytes: settingDefault('maxInflightBytes'),
            heartbeatMs: settingDefault('heartbeatInterval'),
            drain: true,
            graceMs: settingDefault('gracePeriod'),
            log,
            metrics: createMetrics(),
            signal: new AbortController().signal,
            statementMaxLength: settingDefault('statementMaxLength'),
          });
          say(`    ${shipped.records} records in ${shipped.files} files under file://${archiveDir}`);
          say('6/7 verifying the archive: signatures, digest links, every record hash…');
          const report = await verifyChain(fileArchive(archiveDir).reader, { keys: new Map([[key.keyId, key]]) });
          say(
            report.findings.length === 0
              ? `    intact: ${report.files} files, ${report.records} records, head file ${report.head?.file_seq}, signed by key ${key.keyId.slice(0, 16)}…`
              : `    ${report.findings.length} findings: ${report.findings.map((f) => f.message).join('; ')}`,
          );
          say('7/7 questions a compliance officer asks, answered from the archive (query verifies every file it reads):');
          const archive = fileArchive(archiveDir);
          const ask = async (title: string, args: string, query: Query): Promise<void> => {
            say(`\n  ${title}\n  $ pg-audit-shipper query --archive file://${archiveDir} --verify-key ${keys.verifyKeyPath} ${args}\n`);
            const { summary } = await answerQuery(archive, {
              keys: [key],
              query,
              format: 'table',
              maxCommitDelayMs: 86_400_000,
              write: (s) => process.stdout.write(s.replace(/^(?=.)/gm, '  ')),
            });
            process.stdout.write(`\n${summary.replace(/^(?=.)/gm, '  ')}`);
          };
          await ask("Who looked at or changed customer 3's record?", '--customer 3', { ...EVERYTHING, customer: '3' });
          await ask('Every denied access:', '--outcome failure', { ...EVERYTHING, outcome: 'failure' });
        } finally {
          await client.end();
        }
      } finally {
        say(`\narchive and keys: ${cluster.dir}/archive, ${cluster.dir}/keys (docs/format.md shows how to check them by hand)`);
        if (opts.keep) say(`PostgreSQL left running: DATABASE_URL='${cluster.databaseUrl}'  (stop: bash scripts/test-services/pg.sh stop ${cluster.dir}/pg)`);
        else await cluster.stop();
      }
    });
}
