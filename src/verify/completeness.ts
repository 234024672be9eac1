import type pg from 'pg';
import { ServiceError } from '../errors.js';
import type { Digest } from '../seal/digest.js';
import type { Finding } from './chain.js';
import { DIGEST_DIR, digestKey } from '../sink/keys.js';

export interface CompletenessOptions {
  /** the newest digest must be younger than this (heartbeats prove a quiet shipper is alive) */
  maxHeadAgeMs: number;
  now?: Date;
}

/** The archive must end where the shipper says it does, and recently. */
export function checkHeadAge(head: Digest | null, opts: CompletenessOptions): Finding[] {
  if (!head) return [{ code: 'empty-archive', where: DIGEST_DIR, message: 'the archive holds no digest at all' }];
  const age = (opts.now ?? new Date()).getTime() - Date.parse(head.created_at);
  if (age > opts.maxHeadAgeMs) {
    return [
      {
        code: 'stale-head',
        where: digestKey(head.file_seq),
        message:
          `the newest digest is ${Math.round(age / 60_000)} minutes old (more than ${Math.round(opts.maxHeadAgeMs / 60_000)}): ` +
          'the shipper stopped, or the newest files were removed',
      },
    ];
  }
  return [];
}

/** Compare with the head the shipper recorded in the database after its last stored file. */
export async function checkAgainstDatabase(client: pg.Client, slot: string, head: Digest | null): Promise<Finding[]> {
  const r = await client
    .query<{ file_seq: string; digest_sha256: string }>('SELECT file_seq::text, digest_sha256 FROM audit.shipper_head WHERE slot_name = $1', [slot])
    .catch(async (err: { code?: string }) => {
      if (err.code !== '42P01' && err.code !== '3F000' && err.code !== '42501') throw err;
      const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
      throw new ServiceError(
        err.code === '42501'
          ? `--database-url (DATABASE_URL): the login cannot read audit.shipper_head in database ${db}; grant it audit_shipper`
          : `--database-url (DATABASE_URL) names database ${db}, which has no pg-audit-shipper schema (audit.shipper_head): name the database the shipper streams from`,
      );
    });
  const row = r.rows[0];
  if (!row) return [{ code: 'no-recorded-head', where: 'audit.shipper_head', message: `the database has no shipped head for slot ${slot}` }];
  const recorded = Number(row.file_seq);
  const have = head?.file_seq ?? 0;
  if (recorded > have) {
    return [
      {
        code: 'tail-missing',
        where: digestKey(recorded),
        message: `the database records file ${recorded} as shipped, but the archive ends at file ${have}: the newest files are missing`,
      },
    ];
  }
  return [];
}
