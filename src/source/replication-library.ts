import type { EventEmitter } from 'node:events';
import { PgoutputPlugin, type LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import { tupleLayout, type RawTuple, type TupleLayout } from '../seal/raw-record.js';
import { PUBLICATION } from './slot.js';

/**
 * Everything this project relies on inside pg-logical-replication (2.x), in one file: when the
 * library changes, this is the one place to look. The rest of the code sees a service that
 * subscribes and acknowledges (the library's public API) and the functions below.
 *
 * What is used that the library does not publish: its pg connection (`_connection`), whose socket
 * is paused for backpressure, destroyed when the server shuts down, and sent CopyDone on stop; and
 * its CopyData listener, replaced for data messages (see takeOverDataMessages).
 */

interface Connection extends EventEmitter {
  stream?: { pause?: () => void; resume?: () => void; destroy: (err?: Error) => void };
  endCopyFrom?: () => void;
}

function connectionOf(service: LogicalReplicationService): Connection | null {
  return (service as unknown as { _connection?: Connection })._connection ?? null;
}

/** Backpressure: stop and restart reading the replication socket. */
export function pauseSocket(service: LogicalReplicationService): void {
  connectionOf(service)?.stream?.pause?.();
}

export function resumeSocket(service: LogicalReplicationService): void {
  connectionOf(service)?.stream?.resume?.();
}

/** Drop the connection now (subscribe() then rejects). False when there is none. */
export function destroySocket(service: LogicalReplicationService, err?: Error): boolean {
  const stream = connectionOf(service)?.stream;
  if (!stream) return false;
  stream.destroy(err);
  return true;
}

/** CopyDone: in COPY-both mode a plain Terminate is never answered, so end the copy first. */
export function endCopy(service: LogicalReplicationService): void {
  try {
    connectionOf(service)?.endCopyFrom?.();
  } catch {
    // already closed
  }
}

/**
 * The replication library's listener for CopyData messages on its connection, or null when the
 * connection does not look as expected. pg's own client listens too (its bound _handleCopyData, a
 * no-op while replicating): that one is left alone.
 */
export function libraryDataListener(conn: EventEmitter): ((m: { chunk: Buffer }) => void) | null {
  const theirs = conn.listeners('copyData').filter((f) => f.name !== 'bound _handleCopyData');
  return theirs.length === 1 ? (theirs[0] as (m: { chunk: Buffer }) => void) : null;
}

/**
 * The library spells every data message's position as a string and passes the message through two
 * layers of events; with audit_log inserts at >100k/s that was a tenth of the reading thread's time.
 * Once streaming has started, its listener is replaced for XLogData messages by `onData(message)`
 * (the XLogData message itself: 'w', start, end, time, then the pgoutput message at byte 25);
 * keepalives and anything else still go through the library. False (nothing replaced) when its
 * internals are not what this expects: its own path then stays in use.
 */
export function takeOverDataMessages(service: LogicalReplicationService, onData: (xlogData: Buffer) => void): boolean {
  const conn = connectionOf(service);
  const library = conn ? libraryDataListener(conn) : null;
  if (!conn || !library) return false;
  conn.removeListener('copyData', library);
  conn.on('copyData', (m: { chunk: Buffer }) => {
    if (m.chunk[0] !== 0x77 /* w: XLogData */) return library(m);
    return onData(m.chunk);
  });
  return true;
}

/** A pgoutput message as this project reads it: the library's, or an audit_log insert left as bytes. */
export type DecodedMessage = Pgoutput.Message | { tag: 'audit-insert'; tuple: RawTuple };

/**
 * pgoutput (protocol 1) decoding, with two changes to the library's plugin:
 * - every column value stays the server's text (exact: microseconds, big numbers, jsonb as written;
 *   and fastest): the relation message's per-column parsers are replaced by the identity;
 * - an insert into `auditRelation` (nearly all the traffic) is not decoded at all: its tuple goes
 *   downstream as bytes (seal/raw-record.ts), once its relation message has been seen.
 * The relation message always precedes the rows that use it, in the same stream.
 */
export class PgoutputDecoder {
  /** the plugin to subscribe with (one per connection: relations are sent again on each); its parse is decode() */
  // messages: logical decoding messages too (row reads, sql/migrations/008_row_reads.sql)
  readonly plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION], messages: true });
  private audit: TupleLayout | null = null;

  constructor(private readonly auditRelation: string) {
    this.plugin.parse = ((buf: Buffer) => this.decode(buf)) as PgoutputPlugin['parse'];
  }

  decode(buf: Buffer): DecodedMessage {
    const audit = this.audit;
    if (audit && buf[0] === 0x49 /* I */ && buf.readInt32BE(1) === audit.relid && buf[5] === 0x4e /* N */) {
      return { tag: 'audit-insert', tuple: { buf, offset: 6, layout: audit } };
    }
    const msg = PgoutputPlugin.prototype.parse.call(this.plugin, buf);
    if (msg.tag === 'relation') {
      for (const c of msg.columns) c.parser = (raw: unknown) => raw;
      if (`${msg.schema}.${msg.name}` === this.auditRelation)
        this.audit = tupleLayout(
          msg.relationOid,
          msg.columns.map((c) => c.name),
        );
    }
    return msg;
  }
}
