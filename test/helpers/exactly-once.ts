import { expect } from 'vitest';
import type { ArchivedRecord } from '../../src/verify/chain.js';
import { withClient } from './db.js';

/**
 * The promise every shipping test checks: each audit_log row of the database is in the archive
 * exactly once (no row lost, none twice). `inIdOrder`: and in id order, which is commit order when
 * one writer wrote them; with concurrent writers (or attestations taking ids while a writer's
 * transaction is open) commit order differs from id order, so only the set is compared.
 * Returns the archived insert records, for the test's further questions.
 */
export async function expectExactlyOnce(records: readonly ArchivedRecord[], databaseUrl: string, opts: { inIdOrder: boolean }): Promise<ArchivedRecord[]> {
  const inserts = records.filter((r) => r.op === 'insert');
  const archived = inserts.map((r) => r.id as string);
  const dup = archived.find((id, i) => archived.indexOf(id) !== i);
  expect(dup, `audit_log row ${dup} archived more than once`).toBeUndefined();
  const inDatabase = await withClient(databaseUrl, async (c) =>
    (await c.query<{ id: string }>('SELECT id::text FROM audit.audit_log ORDER BY audit_log.id')).rows.map((r) => r.id),
  );
  const missing = inDatabase.filter((id) => !archived.includes(id));
  expect(missing.slice(0, 10), `${missing.length} audit_log rows not archived`).toEqual([]);
  expect(opts.inIdOrder ? archived : [...archived].sort((a, b) => Number(a) - Number(b))).toEqual(inDatabase);
  return inserts;
}
