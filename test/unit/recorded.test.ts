import { describe, expect, it } from 'vitest';
import { verifyChain } from '../../src/verify/chain.js';
import { CASES } from '../conformance/cases.js';
import { keysFor } from '../conformance/judge.js';
import { memoryReader } from '../conformance/build.js';

const caseNamed = (name: string) => CASES.find((c) => c.name === name)!;

describe('recorded findings', () => {
  it('one finding per operation and transaction, quoting the old rows', async () => {
    const report = await verifyChain(memoryReader(await caseNamed('tamper-delete').build()), { keys: keysFor() });
    expect(report.recorded.open).toHaveLength(1);
    const f = report.recorded.open[0]!;
    expect(f).toMatchObject({ code: 'tamper', id: 'record:6', detail: { op: 'delete', count: 2, first_seq: 6, last_seq: 7 } });
    expect((f.detail!.old_rows as { id: string }[]).map((r) => r.id)).toEqual(['1', '2']);
    expect(f.message).toMatch(/^a DELETE of 2 audit_log rows was committed \(transaction at WAL position 0\/1A2D000, archived by 2026-03-02T09:25:05.000Z\)/);
    expect(f.message).toMatch(/; first changed event: id 1, UPDATE row 4711 at 2026-03-02 09:15:00.120034\+00$/);
  });

  it('an incremental run that samples an old file does not reopen what an earlier clean run settled', async () => {
    // valid-acknowledged-tamper: file 3 holds the DELETE, file 4 its acknowledgement. A state at
    // file 4 means a clean run saw both; sampling file 3 alone must not report the DELETE again.
    const reader = memoryReader(await caseNamed('valid-acknowledged-tamper').build());
    const sampled = await verifyChain(reader, { keys: keysFor(), fullFrom: 5, sample: new Set([3]) });
    expect(sampled.findings).toEqual([]);
    expect(sampled.recorded.open).toEqual([]);
    // Reading from file 3 on (the state was older), the DELETE is seen and so is its acknowledgement.
    const fromThree = await verifyChain(reader, { keys: keysFor(), fullFrom: 3 });
    expect(fromThree.recorded.acknowledged.map((a) => a.id)).toEqual(['record:6']);
    // From file 4 alone the acknowledgement names nothing this run saw: a note, not a finding.
    const fromFour = await verifyChain(reader, { keys: keysFor(), fullFrom: 4 });
    expect(fromFour.recorded.open).toEqual([]);
    expect(fromFour.recorded.notes.map((n) => n.code)).toEqual(['acknowledgement-unmatched']);
  });
});
