import { describe, expect, it } from 'vitest';
import { attestation, type Attestation, type CaptureConfig } from '../../src/capture/attest.js';
import { Attestor } from '../../src/ship/attestor.js';
import { AttestationCheck, diffConfig } from '../../src/verify/attestations.js';
import { RecordedFindings } from '../../src/verify/recorded.js';
import { createLogger } from '../../src/log.js';
import type { ArchivedRecord } from '../../src/verify/file.js';
import type { Digest } from '../../src/seal/digest.js';

const config = (enabled = 'O', members: string[] = []): CaptureConfig => ({
  tables: { 'clinic.patients': { triggers: { audit_row_change: enabled, audit_truncate: 'O' }, auditor_select: true } },
  roles: { members: { audit_owner: members } },
});

describe('Attestor: when the shipper attests', () => {
  function stub(now: { t: number }, current: { c: CaptureConfig }) {
    const appended: Attestation[] = [];
    const attestor = new Attestor(
      {
        read: async () => current.c,
        append: async (a) => {
          appended.push(a);
          return String(appended.length);
        },
      },
      { intervalMs: 3_600_000, log: createLogger('silent'), now: () => now.t },
    );
    return { attestor, appended };
  }

  it('at the first check, on a change, and when the last one is an interval old; not otherwise', async () => {
    const now = { t: 0 };
    const current = { c: config() };
    const { attestor, appended } = stub(now, current);
    expect(await attestor.check()).toBe('1');
    now.t = 60_000;
    expect(await attestor.check()).toBeNull();
    current.c = config('D');
    expect(await attestor.check()).toBe('2');
    now.t = 60_000 + 3_599_999;
    expect(await attestor.check()).toBeNull();
    now.t = 60_000 + 3_600_000;
    expect(await attestor.check()).toBe('3');
    expect(
      appended.map((a) => [
        a.interval_s,
        (a.config.tables as Record<string, { triggers: Record<string, string> }>)['clinic.patients']!.triggers.audit_row_change,
      ]),
    ).toEqual([
      [3600, 'O'],
      [3600, 'D'],
      [3600, 'D'],
    ]);
  });

  it('reports a failing check on /readyz and its recovery, and tries again at the next check', async () => {
    const problems: (string | null)[] = [];
    let fail = true;
    const attestor = new Attestor(
      {
        read: async () => {
          if (fail) throw new Error('permission denied for function attest');
          return config();
        },
        append: async () => '1',
      },
      { intervalMs: 1000, log: createLogger('silent'), onProblem: (p) => problems.push(p) },
    );
    await attestor.checkQuietly();
    fail = false;
    await attestor.checkQuietly();
    expect(problems).toEqual(['failed: permission denied for function attest', null]);
  });
});

describe('verify: what the attestations show', () => {
  let seq = 0;
  const record = (at: string, c: CaptureConfig | string, intervalS = 3600): ArchivedRecord =>
    ({
      chain: '0'.repeat(64),
      seq: ++seq,
      lsn: '0/1',
      idx: 0,
      op: 'insert',
      source: 'attest',
      action: 'ATTESTATION',
      occurred_at: at,
      statement: typeof c === 'string' ? c : JSON.stringify(attestation(c, intervalS)),
    }) as ArchivedRecord;

  it('diffs by path, lists by what was added and removed', () => {
    expect(diffConfig(config('O', ['alice']), config('D', ['alice', 'mallory']))).toEqual([
      'tables["clinic.patients"].triggers.audit_row_change: "O" -> "D"',
      'roles.members.audit_owner: +"mallory"',
    ]);
    expect(diffConfig(config(), config())).toEqual([]);
    expect(diffConfig({ a: 1 }, { b: 1 })).toEqual(['a: removed (was 1)', 'b: added 1']);
  });

  it('a change between two attestations is a finding with its window; a stretch without one is a gap; the tail too', () => {
    seq = 0;
    const check = new AttestationCheck();
    check.add(record('2026-11-28 10:02:00+00', config()), 'f1', 'record:1');
    check.add(record('2026-11-28 10:07:00+00', config('D')), 'f1', 'record:2');
    check.add(record('2026-11-28 13:07:00+00', config('D')), 'f2', 'record:3'); // 3 h later: more than twice 1 h
    check.add(record('2026-11-28 13:08:00+00', '{"not":"an attestation"}'), 'f2', 'record:4');
    check.finish('2026-11-28 16:00:00+00');
    expect(check.findings.map((f) => [f.code, f.id])).toEqual([
      ['capture-changed', 'record:2'],
      ['attestation-gap', 'record:3'],
      ['bad-attestation', 'record:4'],
      ['attestation-gap', undefined], // the tail: open until the next attestation, so nothing to acknowledge yet
    ]);
    expect(check.findings[0]!.message).toBe(
      'the capture configuration changed between 2026-11-28 10:02:00+00 and 2026-11-28 10:07:00+00 ' +
        '(attestations 1 and 2): tables["clinic.patients"].triggers.audit_row_change: "O" -> "D"',
    );
    expect(check.findings[3]!.message).toMatch(
      /^no attestation of the capture configuration since 2026-11-28 13:07:00\+00 \(record 3\), though the archive goes on until 2026-11-28 16:00:00\+00/,
    );
  });

  it('a change is acknowledged like any recorded finding, by its record id', () => {
    seq = 0;
    const recorded = new RecordedFindings();
    const d = { object_key: 'data/x', file_seq: 1, created_at: '2026-11-28 10:08:00+00' } as unknown as Digest;
    const ack = {
      chain: '0'.repeat(64),
      seq: 3,
      lsn: '0/2',
      idx: 0,
      op: 'insert',
      source: 'review',
      action: 'ACKNOWLEDGE',
      row_id: 'record:2',
      session_user_name: 'alice',
      occurred_at: '2026-11-28 10:09:00+00',
      statement: 'migration 42 re-created the trigger',
    } as unknown as ArchivedRecord;
    recorded.add(
      d,
      [record('2026-11-28 10:02:00+00', config()), record('2026-11-28 10:07:00+00', config('D')), ack].map((r) => ({ record: r, line: '' })) as never,
    );
    const settled = recorded.settle('2026-11-28 10:10:00+00');
    expect(settled.open).toEqual([]);
    expect(settled.acknowledged.map((f) => [f.code, f.acknowledgement.reason])).toEqual([['capture-changed', 'migration 42 re-created the trigger']]);
  });
});
