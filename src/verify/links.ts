import { openDigest, sha256Hex, signatureHolds, type Digest } from '../seal/digest.js';
import type { VerifyKey } from '../seal/keys.js';
import { GENESIS_CHAIN } from '../seal/record.js';
import { digestKey } from '../sink/keys.js';
import { tryParseLsn } from '../source/lsn.js';
import type { Finding } from './findings.js';
import { CLOCK_ALLOWANCE_MS, checkDigestFields } from './records.js';

/** Where the record chain stands after a digest: what the next file must continue from. */
export interface ChainState {
  chain: string;
  recordSeq: number;
  lastPos: { lsn: bigint; idx: number } | null;
}

const CHAIN_START: ChainState = { chain: GENESIS_CHAIN, recordSeq: 0, lastPos: null };

/**
 * The digest-to-digest checks, one step at a time: signature, previous-digest hash, sequence,
 * source, record-chain continuity, heartbeats. `verify` walks from file 1; `query` starts ('anchor')
 * by stepping the digest just before the range it reads. Pure: bytes in, findings out.
 */
export class DigestWalk {
  private prevDigestSha: string | null = null;
  private prevDigest: Digest | null = null;
  private state: ChainState = CHAIN_START;
  /** whether the chain state before the next digest is known (from file 1, or after an anchor) */
  private anchored: boolean;
  /** the newest digest stepped whose signature is not checked yet ('deferred' walks) */
  private unconfirmed: { seq: number; bytes: Buffer; key: VerifyKey } | null = null;

  /**
   * signatures 'deferred': a digest's signature is checked only when confirm() is called (before
   * its file's records are used, and at the end of the walk). A checked signature vouches for every
   * digest before it as well, through the previous-digest hashes the walk checked link by link (a
   * broken or missing link is a finding of its own): a search over 5,000 digests checks a handful
   * of signatures instead of 5,000 (150 us each here).
   */
  constructor(
    private readonly keys: Map<string, VerifyKey>,
    from: 'genesis' | 'anchor' = 'genesis',
    private readonly signatures: 'every' | 'deferred' = 'every',
  ) {
    this.anchored = from === 'genesis';
  }

  /** A walk in the same state, to step a digest without moving this one (state is replaced, never mutated, by step). */
  clone(): DigestWalk {
    const c = new DigestWalk(this.keys, 'genesis', this.signatures);
    c.prevDigestSha = this.prevDigestSha;
    c.prevDigest = this.prevDigest;
    c.state = this.state;
    c.anchored = this.anchored;
    c.unconfirmed = this.unconfirmed;
    return c;
  }

  /** Check the signature of the newest digest stepped (deferred walks): a finding if it does not hold. */
  confirm(): Finding[] {
    const u = this.unconfirmed;
    this.unconfirmed = null;
    if (!u || signatureHolds(u.bytes, u.key)) return [];
    return [{ code: 'bad-digest', where: digestKey(u.seq), message: 'digest signature does not match its content' }];
  }

  /**
   * Check digest `seq` (null bytes: missing). Returns it when its signature verified, with the
   * chain state its file's records must continue from.
   */
  step(seq: number, bytes: Buffer | null): { digest: Digest | null; before: ChainState; findings: Finding[]; sha256: string | null } {
    // A deferred signature vouches for the digests before it only while every link holds: where the
    // chain breaks (a gap, an unreadable digest, a wrong previous-digest hash), the one before is checked now.
    const findings: Finding[] = [];
    const pending = this.unconfirmed;
    const breakHere = (): void => {
      this.unconfirmed = pending;
      const bad = this.confirm();
      findings.push(...bad);
      // As a walk that checks every signature would: nothing is compared with a digest that failed its own.
      if (bad.length > 0) this.prevDigest = null;
    };
    const key = digestKey(seq);
    const add = (code: string, message: string): void => {
      findings.push({ code, where: key, message });
    };
    if (!bytes) {
      breakHere();
      add('missing-digest', `digest ${seq} is missing: the chain has a gap between files ${seq - 1} and ${seq + 1}`);
      this.prevDigestSha = null;
      this.prevDigest = null;
      return { digest: null, before: this.state, findings, sha256: null };
    }
    const deferred = this.signatures === 'deferred';
    const opened = openDigest(bytes, this.keys, !deferred);
    if (!opened.ok) {
      breakHere();
      add('bad-digest', opened.problem);
      this.prevDigestSha = sha256Hex(bytes);
      this.prevDigest = null;
      return { digest: null, before: this.state, findings, sha256: this.prevDigestSha };
    }
    const d = opened.digest;
    if (d.file_seq !== seq) add('wrong-sequence', `digest at position ${seq} says it is file ${d.file_seq}`);
    if (seq === 1 ? d.prev_digest_sha256 !== null : this.prevDigestSha !== null && d.prev_digest_sha256 !== this.prevDigestSha) {
      breakHere();
      add('broken-digest-link', `digest ${seq} does not follow digest ${seq - 1}: its previous-digest hash does not match`);
    }
    const linked = this.prevDigest !== null;
    if (deferred) this.unconfirmed = { seq, bytes, key: this.keys.get(d.key_id)! };
    const prev = this.prevDigest;
    const sameSource = prev !== null && d.system_identifier === prev.system_identifier && d.database === prev.database && d.slot === prev.slot;
    if (prev && !sameSource) {
      add(
        'source-changed',
        `the source changed from system ${prev.system_identifier} database ${prev.database} slot ${prev.slot} to ` +
          `system ${d.system_identifier} database ${d.database} slot ${d.slot}: events in between were not streamed`,
      );
    }
    const ack = tryParseLsn(d.ack_lsn);
    const prevAck = prev ? tryParseLsn(prev.ack_lsn) : null;
    if (prev && sameSource && ack !== null && prevAck !== null && ack < prevAck) {
      add('ack-regressed', `digest ${seq} says everything below ${d.ack_lsn} is archived, digest ${seq - 1} already said ${prev.ack_lsn}`);
    }
    if (prev && Date.parse(d.created_at) < Date.parse(prev.created_at) - CLOCK_ALLOWANCE_MS) {
      add('created-at-regressed', `digest ${seq} was sealed at ${d.created_at}, before digest ${seq - 1} (${prev.created_at})`);
    }
    for (const f of checkDigestFields(d)) add(f.code, f.message);
    if (linked && d.prev_chain !== this.state.chain) {
      add('broken-record-chain', `file ${seq} does not continue the record chain where file ${seq - 1} ended`);
    }
    if (d.kind === 'heartbeat') {
      if (d.last_chain !== d.prev_chain || d.record_count !== 0) add('bad-heartbeat', 'a heartbeat that claims records');
      if (d.last_seq !== null && d.last_seq !== this.state.recordSeq && linked) {
        add('record-sequence-gap', `heartbeat says the chain stands at record ${d.last_seq}, but the files before end at ${this.state.recordSeq}`);
      }
      const pos = this.state.lastPos;
      if (linked && pos && (tryParseLsn(d.last_lsn) !== pos.lsn || d.last_idx !== pos.idx)) {
        add('bad-heartbeat', `heartbeat says the last record is at ${d.last_lsn}#${d.last_idx}, but the files before end at another position`);
      }
    }
    // The file's records continue from the digest's own prev_chain: a break is reported once
    // (above), not again for every later file.
    const before: ChainState = this.anchored
      ? { ...this.state, chain: d.prev_chain }
      : { chain: d.prev_chain, recordSeq: (d.first_seq ?? 1) - 1, lastPos: null };
    this.state = after(d, before);
    this.prevDigestSha = sha256Hex(bytes);
    this.prevDigest = d;
    this.anchored = true;
    return { digest: d, before, findings, sha256: this.prevDigestSha };
  }
}

function after(d: Digest, before: ChainState): ChainState {
  const lastLsn = tryParseLsn(d.last_lsn);
  return {
    chain: d.last_chain,
    recordSeq: d.last_seq ?? before.recordSeq,
    // An unreadable last_lsn is a finding of its own (checkDigestFields): keep the position before it.
    lastPos: lastLsn === null ? before.lastPos : { lsn: lastLsn, idx: d.last_idx ?? 0 },
  };
}
