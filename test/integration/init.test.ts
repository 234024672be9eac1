import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { freshDatabase, withClient } from '../helpers/db.js';
import { runCli } from '../helpers/cli.js';

/** Everything init defines, as text: if a second run changed anything, this changes. */
async function fingerprint(url: string): Promise<string> {
  return withClient(url, async (c) => {
    const q = await c.query(`
      SELECT (SELECT string_agg(p.proname || md5(p.prosrc) || coalesce(array_to_string(p.proconfig, ','), ''), ';' ORDER BY p.proname)
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'audit') AS procs,
             (SELECT string_agg(tgname::text || tgrelid::regclass::text || tgfoid::text || tgtype::text, ';' ORDER BY tgname, tgrelid::regclass::text)
                FROM pg_trigger WHERE NOT tgisinternal) AS triggers,
             (SELECT string_agg(c.relname || c.relkind::text || coalesce(c.relacl::text, ''), ';' ORDER BY c.relname)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('audit', 'public')) AS rels,
             (SELECT string_agg(id || checksum || applied_at, ';' ORDER BY id) FROM audit.schema_migrations) AS migrations,
             (SELECT string_agg(array_to_string(setconfig, ','), ';') FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
               WHERE d.datname = current_database()) AS settings`);
    return JSON.stringify(q.rows[0]);
  });
}

describe('init', () => {
  it('installs the schema once; a second run changes nothing', async () => {
    const db = await freshDatabase('init', { init: false });
    const first = await runCli(['init', '--example'], { DATABASE_URL: db.url });
    expect(first.stderr).not.toMatch(/error/);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(
      'applied migrations/001_audit_schema, migrations/002_shipping, migrations/003_review, migrations/004_protection, migrations/005_partitions_keys, migrations/006_attestation, migrations/007_read_context, migrations/008_row_reads, migrations/009_row_reads_only, migrations/010_log_over_sql, migrations/011_partition_row_reads, migrations/012_console, migrations/013_capture_gaps, migrations/014_ingest_seen_size, migrations/015_pgaudit_log_rows, example/001_customers',
    );
    const before = await fingerprint(db.url);
    const second = await runCli(['init', '--example'], { DATABASE_URL: db.url });
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('nothing changed');
    expect(await fingerprint(db.url)).toBe(before);
    // pgaudit is configured for this database: object auditing through audit_auditor, SETs logged.
    const settings = await withClient(
      db.url,
      async (c) => (await c.query(`SELECT current_setting('pgaudit.role') AS role, current_setting('pgaudit.log') AS log`)).rows[0],
    );
    expect(settings).toEqual({ role: 'audit_auditor', log: 'misc_set' });
  });

  it('refuses to run over an applied migration whose content changed', async () => {
    const db = await freshDatabase('drift');
    await withClient(db.url, (c) => c.query(`UPDATE audit.schema_migrations SET checksum = 'x' WHERE id = 'migrations/001_audit_schema'`));
    const r = await runCli(['init'], { DATABASE_URL: db.url });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/migrations\/001_audit_schema was applied with different content/);
  });
});

describe('configuration and connection errors: one line, exit 2', () => {
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['missing URL', ['init'], {}, /--database-url \(DATABASE_URL\) is required/],
    ['not a URL', ['init'], { DATABASE_URL: 'localhost:5432' }, /--database-url \(DATABASE_URL\) is invalid: must be a postgresql:\/\/ URL/],
    [
      'unreachable server',
      ['init', '--database-url', 'postgresql://u:hunter2@127.0.0.1:1/db'],
      {},
      /cannot connect to PostgreSQL at postgresql:\/\/u:\*\*\*@127\.0\.0\.1:1\/db: .*ECONNREFUSED/,
    ],
    ['unknown database', ['init'], {}, /does not exist/],
  ];
  for (const [name, args, env, re] of cases) {
    it(name, async () => {
      const e = name === 'unknown database' ? { DATABASE_URL: `${process.env.TEST_DATABASE_URL!.replace('/postgres?', '/no_such_db?')}` } : env;
      const r = await runCli(args, e);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(re);
      expect(r.stderr).not.toMatch(/hunter2|\bat .*\.js:\d+/);
    });
  }

  it('a server without pgaudit', async () => {
    // A second, throwaway cluster that does not preload pgaudit.
    const dir = await mkdtemp(path.join(tmpdir(), 'pgas-nopgaudit-'));
    const script = path.resolve('scripts/test-services/pg.sh');
    const env = execFileSync('bash', [script, 'start', dir], { env: { ...process.env, PG_PRELOAD: '', PG_FAST: '1' } }).toString();
    try {
      const url = /DATABASE_URL='([^']+)'/.exec(env)![1]!;
      const r = await runCli(['init'], { DATABASE_URL: url });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/pgaudit is not loaded on this server.*shared_preload_libraries/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    } finally {
      execFileSync('bash', [script, 'stop', dir, '--rm']);
    }
  });

  it('a bad flag value names the flag', async () => {
    const r = await runCli(['ingest', '--statement-max-length', 'lots'], { DATABASE_URL: 'postgresql://x@h/d', PGAUDIT_LOG_DIR: '/tmp' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--statement-max-length \(AUDIT_STATEMENT_MAX_LENGTH\) is invalid: takes a whole number from 16 to 1000000, not "lots"/);
  });
});
