import pg from 'pg';
import { describePgError } from '../db.js';
import { ServiceError } from '../errors.js';

export type ConsoleUse = 'CONSOLE SEARCH' | 'CONSOLE REPORT' | 'CONSOLE EVIDENCE';

/**
 * Where the console's own use is recorded: an audit event in the database's audit_log (source
 * `console`, sql/migrations/012), so the auditors are audited in the same chain. A use is recorded
 * before its answer is shown: an answer whose use could not be recorded is not shown.
 */
export interface Recorder {
  /** false: nothing is recorded (no --database-url), and every page says so */
  readonly recording: boolean;
  record(use: ConsoleUse, who: string, customer: string | null, detail: Record<string, unknown>): Promise<void>;
  /** a finding acknowledged through the chain (audit.acknowledge_finding), by the person signed in */
  acknowledge(finding: string, reason: string, who: string): Promise<string>;
  close(): Promise<void>;
}

export const notRecording: Recorder = {
  recording: false,
  record: async () => undefined,
  acknowledge: () => Promise.reject(new ServiceError('findings are acknowledged through the database: start the console with --database-url')),
  close: async () => undefined,
};

export function databaseRecorder(url: string): Recorder {
  const pool = new pg.Pool({ connectionString: url, max: 2, application_name: 'pg-audit-shipper console' });
  // An idle connection the server closed is dropped from the pool; the next use opens another.
  pool.on('error', () => undefined);
  return {
    recording: true,
    async record(use, who, customer, detail) {
      try {
        await pool.query('SELECT audit.record_console_use($1, $2, $3, $4)', [use, who, customer, JSON.stringify(detail)]);
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === '42883') throw new ServiceError('the database has no audit.record_console_use: run `pg-audit-shipper init` to upgrade the audit schema');
        if (code === '42501')
          throw new ServiceError(`the console's database login may not record its use: grant it audit_console (GRANT audit_console TO <login>)`);
        throw new ServiceError(`recording this use in audit_log failed: ${describePgError(err)}`);
      }
    },
    async acknowledge(finding, reason, who) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(`SELECT set_config('app.user_id', $1, true)`, [who]);
        const r = await client.query<{ id: string }>('SELECT audit.acknowledge_finding($1, $2)::text AS id', [finding, reason]);
        await client.query('COMMIT');
        return r.rows[0]!.id;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        const code = (err as { code?: string }).code;
        if (code === '42501')
          throw new ServiceError(`the console's database login may not acknowledge findings: grant it audit_reviewer (GRANT audit_reviewer TO <login>)`);
        throw new ServiceError(`acknowledging ${finding} failed: ${describePgError(err)}`);
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
