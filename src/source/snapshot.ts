import pg from 'pg';
import { ServiceError } from '../errors.js';
import { describePgError } from '../db.js';
import type { RowText } from '../seal/record.js';
import { parseLsn, type Lsn } from './lsn.js';
import { TEXT_OUTPUT_OPTIONS } from './slot.js';

/**
 * Create the slot on a replication connection and export its snapshot: the rows that snapshot
 * sees are exactly those committed before the slot's first streamed change. The snapshot lives
 * while the creating connection stays open, so the caller reads the rows, then calls done().
 */
export async function createSlotWithSnapshot(
  config: pg.ClientConfig,
  slot: string,
): Promise<{
  consistentPoint: Lsn;
  snapshot: string;
  done: () => Promise<void>;
}> {
  const repl = new pg.Client({ ...config, replication: 'database' } as pg.ClientConfig);
  await repl.connect();
  try {
    const r = await repl.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT "${slot.replaceAll('"', '')}" LOGICAL pgoutput EXPORT_SNAPSHOT`,
    );
    const row = r.rows[0]!;
    return { consistentPoint: parseLsn(row.consistent_point), snapshot: row.snapshot_name, done: () => repl.end() };
  } catch (err) {
    await repl.end().catch(() => undefined);
    throw new ServiceError(`cannot create replication slot ${slot}: ${describePgError(err)}`);
  }
}

/**
 * Every audit_log row visible in `snapshot`, as the server's text (the same text pgoutput sends,
 * given the same TimeZone and DateStyle), by UTC event date and then id, a page at a time: the
 * archive files backfilled rows under their event date (one date per file), so a file is cut only
 * where the date changes, not wherever an ingester's late rows interleave with the triggers'.
 */
// 1000 rows a page: a 300k-row backfill peaked at 240 MiB RSS with it and 268 MiB with 5000 (each
// row is an object of two dozen strings until it is encoded); the round trips cost nothing measurable.
export async function* rowsInSnapshot(config: pg.ClientConfig, snapshot: string, pageSize = 1000): AsyncIterable<RowText[]> {
  const c = new pg.Client({ ...config, options: TEXT_OUTPUT_OPTIONS } as pg.ClientConfig);
  await c.connect();
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await c.query(`SET TRANSACTION SNAPSHOT '${snapshot.replaceAll("'", '')}'`);
    const cols = await c.query<{ attname: string }>(
      `SELECT attname FROM pg_attribute WHERE attrelid = 'audit.audit_log'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    );
    const list = cols.rows.map((r) => `${pg.escapeIdentifier(r.attname)}::text AS ${pg.escapeIdentifier(r.attname)}`).join(', ');
    await c.query(
      `DECLARE backfill NO SCROLL CURSOR FOR SELECT ${list} FROM audit.audit_log ` + `ORDER BY (audit_log.occurred_at AT TIME ZONE 'UTC')::date, audit_log.id`,
    ); // the table's columns, not the text aliases
    for (;;) {
      const page = await c.query<RowText>(`FETCH ${pageSize} FROM backfill`);
      if (page.rows.length === 0) break;
      yield page.rows;
    }
    await c.query('COMMIT');
  } finally {
    await c.end().catch(() => undefined);
  }
}
