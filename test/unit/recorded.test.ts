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

describe('a record whose lsn is not an LSN', () => {
  it('is a finding of its own, not a crash of the verifier', async () => {
    const { gzipSync } = await import('node:zlib');
    const { GENESIS_CHAIN, recordBody, sealRecord } = await import('../../src/seal/record.js');
    const { sha256Hex } = await import('../../src/seal/digest.js');
    const { checkFile } = await import('../../src/verify/file.js');
    const row = { id: '1', occurred_at: '2026-03-02 09:15:00+00' };
    const r1 = sealRecord(GENESIS_CHAIN, recordBody({ seq: 1, lsn: 'not-an-lsn', idx: 0, op: 'insert' }, row));
    const r2 = sealRecord(r1.chain, recordBody({ seq: 2, lsn: '0/10', idx: 0, op: 'insert' }, { ...row, id: '2' }));
    const content = Buffer.from(`${r1.line}\n${r2.line}\n`);
    const body = gzipSync(content);
    const digest = {
      format: 'pg-audit-shipper/digest/2',
      kind: 'data',
      file_seq: 1,
      prev_digest_sha256: null,
      created_at: '2026-03-02T09:16:00.000Z',
      system_identifier: '1',
      timeline: 1,
      database: 'd',
      slot: 's',
      record_count: 2,
      first_seq: 1,
      last_seq: 2,
      prev_chain: GENESIS_CHAIN,
      last_chain: r2.chain,
      first_lsn: 'not-an-lsn',
      last_lsn: '0/10',
      last_idx: 0,
      ack_lsn: '0/20',
      first_event_at: row.occurred_at,
      last_event_at: row.occurred_at,
      object_key: `data/dt=2026-03-02/000000000001-${sha256Hex(content).slice(0, 16)}.jsonl.gz`,
      object_bytes: body.length,
      object_sha256: sha256Hex(body),
      content_sha256: sha256Hex(content),
      key_id: 'k',
    } as const;
    const check = checkFile(body, digest as never, { chain: GENESIS_CHAIN, recordSeq: 0, lastPos: null });
    expect(check.findings.map((f) => f.code)).toEqual(['bad-record-field', 'digest-positions']);
    expect(check.findings[0]!.message).toBe('record 1: lsn "not-an-lsn" is not an LSN in the server\'s spelling');
  });
});
