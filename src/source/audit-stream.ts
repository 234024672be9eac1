import { LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { RowText } from '../seal/record.js';
import type { RawTuple } from '../seal/raw-record.js';
import { formatLsn, parseLsn, type Lsn } from './lsn.js';
import { TEXT_OUTPUT_OPTIONS } from './slot.js';
import { destroySocket, endCopy, pauseSocket, PgoutputDecoder, resumeSocket, takeOverDataMessages, type DecodedMessage } from './replication-library.js';

export const AUDIT_LOG = 'audit.audit_log';

/** What the stream hands downstream, in commit order. */
export type StreamEvent =
  | { type: 'begin'; xid: number; commitLsn: Lsn; commitTime: Date }
  | { type: 'change'; op: 'insert' | 'update' | 'delete' | 'truncate'; relation: string; row: RowText | null; old: RowText | null }
  /** an audit_log insert, left as the server's bytes (valid only during the onEvent call) */
  | { type: 'audit-insert'; tuple: RawTuple }
  | { type: 'commit'; commitLsn: Lsn; endLsn: Lsn }
  /**
   * A logical decoding message (pg_logical_emit_message) with this project's prefix: a row read
   * (sql/migrations/008). Non-transactional ones come between transactions, at their own position.
   */
  | { type: 'message'; lsn: Lsn; transactional: boolean; content: Buffer };

/** The prefix of the messages the stream hands on; others' messages are dropped. */
export const READ_MESSAGE_PREFIX = 'pg-audit-shipper/read';

export interface StreamConsumer {
  /**
   * Called synchronously, in stream order. It must not await: backpressure goes through the
   * Flow it was given (pause the socket), which keeps decoding and storing overlapped.
   */
  onEvent(e: StreamEvent): void;
  /**
   * The server's position on a keepalive: everything it decoded below it has been handed to onEvent.
   * The consumer decides whether the slot may move there (it calls acknowledge()); the stream never does.
   */
  onKeepalive(position: Lsn): void;
}

/** Stop and restart reading from the server (backpressure). */
export interface Flow {
  pause(): void;
  resume(): void;
}

const STATUS_INTERVAL_MS = 10_000;

/**
 * Streams audit_log changes from our slot. It reports positions and decides none: the server hears
 * only what the consumer acknowledged (src/ship/acknowledgements.ts decides how far), whatever the
 * library would do by itself (its automatic and timer acknowledgements are off).
 */
export class AuditStream {
  private readonly service: LogicalReplicationService;
  /** the position last reported, repeated in status messages (wal_sender_timeout) */
  private reported: Lsn | null = null;
  private reports = 0;
  /** data messages received over every connection so far (a reconnect knows whether the last one worked) */
  messagesReceived = 0;
  private timer: NodeJS.Timeout | null = null;
  /** whether data messages bypass the library on the current connection (see takeOverDataMessages in replication-library.ts) */
  readsDirectly = false;

  /**
   * `readThroughLibrary`: never replace the library's data listener (see takeOverDataMessages in replication-library.ts); what
   * the consumer is handed must be the same either way, and a test holds the two paths to that.
   */
  constructor(
    private readonly config: pg.ClientConfig,
    private readonly slot: string,
    private readonly log: Logger,
    private readonly options: { readThroughLibrary?: boolean } = {},
  ) {
    this.service = new LogicalReplicationService(
      { ...config, options: TEXT_OUTPUT_OPTIONS } as pg.ClientConfig,
      // No automatic or timed acknowledgements (they acknowledge what was received, not stored), and no
      // library flow control: it pauses the socket for every message it processes, so the server's
      // decoding and ours would alternate instead of overlapping. Our handler is synchronous and
      // pauses the socket itself when too much is unstored.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
  }

  /** Report to the server that everything before `lsn` is stored (the caller never goes backwards). */
  acknowledge(lsn: Lsn): void {
    this.reported = lsn;
    this.report(lsn);
  }

  /**
   * The library reports x+1 for acknowledge(x). Echoing an idle keepalive's position that way
   * makes the server's next keepalive one byte further, and the confirmed position creeps past
   * the WAL end on a quiet server until it passes the start of the next commit, which a restart
   * would then skip. So report exactly what is meant.
   */
  private report(lsn: Lsn, ping = false): void {
    if (lsn === 0n) return;
    this.reports++;
    void this.service.acknowledge(formatLsn((lsn - 1n) as Lsn), ping);
  }

  /** how many times streaming started (START_REPLICATION answered): a reconnection shows here */
  starts = 0;

  /** Stream until stop() or an error; rejects when the connection fails (the caller reconnects). */
  async run(consumer: StreamConsumer, startFrom: Lsn | null): Promise<void> {
    if (startFrom !== null && (this.reported === null || startFrom > this.reported)) this.reported = startFrom;
    // Values stay the server's text; audit_log inserts stay bytes (see PgoutputDecoder).
    const decoder = new PgoutputDecoder(AUDIT_LOG);
    this.service.removeAllListeners('data');
    this.service.removeAllListeners('heartbeat');
    this.service.removeAllListeners('error');
    this.service.removeAllListeners('start');
    this.service.on('error', (err: Error) => this.log.warn({ err: err.message }, 'replication stream error'));
    this.service.on('data', (lsn: string, msg: Pgoutput.Message) => this.dispatch(consumer, lsn, msg as DecodedMessage));
    this.readsDirectly = false;
    this.service.on('start', () => {
      this.starts++;
      // Data messages skip the library's two layers of events (takeOverDataMessages), unless told not to.
      if (this.options.readThroughLibrary) return;
      this.readsDirectly = takeOverDataMessages(this.service, (xlog) => this.dispatch(consumer, xlog, decoder.decode(xlog.subarray(25))));
      if (!this.readsDirectly) this.log.debug('replication library internals differ; reading through it');
    });
    this.service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
      // Data is dispatched synchronously in socket order, so everything sent before this keepalive
      // has reached the consumer.
      const reports = this.reports;
      consumer.onKeepalive(parseLsn(lsn));
      if (shouldRespond && this.reports === reports && this.reported !== null) this.report(this.reported);
    });
    this.timer = setInterval(() => {
      // A paused stream reads no keepalives; a status message keeps wal_sender_timeout away.
      if (this.reported !== null) this.report(this.reported, true);
    }, STATUS_INTERVAL_MS);
    try {
      await this.service.subscribe(decoder.plugin, this.slot);
    } finally {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
    }
  }

  readonly flow: Flow = {
    pause: () => pauseSocket(this.service),
    resume: () => resumeSocket(this.service),
  };

  /** Ask the server for a keepalive now (its answer carries its current position). */
  ping(): void {
    if (this.reported !== null) this.report(this.reported, true);
  }

  /**
   * Let go of the connection now (run() then rejects, and the caller reconnects with backoff): a
   * server shutting down waits for its walsender, which waits for a confirmation we may not be able
   * to give. Nothing is lost: the slot keeps its place.
   */
  drop(reason: string): void {
    if (destroySocket(this.service, new Error(`replication connection dropped: ${reason}`))) this.log.warn({ reason }, 'dropping the replication connection');
  }

  /**
   * End streaming. The connection is in COPY-both mode, where a plain Terminate is never answered
   * (the library's stop() waits forever): send CopyDone first, and if the server still does not
   * close within a few seconds, drop the socket. Nothing is lost either way: the slot keeps its place.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    endCopy(this.service);
    const stopped = this.service.stop().then(
      () => true,
      () => true,
    );
    if (!(await Promise.race([stopped, sleep(3000, undefined, { ref: false }).then(() => false)]))) {
      this.log.warn('the replication connection did not close in 3s; dropping it');
      destroySocket(this.service);
      await Promise.race([stopped, sleep(1000, undefined, { ref: false })]);
    }
  }

  /**
   * One data message to the consumer. `walStart` is where the server says the message starts: the
   * library's text, or the XLogData message itself (read only if a begin or commit lacks its own).
   */
  private dispatch(consumer: StreamConsumer, walStart: string | Buffer, msg: DecodedMessage): void {
    this.messagesReceived++;
    if (msg.tag === 'audit-insert') return consumer.onEvent({ type: 'audit-insert', tuple: msg.tuple });
    const lsn = () => (typeof walStart === 'string' ? walStart : formatLsn(walStart.readBigUInt64BE(1) as Lsn));
    switch (msg.tag) {
      case 'begin':
        return consumer.onEvent({ type: 'begin', xid: msg.xid, commitLsn: parseLsn(msg.commitLsn ?? lsn()), commitTime: pgTime(msg.commitTime) });
      case 'commit':
        return consumer.onEvent({ type: 'commit', commitLsn: parseLsn(msg.commitLsn ?? lsn()), endLsn: parseLsn(msg.commitEndLsn ?? lsn()) });
      case 'insert':
        return consumer.onEvent({ type: 'change', op: 'insert', relation: rel(msg.relation), row: msg.new as RowText, old: null });
      case 'update':
        return consumer.onEvent({
          type: 'change',
          op: 'update',
          relation: rel(msg.relation),
          row: msg.new as RowText,
          old: (msg.old ?? msg.key) as RowText | null,
        });
      case 'delete':
        return consumer.onEvent({ type: 'change', op: 'delete', relation: rel(msg.relation), row: null, old: (msg.old ?? msg.key) as RowText | null });
      case 'message':
        if (msg.prefix !== READ_MESSAGE_PREFIX) return undefined;
        return consumer.onEvent({
          type: 'message',
          lsn: parseLsn(msg.messageLsn ?? lsn()),
          transactional: msg.transactional,
          content: Buffer.from(msg.content.buffer, msg.content.byteOffset, msg.content.byteLength),
        });
      case 'truncate':
        return consumer.onEvent({ type: 'change', op: 'truncate', relation: msg.relations.map(rel).join(','), row: null, old: null });
      default:
        return undefined; // relation, type, origin, message: no data of ours
    }
  }
}

function rel(r: { schema: string; name: string }): string {
  return `${r.schema}.${r.name}`;
}

/**
 * pgoutput sends microseconds since 2000-01-01; the library has already moved them to the Unix
 * epoch (its readTime adds 946684800000000), so only the unit changes here.
 */
// eslint-disable-next-line @typescript-eslint/no-wrapper-object-types -- pg-logical-replication types commitTime as BigInt
function pgTime(unixMicros: bigint | BigInt): Date {
  return new Date(Number(BigInt(unixMicros as bigint) / 1000n));
}
