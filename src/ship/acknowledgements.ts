import type { Lsn } from '../source/lsn.js';

/**
 * How far the slot may advance: decided here and nowhere else. The stream and the pipeline only
 * record what they see (a transaction's end, a file stored, the server's position on a keepalive);
 * every advance goes through one `commitOffset`, which reports the position to the server.
 *
 * The rule: the slot never moves past a record that is not stored with its digest. A transaction's
 * end may be confirmed when
 * - the file holding its last record is stored (the file carries that end as its `ack_lsn`), or
 * - it put nothing in a file and nothing received before it is unstored (at once), or
 * - it put nothing in a file while files were being stored (deferred until they are, and no file is open);
 * a keepalive's position may be confirmed while nothing received is unstored (an idle audit_log
 * must not pin WAL on a busy server).
 */
export interface AckState {
  /** the position last reported to the server: everything below it is stored */
  confirmed: Lsn | null;
  /** the end of a transaction with nothing to store, seen while files were still being stored */
  deferred: Lsn | null;
  /** the server's position on the last keepalive while nothing was pending (a heartbeat records it) */
  idlePosition: Lsn | null;
  /** --drain: where the server's WAL ended when the drain began (null: no drain) */
  drainTarget: Lsn | null;
}

/** What is unstored when a transaction ends. */
export type Pending =
  /** its records are in the open file: the file carries the end, confirmed when the file is stored */
  | 'open-file'
  /** it stored nothing, but earlier files are still being sealed or stored */
  | 'storing'
  | 'nothing';

export class Acknowledgements {
  readonly state: AckState = { confirmed: null, deferred: null, idlePosition: null, drainTarget: null };

  /** `commitOffset` reports a position to the server; it is called only with increasing positions. */
  constructor(private readonly commitOffset: (lsn: Lsn) => void) {}

  get confirmed(): Lsn | null {
    return this.state.confirmed;
  }

  /**
   * Streaming (re)starts from `from` (the slot's confirmed position): nothing below it is ours to
   * confirm. Returns where to start, which is never before what this run confirmed already.
   */
  resumeFrom(from: Lsn | null): Lsn | null {
    if (from !== null && (this.state.confirmed === null || from > this.state.confirmed)) this.state.confirmed = from;
    return this.state.confirmed;
  }

  /** A transaction ended at `endLsn`. */
  transactionEnded(endLsn: Lsn, pending: Pending): void {
    if (pending === 'open-file') return;
    if (pending === 'nothing') this.advance(endLsn);
    else if (this.state.deferred === null || endLsn > this.state.deferred) this.state.deferred = endLsn;
  }

  /**
   * A file was stored, digest last. `ackLsn`: the end of the last transaction it completes (null for
   * one that ends inside a transaction). `drained`: nothing is sealed, queued or open any more.
   */
  fileStored(ackLsn: Lsn | null, drained: boolean): void {
    if (ackLsn !== null) this.advance(ackLsn);
    if (drained && this.state.deferred !== null) {
      this.advance(this.state.deferred);
      this.state.deferred = null;
    }
  }

  /**
   * The server's position on a keepalive: everything it decoded below it has been sent (data is
   * handed over synchronously in socket order). Confirmed only when `idle`: nothing received is unstored.
   */
  keepalive(position: Lsn, idle: boolean): void {
    if (!idle) return;
    this.state.idlePosition = position;
    this.advance(position);
  }

  /** --drain: end once everything the server had when the drain began is confirmed. */
  drainTo(target: Lsn): void {
    this.state.drainTarget = target;
  }

  /** whether a drain's target is confirmed (false without a drain) */
  drained(): boolean {
    const { drainTarget, confirmed } = this.state;
    return drainTarget !== null && confirmed !== null && confirmed >= drainTarget;
  }

  private advance(lsn: Lsn): void {
    if (this.state.confirmed !== null && lsn <= this.state.confirmed) return;
    this.state.confirmed = lsn;
    this.commitOffset(lsn);
  }
}
