import { LogicalReplicationService, PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { RowText } from '../seal/record.js';
import { tupleLayout, type RawTuple, type TupleLayout } from '../seal/raw-record.js';
import { formatLsn, parseLsn, type Lsn } from './lsn.js';
import { PUBLICATION, TEXT_OUTPUT_OPTIONS } from './slot.js';

export const AUDIT_LOG = 'audit.audit_log';

/** What the stream hands downstream, in commit order. */
export type StreamEvent =
  | { type: 'begin'; xid: number; commitLsn: Lsn; commitTime: Date }
  | { type: 'change'; op: 'insert' | 'update' | 'delete' | 'truncate'; relation: string; row: RowText | null; old: RowText | null }
  /** an audit_log insert, left as the server's bytes (valid only during the onEvent call) */
  | { type: 'audit-insert'; tuple: RawTuple }
  | { type: 'commit'; commitLsn: Lsn; endLsn: Lsn };

export interface StreamConsumer {
  /**
   * Called synchronously, in stream order. It must not await: backpressure goes through the
   * Flow it was given (pause the socket), which keeps decoding and storing overlapped.
   */
  onEvent(e: StreamEvent): void;
  /** True when nothing received is waiting to be stored: only then may a keepalive advance the slot. */
  isIdle(): boolean;
  /** The server's position on a keepalive while idle (used by --drain and heartbeats). */
  onIdlePosition?(lsn: Lsn): void;
  /** The server's position on every keepalive: everything it decoded below it has been sent. */
  onServerPosition?(lsn: Lsn): void;
}

/** Stop and restart reading from the server (backpressure). */
export interface Flow {
  pause(): void;
  resume(): void;
}

interface ServiceInternals { _connection?: { stream?: { pause?: () => void; resume?: () => void } } }

const STATUS_INTERVAL_MS = 10_000;

/**
 * Streams audit_log changes from our slot. The one rule: the position reported to the server is
 * never past what the consumer confirmed as stored, whatever the library would do by itself
 * (its automatic and timer acknowledgements are off; keepalives are answered here).
 */
export class AuditStream {
  private readonly service: LogicalReplicationService;
  private durable: Lsn | null = null;
  /** data messages received over every connection so far (a reconnect knows whether the last one worked) */
  messagesReceived = 0;
  private timer: NodeJS.Timeout | null = null;
  /** whether data messages bypass the library on the current connection (see readDataDirectly) */
  readsDirectly = false;

  /**
   * `readThroughLibrary`: never replace the library's data listener (see readDataDirectly); what
   * the consumer is handed must be the same either way, and a test holds the two paths to that.
   */
  constructor(private readonly config: pg.ClientConfig, private readonly slot: string, private readonly log: Logger,
    private readonly options: { readThroughLibrary?: boolean } = {}) {
    this.service = new LogicalReplicationService(
      { ...config, options: TEXT_OUTPUT_OPTIONS } as pg.ClientConfig,
      // No automatic or timed acknowledgements (they acknowledge what was received, not stored), and no
      // library flow control: it pauses the socket for every message it processes, so the server's
      // decoding and ours would alternate instead of overlapping. Our handler is synchronous and
      // pauses the socket itself when too much is unstored.
      { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: false } },
    );
  }

  /**
   * Everything before lsn is stored (a commit's end LSN, or a keepalive's position while idle):
   * report it to the server. Never moves backwards.
   */
  confirm(lsn: Lsn): void {
    if (this.durable !== null && lsn <= this.durable) return;
    this.durable = lsn;
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
    void this.service.acknowledge(formatLsn((lsn - 1n) as Lsn), ping);
  }

  /** how many times streaming started (START_REPLICATION answered): a reconnection shows here */
  starts = 0;

  get confirmed(): Lsn | null {
    return this.durable;
  }

  /** Stream until stop() or an error; rejects when the connection fails (the caller reconnects). */
  async run(consumer: StreamConsumer, startFrom: Lsn | null): Promise<void> {
    if (startFrom !== null && (this.durable === null || startFrom > this.durable)) this.durable = startFrom;
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION] });
    // Keep every value as the server's text: exact (microseconds, big numbers, jsonb as written)
    // and fastest. The relation message is parsed before the rows that use it, synchronously.
    // audit_log inserts, nearly all the traffic, skip the library's per-column decoding: their
    // tuple goes downstream as bytes (seal/raw-record.ts). Everything else is parsed as usual.
    const parse = plugin.parse.bind(plugin);
    let audit: TupleLayout | null = null;
    plugin.parse = (buf: Buffer) => {
      if (audit && buf[0] === 0x49 /* I */ && buf.readInt32BE(1) === audit.relid && buf[5] === 0x4e /* N */) {
        return { tag: 'audit-insert', tuple: { buf, offset: 6, layout: audit } } as unknown as Pgoutput.Message;
      }
      const msg = parse(buf);
      if (msg.tag === 'relation') {
        for (const c of msg.columns) c.parser = (raw: unknown) => raw;
        if (`${msg.schema}.${msg.name}` === AUDIT_LOG) audit = tupleLayout(msg.relationOid, msg.columns.map((c) => c.name));
      }
      return msg;
    };
    this.service.removeAllListeners('data');
    this.service.removeAllListeners('heartbeat');
    this.service.removeAllListeners('error');
    this.service.removeAllListeners('start');
    this.service.on('error', (err: Error) => this.log.warn({ err: err.message }, 'replication stream error'));
    this.service.on('data', (lsn: string, msg: Pgoutput.Message) => this.dispatch(consumer, lsn, msg));
    this.readsDirectly = false;
    this.service.on('start', () => {
      this.starts++;
      if (!this.options.readThroughLibrary) this.readDataDirectly(plugin, consumer);
    });
    this.service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
      // Data is dispatched synchronously in socket order, so everything sent before this keepalive
      // has reached the consumer: if it holds nothing unstored, nothing below this position is pending.
      consumer.onServerPosition?.(parseLsn(lsn));
      if (consumer.isIdle()) {
        const pos = parseLsn(lsn);
        // Nothing is pending, so nothing at or below the server's position awaits storage:
        // advancing keeps an idle audit_log from pinning WAL on a busy server.
        this.confirm(pos);
        consumer.onIdlePosition?.(pos);
      } else if (shouldRespond && this.durable !== null) {
        this.report(this.durable);
      }
    });
    this.timer = setInterval(() => {
      // A paused stream reads no keepalives; a status message keeps wal_sender_timeout away.
      if (this.durable !== null) this.report(this.durable, true);
    }, STATUS_INTERVAL_MS);
    try {
      await this.service.subscribe(plugin, this.slot);
    } finally {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
    }
  }

  readonly flow: Flow = {
    pause: () => (this.service as unknown as ServiceInternals)._connection?.stream?.pause?.(),
    resume: () => (this.service as unknown as ServiceInternals)._connection?.stream?.resume?.(),
  };

  /** Ask the server for a keepalive now (its answer carries its current position). */
  ping(): void {
    if (this.durable !== null) this.report(this.durable, true);
  }

  /**
   * Let go of the connection now (run() then rejects, and the caller reconnects with backoff): a
   * server shutting down waits for its walsender, which waits for a confirmation we may not be able
   * to give. Nothing is lost: the slot keeps its place.
   */
  drop(reason: string): void {
    const conn = (this.service as unknown as { _connection?: { stream?: { destroy: (err?: Error) => void } } })._connection;
    if (!conn?.stream) return;
    this.log.warn({ reason }, 'dropping the replication connection');
    conn.stream.destroy(new Error(`replication connection dropped: ${reason}`));
  }

  /**
   * End streaming. The connection is in COPY-both mode, where a plain Terminate is never answered
   * (the library's stop() waits forever): send CopyDone first, and if the server still does not
   * close within a few seconds, drop the socket. Nothing is lost either way: the slot keeps its place.
   */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const conn = (this.service as unknown as { _connection?: { endCopyFrom?: () => void; stream?: { destroy: () => void } } })._connection;
    try {
      conn?.endCopyFrom?.();
    } catch {
      // already closed
    }
    const stopped = this.service.stop().then(() => true, () => true);
    if (!(await Promise.race([stopped, sleep(3000, undefined, { ref: false }).then(() => false)]))) {
      this.log.warn('the replication connection did not close in 3s; dropping it');
      conn?.stream?.destroy();
      await Promise.race([stopped, sleep(1000, undefined, { ref: false })]);
    }
  }

  /**
   * The library spells every data message's position as a string and passes the message through
   * two layers of events before it reaches dispatch(); with audit_log inserts at >100k/s that was a
   * tenth of the reading thread's time. Once streaming has started, its listener for data messages
   * is replaced by one that parses them the same way (same plugin) and dispatches at once;
   * keepalives and anything else still go through the library. If its internals are not what this
   * expects, nothing is replaced and its own path (the 'data' listener above) stays in use.
   */
  private readDataDirectly(plugin: PgoutputPlugin, consumer: StreamConsumer): void {
    const conn = (this.service as unknown as { _connection?: NodeJS.EventEmitter })._connection;
    const library = conn ? libraryDataListener(conn) : null;
    if (!conn || !library) {
      this.log.debug('replication library internals differ; reading through it');
      return;
    }
    conn.removeListener('copyData', library);
    this.readsDirectly = true;
    conn.on('copyData', (m: { chunk: Buffer }) => {
      const buf = m.chunk;
      if (buf[0] !== 0x77 /* w: XLogData */) return library(m);
      return this.dispatch(consumer, buf, plugin.parse(buf.subarray(25)));
    });
  }

  /**
   * One data message to the consumer. `walStart` is where the server says the message starts: the
   * library's text, or the XLogData message itself (read only if a begin or commit lacks its own).
   */
  private dispatch(consumer: StreamConsumer, walStart: string | Buffer, msg: Pgoutput.Message): void {
    this.messagesReceived++;
    if ((msg as { tag: string }).tag === 'audit-insert') {
      return consumer.onEvent({ type: 'audit-insert', tuple: (msg as unknown as { tuple: RawTuple }).tuple });
    }
    const lsn = () => typeof walStart === 'string' ? walStart : formatLsn(walStart.readBigUInt64BE(1) as Lsn);
    switch (msg.tag) {
      case 'begin':
        return consumer.onEvent({ type: 'begin', xid: msg.xid, commitLsn: parseLsn(msg.commitLsn ?? lsn()), commitTime: pgTime(msg.commitTime) });
      case 'commit':
        return consumer.onEvent({ type: 'commit', commitLsn: parseLsn(msg.commitLsn ?? lsn()), endLsn: parseLsn(msg.commitEndLsn ?? lsn()) });
      case 'insert':
        return consumer.onEvent({ type: 'change', op: 'insert', relation: rel(msg.relation), row: msg.new as RowText, old: null });
      case 'update':
        return consumer.onEvent({ type: 'change', op: 'update', relation: rel(msg.relation), row: msg.new as RowText, old: (msg.old ?? msg.key) as RowText | null });
      case 'delete':
        return consumer.onEvent({ type: 'change', op: 'delete', relation: rel(msg.relation), row: null, old: (msg.old ?? msg.key) as RowText | null });
      case 'truncate':
        return consumer.onEvent({ type: 'change', op: 'truncate', relation: msg.relations.map(rel).join(','), row: null, old: null });
      default:
        return undefined; // relation, type, origin, message: no data of ours
    }
  }
}

/**
 * The replication library's listener for CopyData messages on its connection, or null when the
 * connection does not look as expected. pg's own client listens too (its bound _handleCopyData, a
 * no-op while replicating): that one is left alone.
 */
export function libraryDataListener(conn: NodeJS.EventEmitter): ((m: { chunk: Buffer }) => void) | null {
  const theirs = conn.listeners('copyData').filter((f) => f.name !== 'bound _handleCopyData');
  return theirs.length === 1 ? (theirs[0] as (m: { chunk: Buffer }) => void) : null;
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
