import type pg from 'pg';
import { ConfigError, ServiceError } from '../errors.js';
import { describePgError } from '../db.js';

/** `schema.table` or `table` (public). Quoted identifiers are passed through to regclass as typed. */
export function parseTableName(name: string): string {
  if (!/^("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)(\.("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*))?$/.test(name)) {
    throw new ConfigError(`table "${name}" is not a table name: use schema.table, e.g. public.customers`);
  }
  return name;
}

async function callAudit<R extends pg.QueryResultRow = pg.QueryResultRow>(client: pg.Client, sql: string, params: unknown[], what: string): Promise<R[]> {
  try {
    return (await client.query<R>(sql, params)).rows;
  } catch (err) {
    const e = err as { code?: string };
    if (e.code === '3F000' || e.code === '42883' || e.code === '42703') {
      throw new ServiceError(
        `${what}: the audit schema is not installed in this database, or is older than this version; run \`pg-audit-shipper init\` (it upgrades in place)`,
      );
    }
    if (e.code === '42P01') throw new ConfigError(`${what}: ${describePgError(err)}`);
    throw new ServiceError(`${what}: ${describePgError(err)}`);
  }
}

/**
 * attributeReads (default): the table gets the row-level security policy audit_read_context, through
 * which the server records app.user_id and app.customer_id in every read (sql/migrations/007).
 * rowReads: every row read is recorded with its key, through that policy and the replication slot
 * (sql/migrations/008); unset keeps what the table had (with its key as protected now).
 */
export async function protect(
  client: pg.Client,
  table: string,
  keyColumns: string[] | undefined,
  opts: { attributeReads?: boolean; rowReads?: boolean } = {},
): Promise<void> {
  const name = parseTableName(table);
  const attributeReads = opts.attributeReads ?? true;
  if (opts.rowReads === true && !attributeReads) {
    throw new ConfigError('--row-reads on records reads through the policy that --read-context on installs: use both, or --row-reads off');
  }
  const what = `cannot protect ${table}`;
  await callAudit(client, 'BEGIN', [], what);
  try {
    const now = await callAudit<{ on: boolean }>(
      client,
      'SELECT row_reads IS NOT NULL AS on FROM audit.protected_tables WHERE relid = to_regclass($1) AND part_of IS NULL',
      [name],
      what,
    );
    const wasOn = now[0]?.on === true;
    const rowReads = opts.rowReads ?? (wasOn && attributeReads);
    // Off first when they go: protect() may drop the policy that carries them (--read-context off).
    if (wasOn && !rowReads) await callAudit(client, 'SELECT audit.set_row_reads($1::regclass, false)', [name], what);
    await callAudit(
      client,
      'SELECT audit.protect($1::regclass, $2::text[], $3::boolean)',
      [name, keyColumns?.length ? keyColumns : null, attributeReads],
      what,
    );
    if (rowReads) await callAudit(client, 'SELECT audit.set_row_reads($1::regclass, true)', [name], what);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Logins whose reads skip row-level security (superusers, BYPASSRLS): with row reads on, their
 * reads have no row events (their statements are still pgaudit's).
 */
export async function rowSecurityBypassers(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolcanlogin AND (rolsuper OR rolbypassrls) ORDER BY rolname');
  return rows.map((r) => r.rolname);
}

export async function unprotect(client: pg.Client, table: string): Promise<void> {
  await callAudit(client, 'SELECT audit.unprotect($1::regclass)', [parseTableName(table)], `cannot unprotect ${table}`);
}
