import { describe, expect, it } from 'vitest';
import { EVERYTHING, matches } from '../../src/query/filter.js';
import type { ArchivedRecord } from '../../src/verify/file.js';

const event = (fields: Record<string, string | null>): ArchivedRecord =>
  ({ chain: '0'.repeat(64), seq: 1, lsn: '0/1', idx: 0, op: 'insert', source: 'trigger', action: 'UPDATE', ...fields }) as ArchivedRecord;

describe('query filter', () => {
  const partitionRow = event({ schema_name: 'clinic', table_name: 'visits', relation_name: 'clinic.visits_2025', row_id: '8', old_row_id: '7' });

  it("finds a partition's event under the partitioned table and under the partition, qualified or bare", () => {
    for (const table of ['clinic.visits', 'visits', 'clinic.visits_2025', 'visits_2025']) {
      expect(matches(partitionRow, { ...EVERYTHING, table }), table).toBe(true);
    }
    for (const table of ['clinic.visits_2026', 'other.visits', 'isits_2025', 'clinic.visits_202']) {
      expect(matches(partitionRow, { ...EVERYTHING, table }), table).toBe(false);
    }
  });

  it('finds an UPDATE that changed the key under the old key and the new one', () => {
    expect(matches(partitionRow, { ...EVERYTHING, rowId: '7' })).toBe(true);
    expect(matches(partitionRow, { ...EVERYTHING, rowId: '8' })).toBe(true);
    expect(matches(partitionRow, { ...EVERYTHING, rowId: '9' })).toBe(false);
  });

  it('answers no question with bookkeeping: attestations and receipts', () => {
    expect(matches(event({ source: 'attest', action: 'ATTESTATION' }), EVERYTHING)).toBe(false);
    expect(matches(event({ source: 'ingest', action: 'RECEIPT' }), EVERYTHING)).toBe(false);
  });
});
