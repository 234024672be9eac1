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

async function callAudit(client: pg.Client, sql: string, params: unknown[], what: string): Promise<void> {
  try {
    await client.query(sql, params);
  } catch (err) {
    const e = err as { code?: string };
    if (e.code === '3F000' || e.code === '42883') {
      throw new ServiceError(`${what}: the audit schema is not installed in this database; run \`pg-audit-shipper init\` first`);
    }
    if (e.code === '42P01') throw new ConfigError(`${what}: ${describePgError(err)}`);
    throw new ServiceError(`${what}: ${describePgError(err)}`);
  }
}

/**
 * attributeReads (default): the table gets the row-level security policy audit_read_context, through
 * which the server records app.user_id and app.customer_id in every read (sql/migrations/007).
 */
export async function protect(client: pg.Client, table: string, keyColumns: string[] | undefined,
  opts: { attributeReads?: boolean } = {}): Promise<void> {
  await callAudit(client, 'SELECT audit.protect($1::regclass, $2::text[], $3::boolean)',
    [parseTableName(table), keyColumns?.length ? keyColumns : null, opts.attributeReads ?? true], `cannot protect ${table}`);
}

export async function unprotect(client: pg.Client, table: string): Promise<void> {
  await callAudit(client, 'SELECT audit.unprotect($1::regclass)', [parseTableName(table)], `cannot unprotect ${table}`);
}
