import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { ServiceError } from '../../errors.js';
import { describePgError, inTransaction } from '../../db.js';
import type { Logger } from '../../log.js';
import { CsvRecordStream, type StreamedRecord } from './csv.js';
import { MESSAGE_FIELD, MIN_CSVLOG_FIELDS, splitConnectionFrom, toLogLine, type LogLine } from './csvlog.js';
import { attribute, endTransactions, expire, holdRead, type Settled } from './attribution.js';
import { classify, protectedTables, truncate, type Classified, type LogAuditEvent, type SessionContext } from './pgaudit.js';
import { settingDefault } from '../../config.js';
import { MISSING_LINES_ACTION, RECEIPT_ACTION, RECEIPT_SOURCE, type IngestReceipt } from './receipt.js';
import { EXTENSION, RECORD_START, identityOf, type LogFile, type LogFiles, type LogReader } from './log-files.js';
import { JsonlogRecordStream } from './jsonlog.js';

export interface IngestOptions {
  /** the server's csvlog or jsonlog: its directory, or read over SQL (log-files.ts) */
  logs: LogFiles;
  statementMaxLength: number;
  log: Logger;
  /** bytes read per transaction; a record longer than this grows the read */
  chunkBytes?: number;
  /**
   * How long a read of a table with audit_read_context waits for the server's line with its context
   * before it is written as unknown (a read that returned no row never has one). Default 1 minute:
   * the line comes when the scan checks its first row, normally within milliseconds of the read.
   */
  contextWaitMs?: number;
}

/** --context-wait's default, as the settings registry declares it */
export const DEFAULT_CONTEXT_WAIT_MS = settingDefault('contextWait');

export interface IngestStats {
  files: number;
  lines: number;
  events: number;
  ignored: number;
  malformed: number;
  duplicates: number;
  /** bytes left unread at the end of the pass (a record still being written, or more than one pass holds) */
  pendingBytes: number;
  /** reads held at the end of the pass, waiting for the server's line with their context */
  held: number;
}

/**
 * A file's seen size (audit.ingest_files.seen_size) once the source cut bytes out of it (rds-logs.ts):
 * its listed size no longer measures what is read, so its removal is never taken for unread bytes.
 * Once rotated and read to its end it becomes minus its listed size: done, not read again.
 */
const SIZE_UNKNOWN = -1;

/** A session not seen in the log for this long has ended; what was kept of it is dropped. */
const SESSION_TTL_DAYS = 30;

/**
 * Turns pgaudit lines of the server's csvlog into audit_log rows, exactly once: each transaction
 * inserts the rows of a run of complete lines and moves that file's saved offset past them, so a
 * crash replays nothing and skips nothing.
 */
export class Ingester {
  private readonly chunkBytes: number;
  private database = '';
  private sessions = new Map<string, { context: SessionContext; lastSeen: string }>();
  private loaded = false;
  /** the newest session time saved since the last expiry */
  private newestSaved: string | null = null;

  /** the most bytes of one csvlog field held in memory (the rest is scanned, not kept) */
  private readonly maxFieldBytes: number;
  /** rotated files already said to end short of their listed size (said once a process: the next passes read the same) */
  private readonly saidShort = new Set<string>();

  constructor(
    private readonly client: pg.Client,
    private readonly opts: IngestOptions,
  ) {
    this.chunkBytes = opts.chunkBytes ?? 1 << 20;
    // A kept statement of N characters is at most 4N bytes of UTF-8, doubled once more where
    // pgaudit's CSV quotes it inside the message.
    this.maxFieldBytes = Math.max(65_536, 8 * opts.statementMaxLength + 4096);
  }

  /** Ingest everything complete in the log directory now, then return. */
  async runOnce(): Promise<IngestStats> {
    await this.load();
    const stats: IngestStats = { files: 0, lines: 0, events: 0, ignored: 0, malformed: 0, duplicates: 0, pendingBytes: 0, held: 0 };
    const { rows } = await this.query<{ file_key: string; file_name: string; byte_offset: string; seen_size: string | null }>(
      'SELECT file_key, file_name, byte_offset, seen_size::text AS seen_size FROM audit.ingest_files',
    );
    const offsets = new Map(rows.map((r) => [r.file_key, Number(r.byte_offset)]));
    const seenSizes = new Map(rows.map((r) => [r.file_key, r.seen_size === null ? null : Number(r.seen_size)]));
    const files = adoptSavedKeys(await this.opts.logs.list(), rows);
    await this.noteRemovedUnread(rows, files, stats);
    // A file the server has rotated away from (a newer file of the same server follows it) is
    // complete: a record still open at its end was torn.
    const newestOf = new Map(files.map((f, i) => [f.server, i]));
    for (const [i, file] of files.entries()) {
      const saved = offsets.get(file.key) ?? 0;
      if (saved > file.size) {
        this.opts.log.warn(
          { file: file.name, saved, size: file.size },
          'log file is shorter than the saved position; it was truncated in place, reading it again from the start',
        );
      }
      const from = saved > file.size ? 0 : saved;
      const rotated = i < newestOf.get(file.server)!;
      // A file the source cut bytes out of never reaches its listed size: once rotated and read to
      // its end, it is marked done with that size (-size, below), or every pass would read it again.
      if (from === file.size || (rotated && seenSizes.get(file.key) === -file.size)) continue;
      stats.files++;
      const { pending, cut, reached } = await this.ingestFile(file, from, stats, rotated);
      stats.pendingBytes += pending;
      // A rotated file its source serves only in part (the RDS API was reported to stop a 260 MB
      // file at 100 MB): the rest is recorded as missing only when the file is removed, days later
      // on RDS; said now, once.
      if (rotated && !cut && seenSizes.get(file.key) !== SIZE_UNKNOWN && reached < file.size && !this.saidShort.has(file.key)) {
        this.saidShort.add(file.key);
        this.opts.log.warn(
          { file: file.name, read_to: reached, size: file.size },
          'a rotated log file ends, as its source serves it, before its listed size: the bytes past that are not read, and are recorded as LOG LINES MISSING when the file is removed',
        );
      }
      if (rotated && pending === 0 && (cut || seenSizes.get(file.key) === SIZE_UNKNOWN)) {
        await this.query('UPDATE audit.ingest_files SET seen_size = $2 WHERE file_key = $1', [file.key, -file.size]);
      }
    }
    await this.writeExpiredReads(stats);
    for (const { context } of this.sessions.values()) stats.held += context.pending?.length ?? 0;
    await this.expireSessions();
    if (stats.malformed > 0)
      this.opts.log.warn(
        { malformed: stats.malformed },
        'log records that could not be read were recorded as UNREADABLE LOG RECORD events (their bytes are not copied)',
      );
    return stats;
  }

  /**
   * Files the last pass listed that are gone now, removed by the log's retention before they were
   * read to the length they had: the lines past the saved position were never read, and what they
   * held is unknown. Recorded as missing (once: the row's seen size drops to its position in the
   * same transaction). Then every listed file's size is remembered for the next pass.
   */
  private async noteRemovedUnread(
    saved: { file_key: string; file_name: string; byte_offset: string; seen_size: string | null }[],
    files: LogFile[],
    stats: IngestStats,
  ): Promise<void> {
    const listed = new Set(files.map((f) => f.key));
    // (A negative seen size: SIZE_UNKNOWN, or done.)
    const lost = saved.filter((r) => r.seen_size !== null && !listed.has(r.file_key) && Number(r.seen_size) > Number(r.byte_offset));
    // Only sizes that grew are written: a quiet log writes nothing each pass.
    const seen = new Map(saved.map((r) => [r.file_key, r.seen_size === null ? -1 : Number(r.seen_size) < 0 ? Infinity : Number(r.seen_size)]));
    const grown = files.filter((f) => (seen.get(f.key) ?? -1) < f.size);
    if (lost.length === 0 && grown.length === 0) return;
    try {
      await inTransaction(this.client, async () => {
        if (lost.length > 0) {
          const events = lost.map((r) =>
            aboutTheLog(
              MISSING_LINES_ACTION,
              `log file ${r.file_name}: bytes ${r.byte_offset}-${r.seen_size} (${Number(r.seen_size) - Number(r.byte_offset)}) were never read`,
              "the log file was removed (the server's or the platform's log retention) before ingest read it: any audit event in those bytes is lost",
            ),
          );
          stats.events += await insertEvents(this.client, events);
          await this.client.query('UPDATE audit.ingest_files SET seen_size = byte_offset, updated_at = now() WHERE file_key = ANY($1::text[])', [
            lost.map((r) => r.file_key),
          ]);
        }
        if (grown.length > 0) {
          await this.client.query(
            `INSERT INTO audit.ingest_files (file_key, file_name, byte_offset, seen_size)
             SELECT k, n, 0, s FROM unnest($1::text[], $2::text[], $3::bigint[]) AS x(k, n, s)
             ON CONFLICT (file_key) DO UPDATE SET seen_size = CASE WHEN audit.ingest_files.seen_size < 0 THEN audit.ingest_files.seen_size
               ELSE GREATEST(audit.ingest_files.seen_size, excluded.seen_size) END`,
            [grown.map((f) => f.key), grown.map((f) => f.name), grown.map((f) => f.size)],
          );
        }
      });
    } catch (err) {
      throw new ServiceError(`cannot note the log files' sizes: ${describePgError(err)}`);
    }
    for (const r of lost) {
      this.opts.log.error(
        { file: r.file_name, from: Number(r.byte_offset), to: Number(r.seen_size) },
        `a log file was removed before ingest read it; its unread bytes are recorded as a ${MISSING_LINES_ACTION} event`,
      );
    }
  }

  /** Keep ingesting until the signal aborts; returns the totals. */
  follow(signal: AbortSignal, pollMs = 500, onPass?: (s: IngestStats) => void): Promise<IngestStats> {
    return followPasses(() => this.runOnce(), this.opts.log, signal, pollMs, onPass);
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    const {
      rows: [db],
    } = await this.query<{ db: string }>('SELECT current_database() AS db');
    this.database = db!.db;
    const { rows } = await this.query<{ log_session_id: string; context: SessionContext; last_seen: Date }>(
      'SELECT log_session_id, context, last_seen FROM audit.ingest_sessions',
    );
    for (const r of rows) this.sessions.set(r.log_session_id, { context: r.context, lastSeen: r.last_seen.toISOString() });
    this.loaded = true;
  }

  /**
   * Returns the bytes read and left for a later pass (a record still being written), whether the
   * source cut a record, and how far the file's bytes were read.
   */
  private async ingestFile(file: LogFile, start: number, stats: IngestStats, rotated: boolean): Promise<{ pending: number; cut: boolean; reached: number }> {
    const fh = await this.opts.logs.open(file);
    const json = file.name.endsWith(EXTENSION.jsonlog);
    try {
      let from = start;
      const boundary = await recordBoundaryFrom(fh, start, file.size, RECORD_START[json ? 'jsonlog' : 'csvlog']);
      if (boundary !== start) {
        // The saved position is not where a record starts: only a changed position does that (the
        // receipts show the jump). Record the bytes up to the next record as unreadable, go on there.
        this.opts.log.error({ file: file.name, saved: start, next_record: boundary }, 'the saved position is inside a log record; resuming at the next record');
        if (boundary === null) return { pending: file.size - start, cut: false, reached: file.size }; // no record starts after it yet
        const skipped = Buffer.alloc(boundary - start);
        await fh.read(skipped, 0, skipped.length, start);
        await this.commitChunk(
          file,
          { from: start, to: boundary, sha256: createHash('sha256').update(skipped).digest('hex') },
          [unreadable(start, boundary, 'the saved position was inside a record: these bytes were skipped to the next one')],
          stats,
        );
        from = boundary;
      }
      // Bounded memory whatever a record's size: fields are cut while parsing (csv.ts, jsonlog.ts), and
      // a commit covers the complete records of one read.
      const parserAt = (at: number) => (json ? new JsonlogRecordStream(at, this.maxFieldBytes) : new CsvRecordStream(at, this.maxFieldBytes));
      let parser = parserAt(from);
      const buf = Buffer.alloc(this.chunkBytes);
      let hash = createHash('sha256');
      let committed = from;
      let sawCut = false;
      /** the bytes ended in a line the source may have cut (rds-logs.ts): nothing after it yet */
      let endCut = false;
      /** Records the record open at the parser's position as unreadable (its end never comes), and reads on after it. */
      const endOpenRecord = async (message: string, why: string, sizeUnknown: boolean): Promise<void> => {
        const to = parser.position;
        this.opts.log.error({ file: file.name, from: committed, to }, message);
        const range = { from: committed, to, sha256: hash.digest('hex') };
        await this.commitChunk(file, range, [cutShort(parser, committed, to, why)], stats, { sizeUnknown });
        committed = to;
        hash = createHash('sha256');
        parser = parserAt(to);
      };
      for (;;) {
        const at = parser.position;
        const { bytesRead, cut } = await fh.read(buf, 0, buf.length, at);
        if (bytesRead === 0) {
          endCut = cut === true;
          break;
        }
        const chunk = buf.subarray(0, bytesRead);
        const records = parser.push(chunk);
        if (records.length === 0) hash.update(chunk);
        else {
          const end = records[records.length - 1]!.end;
          hash.update(chunk.subarray(0, end - at));
          await this.commitChunk(file, { from: committed, to: end, sha256: hash.digest('hex') }, records, stats);
          committed = end;
          hash = createHash('sha256');
          hash.update(chunk.subarray(end - at));
        }
        if (cut && parser.position > committed) {
          // The source cut the record open here (RDS: a line over 1 MB): its end never comes, and
          // read on as if it would, its open quote would swallow the lines after it.
          await endOpenRecord(
            'the log source cut a log record short (RDS returns at most 1 MB of a line); recorded as unreadable, with who wrote it where its fields say',
            'the log source cut this record short (RDS returns at most 1 MB of one line): the rest of it never reached ingest',
            true,
          );
          sawCut = true;
        }
      }
      // The loop ends where the file's bytes end. A file the server rotated away from gets no more:
      // a record still open there was torn.
      if (rotated && parser.position > committed) {
        await endOpenRecord(
          endCut
            ? 'the log source cut the last log record of a rotated file short (RDS returns at most 1 MB of a line); recorded as unreadable, with who wrote it where its fields say'
            : 'a log record was cut short (a crash or a full disk while it was written); recorded as unreadable',
          endCut
            ? 'the log source cut this record short (RDS returns at most 1 MB of one line): the rest of it never reached ingest'
            : 'the record was cut short and never completed',
          endCut,
        );
        sawCut ||= endCut;
      }
      return { pending: parser.position - committed, cut: sawCut, reached: parser.position };
    } finally {
      await fh.close();
    }
  }

  /**
   * `sizeUnknown`: the source cut bytes out of this file (rds-logs.ts), so its listed size no longer
   * measures what is read: its seen size is set to SIZE_UNKNOWN (-size once read to its end). Such a
   * file removed before it was read to its end is not noticed (README: a line over 1 MB on RDS).
   */
  private async commitChunk(
    file: LogFile,
    range: ConsumedRange,
    records: (StreamedRecord | Unreadable)[],
    stats: IngestStats,
    { sizeUnknown = false } = {},
  ): Promise<void> {
    const newOffset = range.to;
    // Read the protected list after the lines: a read is object-logged only once `protect` committed.
    const tables = await watchedTables(this.client);
    // Not held for a context line that cannot come (a session that switched to another role with SET
    // ROLE would have had one: its reads are then unknown, never misattributed).
    const { rows: bypass } = await this.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolsuper OR rolbypassrls');
    const bypassesRowSecurity = new Set(bypass.map((r) => r.rolname));
    const events: LogAuditEvent[] = [];
    const touched = new Set<string>();
    let malformed = 0;
    let ignored = 0;
    let missing = 0;
    const keep = (sessionId: string, s: Settled | null, logTime: string): boolean => {
      if (!s) return false;
      events.push(...s.done);
      this.sessions.set(sessionId, { context: s.context, lastSeen: logTime });
      touched.add(sessionId);
      return true;
    };
    for (const record of records) {
      // Bytes that are no whole record (cut short, torn, skipped): who wrote them, if that arrived.
      const partial = 'unreadable' in record ? record : null;
      const line = partial ? serverFieldsOf(partial) : toLogLine(record.fields);
      if (!line) {
        // Never silence: the bytes that could not be read are an event of their own, and ingestion goes on after them.
        events.push(unreadableRecord(file, record));
        malformed++;
        continue;
      }
      if (partial && line.databaseName !== this.database) {
        ignored++; // another database's record (its own ingester records it)
        continue;
      }
      const seen = line.databaseName === this.database ? this.sessions.get(line.sessionId)?.context.line : undefined;
      if (seen !== undefined && line.sessionLineNum > seen + 1) {
        events.push(missingLines(file, record, line, seen + 1, line.sessionLineNum - 1));
        missing += line.sessionLineNum - seen - 1;
      }
      keep(line.sessionId, endTransactions(this.sessions.get(line.sessionId)?.context, line.virtualTransactionId), line.logTime);
      if (partial) malformed++;
      const c: Classified = partial
        ? {
            kind: 'event',
            event: unreadableLine(
              file,
              partial,
              line,
              `${partial.unreadable}; its message is not trusted (it may be a forgery: the fields that tell are after it)`,
              this.opts.statementMaxLength,
            ),
          }
        : classify(line, {
            database: this.database,
            tables,
            statementMaxLength: this.opts.statementMaxLength,
            bypassesRowSecurity,
            contextOf: (id) => this.sessions.get(id)?.context,
          });
      if (c.kind === 'event') {
        events.push(c.event);
        if (c.context) keep(c.sessionId!, { context: c.context, done: [] }, line.logTime);
      } else if (c.kind === 'read') {
        keep(c.sessionId, holdRead(c.context, c.read, Date.now()), line.logTime);
      } else if (c.kind === 'read-context') {
        if (!keep(c.sessionId, attribute(this.sessions.get(c.sessionId)?.context, c.line), line.logTime)) ignored++;
      } else if (c.kind === 'malformed') {
        events.push(unreadableLine(file, record, line, c.reason, this.opts.statementMaxLength)); // never a silent drop
        malformed++;
      } else ignored++;
      if (line.databaseName === this.database && (seen === undefined || line.sessionLineNum > seen)) {
        const s = this.sessions.get(line.sessionId);
        this.sessions.set(line.sessionId, { context: { ...s?.context, line: line.sessionLineNum }, lastSeen: line.logTime });
        touched.add(line.sessionId);
      }
    }
    let inserted = 0;
    try {
      await inTransaction(this.client, async () => {
        if (events.length > 0) inserted = await insertEvents(this.client, events);
        if (touched.size > 0) await this.saveSessions(touched);
        await insertReceipt(this.client, file, range, records.length, inserted);
        await savePosition(this.client, file, newOffset, inserted);
        if (sizeUnknown) await this.client.query('UPDATE audit.ingest_files SET seen_size = $2 WHERE file_key = $1', [file.key, SIZE_UNKNOWN]);
      });
    } catch (err) {
      // The in-memory session context may now be ahead of the database: reload it next time.
      this.loaded = false;
      this.sessions.clear();
      throw new ServiceError(`cannot store pgaudit events from ${file.name}: ${describePgError(err)}`);
    }
    stats.lines += records.length;
    stats.events += inserted;
    stats.duplicates += events.length - inserted;
    stats.ignored += ignored;
    stats.malformed += malformed;
    if (events.length > inserted) {
      this.opts.log.warn({ file: file.name, duplicates: events.length - inserted }, 'log lines already in audit_log were not inserted again');
    }
    if (missing > 0) {
      this.opts.log.error(
        { file: file.name, missing_lines: missing },
        `log lines of this database's sessions never reached ingest (removed or cut before they were read); recorded as ${MISSING_LINES_ACTION} events`,
      );
    }
  }

  /**
   * Reads that waited longer than the context wait for the server's line with their context: written
   * with app_context unknown (a read that returned no row has no such line), with the sessions they
   * leave, in one transaction.
   */
  private async writeExpiredReads(stats: IngestStats): Promise<void> {
    const before = Date.now() - (this.opts.contextWaitMs ?? DEFAULT_CONTEXT_WAIT_MS);
    const events: LogAuditEvent[] = [];
    const touched = new Set<string>();
    for (const [id, s] of this.sessions) {
      const settled = expire(s.context, before);
      if (!settled) continue;
      events.push(...settled.done);
      this.sessions.set(id, { context: settled.context, lastSeen: s.lastSeen });
      touched.add(id);
    }
    if (events.length === 0) return;
    let inserted = 0;
    try {
      await inTransaction(this.client, async () => {
        inserted = await insertEvents(this.client, events);
        await this.saveSessions(touched);
      });
    } catch (err) {
      this.loaded = false;
      this.sessions.clear();
      throw new ServiceError(`cannot store pgaudit events: ${describePgError(err)}`);
    }
    stats.events += inserted;
    stats.duplicates += events.length - inserted;
  }

  private async saveSessions(ids: Set<string>): Promise<void> {
    const list = [...ids].map((id) => ({ id, ...this.sessions.get(id)! }));
    await this.client.query(
      `INSERT INTO audit.ingest_sessions (log_session_id, context, last_seen)
       SELECT * FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[])
       ON CONFLICT (log_session_id) DO UPDATE SET context = excluded.context, last_seen = excluded.last_seen`,
      [list.map((s) => s.id), list.map((s) => JSON.stringify(s.context)), list.map((s) => s.lastSeen)],
    );
    const newest = list[list.length - 1]!.lastSeen;
    if (this.newestSaved === null || newest > this.newestSaved) this.newestSaved = newest;
  }

  /**
   * Forget sessions not seen for SESSION_TTL_DAYS, once a pass (every chunk saves the sessions it read
   * statements of, so expiring there would scan the table once a MiB of log).
   */
  private async expireSessions(): Promise<void> {
    if (this.newestSaved === null) return;
    const newest = this.newestSaved;
    this.newestSaved = null;
    await this.query(`DELETE FROM audit.ingest_sessions WHERE last_seen < $1::timestamptz - interval '${SESSION_TTL_DAYS} days'`, [newest]);
  }

  private query<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    return ingestQuery<R>(this.client, sql, params);
  }
}

/**
 * `offset` itself when a record starts there (offset 0, or just after a newline), else the next
 * place where a newline is followed by a log_time, or null when there is none yet.
 */
async function recordBoundaryFrom(fh: LogReader, offset: number, size: number, recordStart: RegExp): Promise<number | null> {
  if (offset === 0) return 0;
  const before = Buffer.alloc(1);
  const { cut } = await fh.read(before, 0, 1, offset - 1);
  // Just after a newline: where the last commit ended (every pass); or just after a record the
  // source cut short (the next line begins there).
  if (before[0] === 0x0a || cut) return offset;
  const window = 1 << 16;
  const look = Buffer.alloc(window + 64);
  for (let at = offset; at < size; at += window) {
    const { bytesRead } = await fh.read(look, 0, look.length, at);
    for (let i = 0; i < Math.min(bytesRead, window); i++) {
      if (look[i] === 0x0a && recordStart.test(look.toString('latin1', i + 1, Math.min(bytesRead, i + 65)))) return at + i + 1;
    }
  }
  return null;
}

/** The action of an event that records log bytes the ingester could not read as a csvlog record. */
export const UNREADABLE_ACTION = 'UNREADABLE LOG RECORD';

/** Bytes that are no record, with why; commitChunk records them like a record it could not read. */
type Unreadable = StreamedRecord & { unreadable: string };

function unreadable(start: number, end: number, why: string): Unreadable {
  return { fields: [], start, end, truncated: false, unreadable: why };
}

/** The record a parser holds open, ended where its bytes stop: with the csvlog fields that arrived. */
function cutShort(parser: CsvRecordStream | JsonlogRecordStream, start: number, end: number, why: string): Unreadable {
  const partial = parser instanceof CsvRecordStream ? parser.cutShort() : null;
  return { ...unreadable(start, end, why), fields: partial?.fields ?? [] };
}

/**
 * The server's own fields of a csvlog record cut short, when they all arrived: the message had
 * begun (MESSAGE_FIELD), so time, user, database, process, client, session and line number before it are
 * whole. Who wrote the record is known, though what it said is not.
 */
function serverFieldsOf(r: Unreadable): LogLine | null {
  if (r.fields.length <= MESSAGE_FIELD) return null;
  return toLogLine([...r.fields, ...Array<string>(Math.max(0, MIN_CSVLOG_FIELDS - r.fields.length)).fill('')]);
}

/**
 * An event the ingester writes about the log itself (not a line pgaudit wrote): a failure, of no
 * table and no application context, without a log line's key (null never conflicts, so a late line
 * of the same number is still inserted).
 */
export function aboutTheLog(action: string, statement: string, error: string, who: Partial<LogAuditEvent> = {}): LogAuditEvent {
  return {
    occurredAt: new Date().toISOString(),
    action,
    outcome: 'failure',
    schemaName: null,
    tableName: null,
    relationName: null,
    sessionUserName: '(unknown)',
    appUserId: null,
    appCustomerId: null,
    appContext: 'unknown',
    applicationName: null,
    clientAddr: null,
    clientPort: null,
    backendPid: null,
    txid: null,
    statement,
    error,
    logSessionId: null,
    logLineNum: null,
    ...who,
  };
}

function unreadableRecord(file: LogFile, r: StreamedRecord | Unreadable): LogAuditEvent {
  const why = 'unreadable' in r ? r.unreadable : `not a log record (${r.fields.length} fields)`;
  return aboutTheLog(UNREADABLE_ACTION, `${file.name} bytes ${r.start}-${r.end}`, why);
}

/**
 * A record whose server fields were read but not what it said: cut short by the source (its end,
 * and the fields that tell pgaudit's lines from forgeries, never came), or a message that is not
 * what it claims. Unreadable still, but with who wrote it, where, and how its message began, so a
 * read padded past the source's limit is not anonymous. Keyed by its session line, like the line.
 */
function unreadableLine(file: LogFile, r: StreamedRecord, line: LogLine, why: string, statementMaxLength: number): LogAuditEvent {
  const { addr, port } = splitConnectionFrom(line.connectionFrom);
  return aboutTheLog(
    UNREADABLE_ACTION,
    truncate(`${file.name} bytes ${r.start}-${r.end}, a record whose message began: ${line.message}`, statementMaxLength),
    why,
    {
      occurredAt: line.logTime,
      sessionUserName: line.userName || '(unknown)',
      backendPid: line.processId,
      clientAddr: addr,
      clientPort: port,
      logSessionId: line.sessionId,
      logLineNum: line.sessionLineNum,
    },
  );
}

/**
 * A session's log lines are numbered 1, 2, 3, ... for the life of its backend, and the logging
 * collector loses none: a jump means lines removed or cut before ingest read them (a file rotated
 * away and deleted, a position moved). What they held is unknown, pgaudit's lines included: say so,
 * with who and where, so the gap stands in the trail like the lines would have.
 */
function missingLines(file: LogFile, r: StreamedRecord, line: LogLine, first: number, last: number): LogAuditEvent {
  return aboutTheLog(
    MISSING_LINES_ACTION,
    `session ${line.sessionId}: lines ${first === last ? first : `${first}-${last}`} (${last - first + 1}) before line ${line.sessionLineNum} at ${file.name} byte ${r.start}`,
    'log lines of this session never reached ingest: removed or cut before they were read; any audit event among them is lost',
    { sessionUserName: line.userName || '(unknown)', applicationName: line.applicationName || null, backendPid: line.processId },
  );
}

/** Which bytes of a log file one commit consumed. */
interface ConsumedRange {
  from: number;
  to: number;
  sha256: string;
}

/**
 * The receipt of one commit, in the same transaction as its events and its new offset: an audit
 * event (source 'ingest') that travels through the chain, so `verify` can prove that every byte of
 * every log file was read once (receipts of a file follow each other without gap or overlap), and
 * anyone holding the log files can check the bytes against the hash. Moving an offset forward past
 * unread lines leaves a gap between two receipts.
 */
export async function insertReceipt(
  client: pg.Client,
  file: Pick<LogFile, 'key' | 'name'>,
  range: ConsumedRange,
  lines: number,
  events: number,
): Promise<void> {
  const receipt: IngestReceipt = { file_key: file.key, file_name: file.name, from: range.from, to: range.to, sha256: range.sha256, lines, events };
  await client.query(
    `INSERT INTO audit.audit_log (occurred_at, source, action, outcome, session_user_name, current_role_name, backend_pid, statement)
     VALUES (clock_timestamp(), '${RECEIPT_SOURCE}', '${RECEIPT_ACTION}', 'success', session_user, current_user, pg_backend_pid(), $1)`,
    [JSON.stringify(receipt)],
  );
}

/** An ingester's query, its failures said as what to do: install or upgrade the schema, grant the role. */
export async function ingestQuery<R extends pg.QueryResultRow>(client: pg.Client, sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return await client.query<R>(sql, params);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === '42P01' || code === '3F000' || code === '42703') {
      throw new ServiceError(
        'the audit schema is not installed in this database, or is older than this ingester; run `pg-audit-shipper init` (it upgrades in place)',
      );
    }
    if (code === '42501') {
      throw new ServiceError(`the ingester's database role lacks a privilege (${describePgError(err)}); grant it audit_ingester`);
    }
    throw new ServiceError(`ingest query failed: ${describePgError(err)}`);
  }
}

/** Run ingest passes until the signal aborts, every `pollMs`; returns the totals (held and pending: the last pass's). */
export async function followPasses(
  runOnce: () => Promise<IngestStats>,
  log: Logger,
  signal: AbortSignal,
  pollMs: number,
  onPass?: (s: IngestStats) => void,
): Promise<IngestStats> {
  const total: IngestStats = { files: 0, lines: 0, events: 0, ignored: 0, malformed: 0, duplicates: 0, pendingBytes: 0, held: 0 };
  while (!signal.aborted) {
    const s = await runOnce();
    onPass?.(s);
    for (const k of Object.keys(total) as (keyof IngestStats)[]) total[k] = k === 'pendingBytes' || k === 'held' ? s[k] : total[k] + s[k];
    if (s.events > 0) log.info({ ...s }, 'ingested pgaudit events');
    await sleep(pollMs, undefined, { signal }).catch(() => undefined);
  }
  return total;
}

/** The protected tables and the relations whose reads are theirs (audit.watched_relations), now. */
export async function watchedTables(client: pg.Client): Promise<ReturnType<typeof protectedTables>> {
  const { rows } = await ingestQuery<{
    schema_name: string;
    table_name: string;
    protected_schema: string;
    protected_table: string;
    relation: string | null;
    read_context: boolean;
  }>(client, 'SELECT schema_name, table_name, protected_schema, protected_table, relation, read_context FROM audit.watched_relations');
  return protectedTables(rows);
}

/** A source's new position, in the transaction of the events it read (byte offset, or milliseconds for a time-ordered source). */
export async function savePosition(client: pg.Client, file: Pick<LogFile, 'key' | 'name'>, position: number, inserted: number): Promise<void> {
  await client.query(
    `INSERT INTO audit.ingest_files (file_key, file_name, byte_offset, events) VALUES ($1, $2, $3, $4)
     ON CONFLICT (file_key) DO UPDATE SET byte_offset = excluded.byte_offset,
       events = audit.ingest_files.events + excluded.events, updated_at = now()`,
    [file.key, file.name, position, inserted],
  );
}

/** Insert events; returns how many were new (a line already present is skipped, not duplicated). */
export async function insertEvents(client: pg.Client, events: LogAuditEvent[]): Promise<number> {
  const col = <K extends keyof LogAuditEvent>(k: K): LogAuditEvent[K][] => events.map((e) => e[k]);
  const res = await client.query(
    `INSERT INTO audit.audit_log (occurred_at, source, action, outcome, schema_name, table_name, session_user_name,
        app_user_id, app_customer_id, application_name, client_addr, client_port, backend_pid, txid, statement, error,
        log_session_id, log_line_num, relation_name, app_context)
     SELECT o, 'pgaudit', a, oc, s, t, u, au, ac, an, ca, cp, bp, tx, st, er, ls, ln, rn, ax
       FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                   $9::text[], $10::inet[], $11::int[], $12::int[], $13::bigint[], $14::text[], $15::text[], $16::text[],
                   $17::bigint[], $18::text[], $19::text[]) AS x(o, a, oc, s, t, u, au, ac, an, ca, cp, bp, tx, st, er, ls, ln, rn, ax)
     ON CONFLICT (log_session_id, log_line_num) WHERE log_session_id IS NOT NULL DO NOTHING`,
    [
      col('occurredAt'),
      col('action'),
      col('outcome'),
      col('schemaName'),
      col('tableName'),
      col('sessionUserName'),
      col('appUserId'),
      col('appCustomerId'),
      col('applicationName'),
      col('clientAddr'),
      col('clientPort'),
      col('backendPid'),
      col('txid'),
      col('statement'),
      col('error'),
      col('logSessionId'),
      col('logLineNum'),
      col('relationName'),
      col('appContext'),
    ],
  );
  return res.rowCount ?? 0;
}

/**
 * A file whose position was saved by the other source (the directory, or SQL: log-files.ts) goes on
 * under the key it was saved with, when the name and the first bytes are the same: switching
 * --log-source neither reads a file again nor skips any of it. Within one source keys stay as they
 * are (a copy under another name is another file: read, its lines refused as already present).
 */
export function adoptSavedKeys(files: LogFile[], saved: { file_key: string; file_name: string }[]): LogFile[] {
  const keys = new Set(saved.map((r) => r.file_key));
  const isSql = (key: string) => key.startsWith('sql:');
  const other = new Map<string, string>();
  for (const r of saved) other.set(`${isSql(r.file_key)}/${r.file_name}/${identityOf(r.file_key)}`, r.file_key);
  const claimed = new Set(files.map((f) => f.key));
  return files.map((f) => {
    if (keys.has(f.key)) return f;
    const key = other.get(`${!isSql(f.key)}/${f.name}/${identityOf(f.key)}`);
    if (!key || claimed.has(key)) return f;
    claimed.add(key);
    return { ...f, key };
  });
}
