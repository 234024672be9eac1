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
    throw new ServiceError(`cannot connect to PostgreSQL at ${redactUrl(databaseUrl)}: ${describePgError(err)}`, { cause: err });
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

/** SQLSTATEs with which the server ends every session when it shuts down or restarts. */
const SHUTDOWN_CODES = new Set(['57P01', '57P02', '57P03']);

/** The least a caller needs of a connection: ReconnectingClient and pg.Client both have it. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * A connection that comes back. A node-postgres Client is dead for good after its connection fails
 * ("Client has encountered a connection error and is not queryable"): a PostgreSQL restart used to
 * leave the shipper retrying on a dead client forever. This one opens a new client at the next query
 * after a failure; the query that met the failure still fails (its caller retries as it would any
 * error). `onLost` hears every loss (with whether the server said it is shutting down) and
 * `onBack` the first success after one.
 */
export class ReconnectingClient implements Queryable {
  private client: pg.Client | null;
  private lost = false;
  /** the server said, on this connection, that it is shutting down (told to onLost once) */
  private shutdownHeard = false;
  private reopening: Promise<void> | null = null;
  /** The last query given to the connection: the next one starts after it settles. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly databaseUrl: string,
    private readonly applicationName: string,
    first: pg.Client,
    private readonly hooks: { onLost?: (reason: string, shutdown: boolean) => void; onBack?: () => void } = {},
    /** how a new connection is made (tests give a stub) */
    private readonly open: (databaseUrl: string, applicationName: string) => Promise<pg.Client> = connect,
  ) {
    this.client = first;
    this.watch(first);
  }

  private watch(c: pg.Client): void {
    c.on('error', (err: Error & { code?: string }) => this.loseConnection(c, err));
    c.on('end', () => this.loseConnection(c, new Error('the connection was closed')));
  }

  private loseConnection(c: pg.Client, err: Error & { code?: string }): void {
    if (c !== this.client) return;
    const shutdown = SHUTDOWN_CODES.has(err.code ?? '');
    // A query in flight hears the server's shutdown (57P01) as its own error, which its caller
    // tells here a promise reaction later: should the socket's 'end' have been told first (nothing
    // orders the two), the shutdown is still told, once.
    if (this.lost && (!shutdown || this.shutdownHeard)) return;
    this.lost = true;
    this.shutdownHeard ||= shutdown;
    this.hooks.onLost?.(describePgError(err), shutdown);
  }

  /**
   * One query at a time, in the order asked: the shipper's timers (heads, lease, attestations, WAL
   * flush, slot watch) share this connection, and node-postgres queues a query given while another
   * runs only with a deprecation warning (pg 8.23; pg 9 will refuse).
   */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    const run = this.tail.then(() => this.runQuery<R>(text, values));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async runQuery<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
    if (this.lost || this.client === null) {
      // One reconnection at a time: concurrent callers wait for the same one.
      this.reopening ??= this.reopen().finally(() => {
        this.reopening = null;
      });
      await this.reopening;
    }
    try {
      return await this.client!.query<R>(text, values);
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      // A query error on a live connection is the caller's; a dead connection is ours to replace.
      if (SHUTDOWN_CODES.has(code) || !(err as { code?: string }).code) this.loseConnection(this.client!, err as Error);
      throw err;
    }
  }

  private async reopen(): Promise<void> {
    const old = this.client;
    this.client = null;
    void old?.end().catch(() => undefined);
    const fresh = await this.open(this.databaseUrl, this.applicationName).catch((err: Error) => {
      // Refused because the server is shutting down (57P03), after the connection was lost for
      // another reason: heard as a shutdown all the same, so the replication connection is let go
      // (its walsender would otherwise hold the shutdown up while we cannot confirm).
      const code = ((err.cause ?? err) as { code?: string }).code ?? '';
      if (SHUTDOWN_CODES.has(code)) this.hooks.onLost?.(describePgError(err.cause ?? err), true);
      throw err;
    });
    this.client = fresh;
    this.lost = false;
    this.shutdownHeard = false;
    this.watch(fresh);
    this.hooks.onBack?.();
  }

  async end(): Promise<void> {
    const c = this.client;
    this.client = null;
    this.lost = true;
    await c?.end().catch(() => undefined);
  }
}
