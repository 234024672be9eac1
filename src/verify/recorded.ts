import type { Digest } from '../seal/digest.js';
import { digestKey } from '../sink/keys.js';
import type { ArchivedLine, ArchivedRecord } from './file.js';
import type { Acknowledged, Acknowledgement, Finding } from './findings.js';
import { AttestationCheck, type AttestationSegment } from './attestations.js';
import { MISSING_LINES_ACTION } from '../capture/ingest/receipt.js';

/**
 * What the chain itself records as wrong: a committed UPDATE, DELETE or TRUNCATE of audit_log (the
 * database's copy of the trail was changed; the archive keeps the original) and a gap (events that
 * were never streamed). Each is a finding until a person acknowledges it with an event that goes
 * through the chain after it (`pg-audit-shipper acknowledge`): nobody edits the archive to turn
 * the scheduled check green, and the report names who acknowledged what, when and why.
 *
 * One statement can change a million rows: the records of one operation in one transaction are one
 * finding (`count`, and the first old rows), so memory and the report stay small.
 */

/** An acknowledgement is an audit event of this source and action; row_id names the finding, statement the reason. */
export const REVIEW_SOURCE = 'review';
export const ACKNOWLEDGE_ACTION = 'ACKNOWLEDGE';
/** How many old rows of one tamper finding are quoted in it. */
const OLD_ROWS_QUOTED = 20;

export function findingId(seq: number): string {
  return `record:${seq}`;
}

/**
 * What a block of files records when checked without the blocks before it (a shard of `verify
 * --shard`): its findings and acknowledgements, and what may join the blocks around it (a tamper
 * finding that goes on from the block before, one still open at its end, its first attestation).
 */
export interface RecordedSegment {
  findings: Finding[];
  acks: Acknowledgement[];
  /** whether the block holds any record add() looks at (one that does not leaves the state as it was) */
  touched: boolean;
  /** the block's first such record was a tamper record: findings[0] may continue the block before's */
  leadingTamper: boolean;
  /** its last tamper finding may go on in the next block */
  openTamper: boolean;
  attestations: AttestationSegment;
}

type OpenTamper = { finding: Finding; op: string; lsn: string; lastSeq: number; old: unknown[] };

export class RecordedFindings {
  private readonly findings: Finding[] = [];
  private readonly acks: Acknowledgement[] = [];
  /** the tamper finding the next record may extend: same op, same transaction, next sequence */
  private open: OpenTamper | null = null;
  /** changes of the capture configuration between attestations, and stretches without one */
  private readonly attestations: AttestationCheck;
  private touched = false;
  private leadingTamper = false;

  /** segment: checked without the blocks before (see RecordedSegment) */
  constructor(segment = false) {
    this.attestations = new AttestationCheck(segment);
  }

  segmentOf(): RecordedSegment {
    return {
      findings: this.findings,
      acks: this.acks,
      touched: this.touched,
      leadingTamper: this.leadingTamper,
      openTamper: this.open !== null,
      attestations: this.attestations.segmentOf(),
    };
  }

  /**
   * The next block, joined where it meets the blocks before (blocks in chain order): a tamper run
   * that crosses the boundary is one finding, as it is when one process reads both blocks.
   */
  absorb(s: RecordedSegment): void {
    let findings = s.findings;
    const o = this.open;
    const f = findings[0];
    if (o && s.leadingTamper && f?.code === 'tamper' && f.detail?.op === o.op && f.detail.lsn === o.lsn && f.detail.first_seq === o.lastSeq + 1) {
      const d = o.finding.detail!;
      d.count = (d.count as number) + (f.detail.count as number);
      d.last_seq = f.detail.last_seq;
      for (const old of f.detail.old_rows as unknown[]) if (o.old.length < OLD_ROWS_QUOTED) o.old.push(old);
      o.lastSeq = f.detail.last_seq as number;
      o.finding.message = tamperMessage(o.op, d.count as number, o.lsn, d.archived_by as string, o.old[0]);
      findings = findings.slice(1);
    }
    this.findings.push(...findings);
    this.acks.push(...s.acks);
    this.attestations.absorb(s.attestations);
    if (!s.touched) return;
    const last = findings[findings.length - 1];
    if (!s.openTamper) this.open = null;
    else if (last) {
      const d = last.detail!;
      this.open = { finding: last, op: d.op as string, lsn: d.lsn as string, lastSeq: d.last_seq as number, old: d.old_rows as unknown[] };
    } // else: the block's one open finding continued the one before, which stays open
  }

  /** The records add() looks at: a file's other records cannot change what it finds. */
  static reads(r: ArchivedRecord): boolean {
    return r.op === 'update' || r.op === 'delete' || r.op === 'truncate' || r.op === 'gap' || isLostLines(r) || isAcknowledgement(r) || AttestationCheck.is(r);
  }

  /** Feed each verified file's records (all, or at least those `reads` picks), in chain order. */
  add(d: Digest, lines: ArchivedLine[]): void {
    const where = d.object_key ?? digestKey(d.file_seq);
    for (const { record: r } of lines) {
      if (!RecordedFindings.reads(r)) continue;
      if (!this.touched) {
        this.touched = true;
        this.leadingTamper = r.op === 'update' || r.op === 'delete' || r.op === 'truncate';
      }
      if (r.op === 'update' || r.op === 'delete' || r.op === 'truncate') this.tamper(r, d, where);
      else if (r.op === 'gap') this.gap(r, d, where);
      else if (isLostLines(r)) this.lostLines(r, d, where);
      else if (isAcknowledgement(r)) this.ack(r);
      else if (AttestationCheck.is(r)) {
        this.open = null;
        this.attestations.add(r, where, findingId(r.seq));
      }
    }
  }

  private tamper(r: ArchivedRecord, d: Digest, where: string): void {
    const o = this.open;
    const old = (r.old ?? null) as Record<string, unknown> | null;
    if (o && o.op === r.op && o.lsn === r.lsn && o.lastSeq === r.seq - 1) {
      o.lastSeq = r.seq;
      const detail = o.finding.detail!;
      detail.count = (detail.count as number) + 1;
      detail.last_seq = r.seq;
      if (o.old.length < OLD_ROWS_QUOTED && old) o.old.push(old);
      o.finding.message = tamperMessage(r.op, detail.count as number, r.lsn, detail.archived_by as string, o.old[0]);
      return;
    }
    const detail: Record<string, unknown> = { op: r.op, lsn: r.lsn, first_seq: r.seq, last_seq: r.seq, count: 1, archived_by: d.created_at, old_rows: [] };
    if (r.op === 'update') detail.new_row = newRow(r);
    const finding: Finding = { code: 'tamper', where, id: findingId(r.seq), message: tamperMessage(r.op, 1, r.lsn, d.created_at, old), detail };
    this.open = { finding, op: r.op, lsn: r.lsn, lastSeq: r.seq, old: detail.old_rows as unknown[] };
    if (old) this.open.old.push(old);
    this.findings.push(finding);
  }

  private gap(r: ArchivedRecord, d: Digest, where: string): void {
    this.open = null;
    const detail: Record<string, unknown> = {
      seq: r.seq,
      reason: r.reason,
      archived_up_to_lsn: r.archived_up_to_lsn ?? null,
      recovery: r.recovery ?? null,
      archived_by: d.created_at,
    };
    this.findings.push({
      code: 'gap',
      where,
      id: findingId(r.seq),
      detail,
      message:
        `events were not streamed before ${d.created_at} (${String(r.reason)}): ` +
        `everything after WAL position ${String(r.archived_up_to_lsn ?? 'unknown')} that was no longer in audit_log is lost; ` +
        'the rows still there follow as backfill "slot-lost"',
    });
  }

  /** A session's server log lines that never reached ingest (the ingester saw later ones): whatever they held is lost. */
  private lostLines(r: ArchivedRecord, d: Digest, where: string): void {
    this.open = null;
    this.findings.push({
      code: 'log-lines-missing',
      where,
      id: findingId(r.seq),
      detail: { seq: r.seq, lines: r.statement ?? null, login: r.session_user_name ?? null, noticed_at: r.occurred_at ?? null, archived_by: d.created_at },
      message:
        `server log lines never reached ingest (${String(r.statement)}; noticed ${String(r.occurred_at)}): removed or cut before they were read, ` +
        'so any read recorded as a statement among them is lost',
    });
  }

  private ack(r: ArchivedRecord): void {
    this.open = null;
    this.acks.push({
      finding: String(r.row_id ?? ''),
      by: String(r.session_user_name ?? ''),
      reviewer: (r.app_user_id as string | null) ?? null,
      at: String(r.occurred_at ?? ''),
      reason: String(r.statement ?? ''),
      seq: r.seq,
    });
  }

  /**
   * The recorded findings, split into those still open and those acknowledged by a later event; an
   * acknowledgement of something this run did not find is a note (it may lie in a file an
   * incremental run did not read, or name a finding that never was).
   */
  settle(archiveEnd: string | null = null): { open: Finding[]; acknowledged: Acknowledged[]; notes: Finding[] } {
    this.attestations.finish(archiveEnd);
    this.findings.push(...this.attestations.findings);
    const byId = new Map(this.findings.filter((f) => f.id).map((f) => [f.id!, f]));
    const acked = new Map<string, Acknowledgement>();
    const notes: Finding[] = [];
    for (const a of this.acks) {
      const f = byId.get(a.finding);
      const seqOfFinding = f ? Number(a.finding.slice('record:'.length)) : NaN;
      if (!f || !(seqOfFinding < a.seq)) {
        notes.push({
          code: 'acknowledgement-unmatched',
          where: findingId(a.seq),
          message: `record ${a.seq} acknowledges ${JSON.stringify(a.finding)}, which is not a finding recorded before it in what this run read`,
        });
        continue;
      }
      if (!acked.has(a.finding)) acked.set(a.finding, a);
    }
    const open: Finding[] = [];
    const acknowledged: Acknowledged[] = [];
    for (const f of this.findings) {
      const a = f.id ? acked.get(f.id) : undefined;
      if (a) acknowledged.push({ ...f, acknowledgement: a });
      else open.push(f);
    }
    return { open, acknowledged, notes };
  }
}

function isLostLines(r: ArchivedRecord): boolean {
  return r.op === 'insert' && r.source === 'pgaudit' && r.action === MISSING_LINES_ACTION;
}

function isAcknowledgement(r: ArchivedRecord): boolean {
  return r.op === 'insert' && r.source === REVIEW_SOURCE && r.action === ACKNOWLEDGE_ACTION;
}

function tamperMessage(op: string, count: number, lsn: string, sealed: string, old: unknown): string {
  const what = op === 'truncate' ? 'a TRUNCATE of audit_log' : `a ${op.toUpperCase()} of ${count} audit_log row${count === 1 ? '' : 's'}`;
  return (
    `${what} was committed (transaction at WAL position ${lsn}, archived by ${sealed}): the database's copy of the trail was changed; ` +
    `the archive keeps the original rows${describeOld(old, count)}`
  );
}

/** The first changed event in words: which event, of what, by whom, when. */
function describeOld(old: unknown, count: number): string {
  if (!old || typeof old !== 'object') return '';
  const o = old as Record<string, unknown>;
  const table = o.schema_name && o.table_name ? ` on ${String(o.schema_name)}.${String(o.table_name)}` : '';
  const row = o.row_id ? ` row ${String(o.row_id)}` : '';
  const by = o.session_user_name ? ` by ${String(o.session_user_name)}` : '';
  const at = o.occurred_at ? ` at ${String(o.occurred_at)}` : '';
  return `; ${count > 1 ? 'first ' : ''}changed event: id ${String(o.id ?? '?')}, ${String(o.action ?? '?')}${table}${row}${by}${at}`;
}

function newRow(r: ArchivedRecord): Record<string, unknown> {
  const { chain: _c, seq: _s, lsn: _l, idx: _i, op: _o, tamper: _t, old: _old, ...row } = r;
  return row;
}
