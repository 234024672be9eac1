import { createHash } from 'node:crypto';
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { ConfigError, ServiceError } from '../../errors.js';
import { describePgError, inTransaction } from '../../db.js';
import type { Logger } from '../../log.js';
import { splitCsvRecords } from './csv.js';
import { toLogLine } from './csvlog.js';
import { classify, protectedTables, type LogAuditEvent, type SessionContext } from './pgaudit.js';

export interface IngestOptions {
  logDir: string;
  statementMaxLength: number;
  log: Logger;
  /** bytes read per transaction; a record longer than this grows the read */
  chunkBytes?: number;
}

export interface IngestStats {
  files: number;
  lines: number;
  events: number;
  ignored: number;
  malformed: number;
  duplicates: number;
}

/** Files are known by device, inode and first bytes: a rotated name reused for a new file is a new file. */
const IDENTITY_BYTES = 64;
/** A session not seen in the log for this long has ended; its SET context is dropped. */
const SESSION_TTL_DAYS = 30;

interface LogFile { name: string; key: string; size: number; mtimeMs: number }

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

  constructor(private readonly client: pg.Client, private readonly opts: IngestOptions) {
    this.chunkBytes = opts.chunkBytes ?? 1 << 20;
  }

  /** Ingest everything complete in the log directory now, then return. */
  async runOnce(): Promise<IngestStats> {
    await this.load();
    const stats: IngestStats = { files: 0, lines: 0, events: 0, ignored: 0, malformed: 0, duplicates: 0 };
    const { rows } = await this.query<{ file_key: string; byte_offset: string }>('SELECT file_key, byte_offset FROM audit.ingest_files');
    const offsets = new Map(rows.map((r) => [r.file_key, Number(r.byte_offset)]));
    for (const file of await this.listFiles()) {
      const saved = offsets.get(file.key) ?? 0;
      if (saved > file.size) {
        this.opts.log.warn({ file: file.name, saved, size: file.size }, 'log file is shorter than the saved position; it was truncated in place, reading it again from the start');
      }
      const from = saved > file.size ? 0 : saved;
      if (from === file.size) continue;
      stats.files++;
      await this.ingestFile(file, from, stats);
    }
    if (stats.malformed > 0) this.opts.log.warn({ malformed: stats.malformed }, 'log lines that could not be parsed were skipped (content not logged)');
    return stats;
  }

  /** Keep ingesting until the signal aborts; returns the totals. */
  async follow(signal: AbortSignal, pollMs = 500): Promise<IngestStats> {
    const total: IngestStats = { files: 0, lines: 0, events: 0, ignored: 0, malformed: 0, duplicates: 0 };
    while (!signal.aborted) {
      const s = await this.runOnce();
      for (const k of Object.keys(total) as (keyof IngestStats)[]) total[k] += s[k];
      if (s.events > 0) this.opts.log.info({ ...s }, 'ingested pgaudit events');
      await sleep(pollMs, undefined, { signal }).catch(() => undefined);
    }
    return total;
  }

  private async load(): Promise<void> {
    if (this.loaded) return;
    const { rows: [db] } = await this.query<{ db: string }>('SELECT current_database() AS db');
    this.database = db!.db;
    const { rows } = await this.query<{ log_session_id: string; context: SessionContext; last_seen: Date }>(
      'SELECT log_session_id, context, last_seen FROM audit.ingest_sessions');
    for (const r of rows) this.sessions.set(r.log_session_id, { context: r.context, lastSeen: r.last_seen.toISOString() });
    this.loaded = true;
  }

  private async listFiles(): Promise<LogFile[]> {
    let names: string[];
    try {
      names = (await readdir(this.opts.logDir)).filter((n) => n.endsWith('.csv'));
    } catch (err) {
      throw new ConfigError(`--log-dir (PGAUDIT_LOG_DIR) ${this.opts.logDir} cannot be read: ${(err as NodeJS.ErrnoException).code}; ` +
        "point it at the server's log_directory with log_destination including 'csvlog'");
    }
    const files: LogFile[] = [];
    for (const name of names) {
      const full = path.join(this.opts.logDir, name);
      const st = await stat(full).catch(() => null);
      if (!st?.isFile() || st.size < IDENTITY_BYTES) continue; // not yet identifiable: no complete line either
      const fh = await open(full, 'r');
      try {
        const head = Buffer.alloc(IDENTITY_BYTES);
        await fh.read(head, 0, IDENTITY_BYTES, 0);
        const key = `${st.dev}:${st.ino}:${createHash('sha256').update(head).digest('hex').slice(0, 32)}`;
        files.push({ name, key, size: st.size, mtimeMs: st.mtimeMs });
      } finally {
        await fh.close();
      }
    }
    return files.sort((a, b) => a.mtimeMs - b.mtimeMs || a.name.localeCompare(b.name));
  }

  private async ingestFile(file: LogFile, from: number, stats: IngestStats): Promise<void> {
    const fh = await open(path.join(this.opts.logDir, file.name), 'r');
    try {
      let offset = from;
      let want = this.chunkBytes;
      for (;;) {
        const buf = Buffer.alloc(want);
        const { bytesRead } = await fh.read(buf, 0, want, offset);
        if (bytesRead === 0) return;
        const { records, consumed } = splitCsvRecords(buf.subarray(0, bytesRead));
        if (records.length === 0) {
          if (bytesRead < want) return; // the rest of a line is still being written
          want *= 2; // one record larger than the chunk
          continue;
        }
        want = this.chunkBytes;
        await this.commitChunk(file, offset + consumed, records.map((r) => r.fields), stats);
        offset += consumed;
      }
    } finally {
      await fh.close();
    }
  }

  private async commitChunk(file: LogFile, newOffset: number, records: string[][], stats: IngestStats): Promise<void> {
    // Read the protected list after the lines: a read is object-logged only once `protect` committed.
    const { rows } = await this.query<{ schema_name: string; table_name: string }>('SELECT schema_name, table_name FROM audit.protected_tables');
    const tables = protectedTables(rows);
    const events: LogAuditEvent[] = [];
    const touched = new Set<string>();
    let malformed = 0;
    let ignored = 0;
    for (const fields of records) {
      const line = toLogLine(fields);
      if (!line) { malformed++; continue; }
      const c = classify(line, {
        database: this.database, tables, statementMaxLength: this.opts.statementMaxLength,
        contextOf: (id) => this.sessions.get(id)?.context,
      });
      if (c.kind === 'event') {
        events.push(c.event);
        if (c.context) {
          this.sessions.set(c.sessionId!, { context: c.context, lastSeen: line.logTime });
          touched.add(c.sessionId!);
        }
      } else if (c.kind === 'context') {
        this.sessions.set(c.sessionId, { context: c.context, lastSeen: line.logTime });
        touched.add(c.sessionId);
      } else if (c.kind === 'malformed') malformed++;
      else ignored++;
    }
    let inserted = 0;
    try {
      await inTransaction(this.client, async () => {
        if (events.length > 0) inserted = await insertEvents(this.client, events);
        if (touched.size > 0) await this.saveSessions(touched);
        await this.client.query(
          `INSERT INTO audit.ingest_files (file_key, file_name, byte_offset, events) VALUES ($1, $2, $3, $4)
           ON CONFLICT (file_key) DO UPDATE SET byte_offset = excluded.byte_offset,
             events = audit.ingest_files.events + excluded.events, updated_at = now()`,
          [file.key, file.name, newOffset, inserted]);
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
  }

  private async saveSessions(ids: Set<string>): Promise<void> {
    const list = [...ids].map((id) => ({ id, ...this.sessions.get(id)! }));
    await this.client.query(
      `INSERT INTO audit.ingest_sessions (log_session_id, context, last_seen)
       SELECT * FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[])
       ON CONFLICT (log_session_id) DO UPDATE SET context = excluded.context, last_seen = excluded.last_seen`,
      [list.map((s) => s.id), list.map((s) => JSON.stringify(s.context)), list.map((s) => s.lastSeen)]);
    await this.client.query(`DELETE FROM audit.ingest_sessions WHERE last_seen < $1::timestamptz - interval '${SESSION_TTL_DAYS} days'`,
      [list[list.length - 1]!.lastSeen]);
  }

  private async query<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.client.query<R>(sql, params);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '42P01' || code === '3F000') {
        throw new ServiceError('the audit schema is not installed in this database; run `pg-audit-shipper init` first');
      }
      if (code === '42501') {
        throw new ServiceError(`the ingester's database role lacks a privilege (${describePgError(err)}); grant it audit_ingester`);
      }
      throw new ServiceError(`ingest query failed: ${describePgError(err)}`);
    }
  }
}

/** Insert events; returns how many were new (a line already present is skipped, not duplicated). */
async function insertEvents(client: pg.Client, events: LogAuditEvent[]): Promise<number> {
  const col = <K extends keyof LogAuditEvent>(k: K): LogAuditEvent[K][] => events.map((e) => e[k]);
  const res = await client.query(
    `INSERT INTO audit.audit_log (occurred_at, source, action, outcome, schema_name, table_name, session_user_name,
        app_user_id, app_customer_id, application_name, client_addr, client_port, backend_pid, txid, statement, error,
        log_session_id, log_line_num)
     SELECT o, 'pgaudit', a, oc, s, t, u, au, ac, an, ca, cp, bp, tx, st, er, ls, ln
       FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                   $9::text[], $10::inet[], $11::int[], $12::int[], $13::bigint[], $14::text[], $15::text[], $16::text[],
                   $17::bigint[]) AS x(o, a, oc, s, t, u, au, ac, an, ca, cp, bp, tx, st, er, ls, ln)
     ON CONFLICT (log_session_id, log_line_num) WHERE log_session_id IS NOT NULL DO NOTHING`,
    [col('occurredAt'), col('action'), col('outcome'), col('schemaName'), col('tableName'), col('sessionUserName'),
      col('appUserId'), col('appCustomerId'), col('applicationName'), col('clientAddr'), col('clientPort'),
      col('backendPid'), col('txid'), col('statement'), col('error'), col('logSessionId'), col('logLineNum')]);
  return res.rowCount ?? 0;
}
