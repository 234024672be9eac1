import pg from 'pg';
import { ServiceError } from './errors.js';
import { redactUrl } from './config.js';

/**
 * Connect with an error an operator can act on. node-postgres' own messages ("ECONNREFUSED",
 * "password authentication failed") are kept, prefixed with where we tried to go.
 */
export async function connect(databaseUrl: string, applicationName = 'pg-audit-shipper'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: applicationName, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new ServiceError(`cannot connect to PostgreSQL at ${redactUrl(databaseUrl)}: ${describePgError(err)}`);
  }
  // A dropped connection emits 'error' on the client; without a listener Node would crash the process.
  client.on('error', () => undefined);
  return client;
}

export function describePgError(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { message?: string; code?: string; hint?: string; errors?: unknown[] };
    if (Array.isArray(e.errors) && e.errors.length > 0) return describePgError(e.errors[0]);
    const msg = e.message || e.code || 'unknown error';
    const withCode = e.code && !msg.includes(e.code) ? `${msg} (${e.code})` : msg;
    return e.hint ? `${withCode}; hint: ${e.hint}` : withCode;
  }
  return String(err);
}

export async function inTransaction<T>(client: pg.Client, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const out = await fn();
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
