import { ATTEST_ACTION, ATTEST_SOURCE, type Attestation } from '../capture/attest.js';
import { timeKey } from '../seal/event-time.js';
import type { IndexedAttestation } from '../seal/key-index.js';
import type { ArchivedRecord } from './file.js';
import type { Finding } from './findings.js';

/**
 * The shipper's attestations of the capture configuration, in chain order (src/capture/attest.ts).
 * Every difference between two consecutive ones is a finding, with the window it happened in; so
 * is a stretch longer than twice the promised interval without one (capture could have been off and
 * back on unseen), also at the archive's end. Pure: fed records, it remembers only the last one.
 */
type Attested = { intervalS: number; config: Record<string, unknown> | null; configSha: string };
type Last = { seq: number; at: string; ms: number; intervalS: number; config: Record<string, unknown> | null; configSha: string };

/** A block's attestations checked without the blocks before: the first one waits to be compared with them. */
export interface AttestationSegment {
  findings: Finding[];
  first: { seq: number; at: string; a: Attested; where: string; id: string } | null;
  /** config null with sameConfigAsFirst: the first one's (a configuration rarely changes; reports stay small) */
  last: Last | null;
  sameConfigAsFirst?: boolean;
}

export class AttestationCheck {
  private last: Last | null = null;
  readonly findings: Finding[] = [];
  private first: AttestationSegment['first'] = null;

  /** segment: the blocks before are unknown, so the first attestation is kept, not compared */
  constructor(private readonly segment = false) {}

  segmentOf(): AttestationSegment {
    const { first, last } = this;
    if (first && last && last.configSha === first.a.configSha && JSON.stringify(last.config) === JSON.stringify(first.a.config)) {
      return { findings: this.findings, first, last: { ...last, config: null }, sameConfigAsFirst: true };
    }
    return { findings: this.findings, first, last };
  }

  /** The next block's attestations, compared where it meets the blocks before (blocks in chain order). */
  absorb(s: AttestationSegment): void {
    if (s.first) this.next(s.first.seq, s.first.at, s.first.a, s.first.where, s.first.id);
    this.findings.push(...s.findings);
    if (s.last) this.last = s.sameConfigAsFirst && s.first ? { ...s.last, config: s.first.a.config } : s.last;
  }

  static is(r: ArchivedRecord): boolean {
    return r.op === 'insert' && r.source === ATTEST_SOURCE && r.action === ATTEST_ACTION;
  }

  add(r: ArchivedRecord, where: string, id: string): void {
    const a = parse(r.statement);
    const at = typeof r.occurred_at === 'string' ? r.occurred_at : '';
    this.next(r.seq, at, a ? { intervalS: a.interval_s, config: a.config, configSha: String(a.config_sha256) } : null, where, id);
  }

  /**
   * An attestation as a file's signed key index lists it (a search that skips the file): compared
   * with the one before by configuration hash, as the configuration itself is in the file.
   */
  addIndexed(a: IndexedAttestation, where: string, id: string): void {
    const ok = a.interval_s !== null && a.interval_s > 0 && a.config_sha256 !== null;
    this.next(a.seq, a.occurred_at ?? '', ok ? { intervalS: a.interval_s!, config: null, configSha: a.config_sha256! } : null, where, id);
  }

  private next(seq: number, at: string, a: Attested | null, where: string, id: string): void {
    const key = timeKey(at);
    if (!a || key === null) {
      this.findings.push({ code: 'bad-attestation', where, id, message: `record ${seq} is an attestation of the capture configuration that cannot be read` });
      return;
    }
    const ms = Date.parse(key);
    const prev = this.last;
    if (!prev && this.segment && !this.first) this.first = { seq, at, a, where, id };
    if (prev) {
      if (ms - prev.ms > 2 * prev.intervalS * 1000) {
        this.findings.push({
          code: 'attestation-gap',
          where,
          id,
          detail: { from: prev.at, to: at, previous_seq: prev.seq, seq: seq },
          message:
            `no attestation of the capture configuration between ${prev.at} and ${at} (records ${prev.seq} and ${seq}), ` +
            `though one was due every ${prev.intervalS}s: capture could have been switched off and on again unseen in that stretch`,
        });
      }
      const changes =
        prev.config !== null && a.config !== null
          ? diffConfig(prev.config, a.config)
          : prev.configSha !== a.configSha
            ? [`config_sha256 ${prev.configSha.slice(0, 16)}… -> ${a.configSha.slice(0, 16)}… (\`verify --full\` names what changed)`]
            : [];
      if (changes.length > 0) {
        this.findings.push({
          code: 'capture-changed',
          where,
          id,
          detail: { from: prev.at, to: at, previous_seq: prev.seq, seq: seq, changes },
          message:
            `the capture configuration changed between ${prev.at} and ${at} (attestations ${prev.seq} and ${seq}): ` +
            `${changes.slice(0, 12).join('; ')}${changes.length > 12 ? `; and ${changes.length - 12} more` : ''}`,
        });
      }
    }
    this.last = { seq: seq, at, ms, intervalS: a.intervalS, config: a.config, configSha: a.configSha };
  }

  /** The archive goes on until `end` (its newest digest): a missing attestation at the tail is a finding too. */
  finish(end: string | null): void {
    const last = this.last;
    const endKey = end === null ? null : timeKey(end);
    if (!last || endKey === null) return;
    if (Date.parse(endKey) - last.ms > 2 * last.intervalS * 1000) {
      this.findings.push({
        code: 'attestation-gap',
        where: `record:${last.seq}`,
        detail: { from: last.at, to: end, previous_seq: last.seq },
        message:
          `no attestation of the capture configuration since ${last.at} (record ${last.seq}), though the archive goes on until ${end} ` +
          `and one was due every ${last.intervalS}s: the shipper could not read or append it, or capture was switched off`,
      });
    }
  }
}

function parse(statement: unknown): Attestation | null {
  if (typeof statement !== 'string') return null;
  try {
    const a = JSON.parse(statement) as Attestation;
    return a.attestation === 1 && Number.isFinite(a.interval_s) && a.interval_s > 0 && a.config !== null && typeof a.config === 'object' ? a : null;
  } catch {
    return null;
  }
}

/**
 * What differs between two configurations, one line each, by path: `tables["clinic.patients"].triggers.audit_row_change: "O" -> "D"`;
 * lists (members, superusers) by what was added and removed.
 */
export function diffConfig(before: unknown, after: unknown, path = ''): string[] {
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  if (Array.isArray(before) && Array.isArray(after)) {
    const b = new Set(before.map((v) => JSON.stringify(v)));
    const a = new Set(after.map((v) => JSON.stringify(v)));
    const added = [...a].filter((v) => !b.has(v));
    const removed = [...b].filter((v) => !a.has(v));
    if (added.length === 0 && removed.length === 0) return [];
    return [`${path || '(all)'}: ${[...added.map((v) => `+${v}`), ...removed.map((v) => `-${v}`)].join(' ')}`];
  }
  if (isObject(before) && isObject(after)) {
    const out: string[] = [];
    for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
      const p = /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) ? `${path}${path ? '.' : ''}${k}` : `${path}[${JSON.stringify(k)}]`;
      if (!(k in before)) out.push(`${p}: added ${JSON.stringify(after[k])}`);
      else if (!(k in after)) out.push(`${p}: removed (was ${JSON.stringify(before[k])})`);
      else out.push(...diffConfig(before[k], after[k], p));
    }
    return out;
  }
  return [`${path || '(all)'}: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
