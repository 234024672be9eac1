import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { ServiceError } from '../errors.js';
import { describePgError, inTransaction } from '../db.js';
import { SQL_DIR } from '../paths.js';
import type { Logger } from '../log.js';
import { adaptForAdmin, TRY_AS_THEY_ARE, type Gap } from './adapt.js';

export interface Migration {
  /** e.g. "migrations/001_audit_schema" */
  id: string;
  sql: string;
  checksum: string;
}

export interface InitResult {
  applied: string[];
  alreadyApplied: string[];
  warnings: string[];
  /** what could not be done without a superuser (open gaps, audit.capture_gaps), and gaps this run closed */
  gaps: Gap[];
  closed: string[];
}

async function loadSet(folder: 'migrations' | 'example'): Promise<Migration[]> {
  const dir = path.join(SQL_DIR, folder);
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return Promise.all(
    files.map(async (f) => {
      const sql = await readFile(path.join(dir, f), 'utf8');
      return { id: `${folder}/${f.replace(/\.sql$/, '')}`, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

/** The newest migration this release carries: what `init` brings a database to (doctor compares). */
export async function latestMigration(): Promise<string> {
  return (await loadSet('migrations')).at(-1)!.id;
}

/** Preconditions the capture side cannot work without, checked before anything is written. */
export async function checkServer(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('shared_preload_libraries', 'wal_level', 'ssl', 'server_version_num')`,
  );
  const s = Object.fromEntries(rows.map((r) => [r.name, r.setting]));
  if (!/(^|[,\s])pgaudit($|[,\s])/.test(s.shared_preload_libraries ?? '')) {
    throw new ServiceError(
      'pgaudit is not loaded on this server: install it (Debian: postgresql-15-pgaudit), add pgaudit to ' +
        'shared_preload_libraries in postgresql.conf and restart PostgreSQL',
    );
  }
  if (Number(s.server_version_num) < 150000) {
    throw new ServiceError(`PostgreSQL ${s.server_version_num} is too old: pg-audit-shipper needs 15 or later`);
  }
  const warnings: string[] = [];
  if (s.wal_level !== 'logical') {
    warnings.push(`wal_level is ${s.wal_level}: set wal_level = logical and restart, or \`ship\` cannot stream audit_log`);
  }
  if (s.ssl !== 'on') {
    warnings.push('ssl is off: PHI and audit data cross the network in clear text; enable ssl and use hostssl-only pg_hba.conf rules');
  }
  return warnings;
}

/**
 * Apply what is not applied yet, in one transaction, under an advisory lock so two `init`s
 * cannot interleave. An applied migration whose file changed is an error: history is not rewritten.
 */
export async function init(client: pg.Client, opts: { example: boolean; log: Logger }): Promise<InitResult> {
  const warnings = await checkServer(client);
  for (const w of warnings) opts.log.warn(w);
  const wanted = [...(await loadSet('migrations')), ...(opts.example ? await loadSet('example') : [])];
  // Roles are cluster-wide but advisory locks are per database: an `init` of another database in
  // the same cluster can create a role between our check and our CREATE. The retry sees it.
  for (let attempt = 1; ; attempt++) {
    try {
      return await applyMigrations(client, wanted, warnings, opts.log);
    } catch (err) {
      const raced = (err as { code?: string }).code === '23505' && attempt < 3;
      if (!raced) throw err instanceof ServiceError ? err : new ServiceError(`init failed, nothing was changed: ${describePgError(err)}`);
      opts.log.info({ attempt }, 'another init created a shared role at the same time; retrying');
    }
  }
}

async function applyMigrations(client: pg.Client, wanted: Migration[], warnings: string[], log: Logger): Promise<InitResult> {
  return await inTransaction(client, async () => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('pg-audit-shipper init'))`);
    const known = new Map<string, string>();
    const {
      rows: [reg],
    } = await client.query<{ t: string | null }>(`SELECT to_regclass('audit.schema_migrations')::text AS t`);
    if (reg?.t) {
      const { rows } = await client.query<{ id: string; checksum: string }>('SELECT id, checksum FROM audit.schema_migrations');
      for (const r of rows) known.set(r.id, r.checksum);
    }
    const result: InitResult = { applied: [], alreadyApplied: [], warnings, gaps: [], closed: [] };
    // A managed platform's admin role is no superuser: the statements only a superuser may run are
    // left out (src/capture/adapt.ts), each recorded as a gap; a superuser's init closes them.
    const {
      rows: [me],
    } = await client.query<{ superuser: boolean }>('SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = current_user');
    const superuser = me?.superuser === true;
    for (const m of wanted) {
      const prior = known.get(m.id);
      if (prior === m.checksum) {
        result.alreadyApplied.push(m.id);
        continue;
      }
      if (prior) {
        throw new ServiceError(
          `migration ${m.id} was applied with different content (checksum ${prior.slice(0, 12)}…): ` +
            'applied migrations are never edited; add a new migration instead',
        );
      }
      if (superuser) {
        await client.query(m.sql);
      } else {
        let asIs = false;
        if (TRY_AS_THEY_ARE.has(m.id)) {
          await client.query('SAVEPOINT as_is');
          try {
            await client.query(m.sql);
            asIs = true;
          } catch (err) {
            if ((err as { code?: string }).code !== '42501') throw err;
            await client.query('ROLLBACK TO SAVEPOINT as_is'); // refused: adapted below
          }
        }
        if (!asIs) {
          const adapted = adaptForAdmin(m.id, m.sql);
          await client.query(adapted.sql);
          result.gaps.push(...adapted.gaps);
        }
      }
      await client.query(`CREATE TABLE IF NOT EXISTS audit.schema_migrations (
          id text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      await client.query('ALTER TABLE audit.schema_migrations OWNER TO audit_owner');
      await client.query('INSERT INTO audit.schema_migrations (id, checksum) VALUES ($1, $2)', [m.id, m.checksum]);
      log.info({ migration: m.id }, 'applied');
      result.applied.push(m.id);
    }
    for (const g of result.gaps) {
      await client.query('INSERT INTO audit.capture_gaps (gap, consequence, remedy, repair) VALUES ($1, $2, $3, $4) ON CONFLICT (gap) DO NOTHING', [
        g.gap,
        g.consequence,
        g.remedy,
        g.sql,
      ]);
    }
    const open = (await client.query<Gap>('SELECT gap, consequence, remedy, repair AS sql FROM audit.capture_gaps ORDER BY noted_at, gap')).rows;
    if (superuser) {
      for (const g of open) {
        // The DDL guard, once there, checks every protected table at once: one whose triggers were
        // dropped while there was no guard stops it, and the owner's change must be undone first
        // (the whole init rolls back).
        try {
          await client.query(g.sql);
        } catch (err) {
          throw new ServiceError(
            `init failed, nothing was changed: closing what an earlier init as a non-superuser left open (${open.map((x) => x.gap).join(', ')}): ${describePgError(err)}; ` +
              'protect the table it names again (pg-audit-shipper protect <table>: it puts its triggers and policy back), then run init again',
          );
        }
        await client.query('DELETE FROM audit.capture_gaps WHERE gap = $1', [g.gap]);
        log.info({ gap: g.gap }, 'closed a gap an earlier init as a non-superuser left');
        result.closed.push(g.gap);
      }
      result.gaps = [];
    } else {
      result.gaps = open;
    }
    return result;
  });
}
