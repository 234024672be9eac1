import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ConfigError, ServiceError } from '../../errors.js';
import { describePgError, inTransaction } from '../../db.js';
import type { Logger } from '../../log.js';
import type { LogLine } from './csvlog.js';
import { classify, truncate, type LogAuditEvent } from './pgaudit.js';
import { googleRest } from './google-rest.js';
import {
  aboutTheLog,
  followPasses,
  ingestQuery,
  insertEvents,
  insertReceipt,
  savePosition,
  UNREADABLE_ACTION,
  watchedTables,
  type IngestStats,
} from './ingester.js';
import { MISSING_LINES_ACTION } from './receipt.js';

/**
 * Cloud SQL and AlloyDB for PostgreSQL write pgaudit's lines nowhere a client can read them as a
 * file: they arrive in Cloud Logging as Data Access audit log entries, one `PgAuditEntry` per
 * pgaudit line (ingest --log-source cloud-logging). This reads them through Cloud Logging's
 * `entries.list` (REST), in time windows that follow each other without gap or overlap:
 *
 * - A window ends `lag` before now (default 2 minutes): Cloud Logging takes a moment to make an
 *   entry readable, and entries are listed by their own timestamp, so a window is read only once
 *   entries that late are in it. An entry that becomes readable more than `lag` after its timestamp
 *   falls in a window already read: it is lost, and nothing here can see that (README, trust model).
 * - Each window's events, its receipt (from and to in milliseconds since the epoch, the SHA-256 of
 *   the entries' identities) and the new position are stored in one transaction, as the file
 *   sources store a run of log lines: a crash repeats or skips no window.
 * - An event's key is the entry's timestamp and insertId, Cloud Logging's own identity of an
 *   entry, so an entry listed twice (the API may) is stored once.
 * - A statement pgaudit's line was too long for one entry comes in chunks (chunkIndex of
 *   chunkCount); they are joined. A chunk that never came is recorded as lost log lines, with the
 *   statement as far as it came.
 */

/** One entry as entries.list returns it (the fields read here). */
export interface CloudLogEntry {
  insertId: string;
  /** RFC 3339, nanoseconds at most */
  timestamp: string;
  protoPayload?: {
    request?: {
      '@type'?: string;
      auditClass?: string;
      auditType?: string;
      chunkCount?: string | number;
      chunkIndex?: string | number;
      command?: string;
      database?: string;
      databaseSessionId?: string | number;
      object?: string;
      objectType?: string;
      parameter?: string;
      statement?: string;
      statementId?: string | number;
      substatementId?: string | number;
      user?: string;
    };
  };
}

export interface CloudLoggingApi {
  /** One page of entries matching `filter`, oldest first. */
  list(filter: string, pageToken: string | undefined): Promise<{ entries: CloudLogEntry[]; nextPageToken?: string }>;
}

const PG_AUDIT_TYPES = ['type.googleapis.com/google.cloud.sql.audit.v1.PgAuditEntry', 'type.googleapis.com/google.cloud.alloydb.audit.v1.PgAuditEntry'];
const SCOPE = 'https://www.googleapis.com/auth/logging.read';
const PAGE_SIZE = 1000;
/**
 * entries.list is rate-limited per project (Cloud Logging's quotas: 60 read requests a minute), so
 * a following ingester asks at most every 5 s however short --poll-interval is, and a page holds
 * the most entries the API gives (1,000).
 */
const MIN_POLL_MS = 5000;
/** The longest window (one transaction, one receipt); an idle log is written up once this long. */
const MAX_WINDOW_MS = 10 * 60_000;
/** Entries of one window held at once (about 1-2 KB each): more, and the window is halved. */
const MAX_WINDOW_ENTRIES = 20_000;

/** Where the database runs: a Cloud SQL instance (`project:instance` in its logs) or an AlloyDB instance. */
export interface CloudInstance {
  project: string;
  instance: string;
}

/** An entry is a pgaudit entry of the instance (what windowFilter asks the API for, and a Pub/Sub sink's filter lets through). */
export function isInstancePgAudit(e: CloudLogEntry & { resource?: { labels?: Record<string, string> } }, where: CloudInstance): boolean {
  const labels = e.resource?.labels ?? {};
  const ours = labels.database_id === `${where.project}:${where.instance}` || labels.instance_id === where.instance;
  return ours && PG_AUDIT_TYPES.includes(e.protoPayload?.request?.['@type'] ?? '');
}

/** The Data Access entries pgaudit wrote for the instance, with timestamps in [fromMs, toMs). */
export function windowFilter(where: CloudInstance, fromMs: number, toMs: number): string {
  const q = (s: string) => JSON.stringify(s);
  return [
    `logName=${q(`projects/${where.project}/logs/cloudaudit.googleapis.com%2Fdata_access`)}`,
    `protoPayload.request."@type"=(${PG_AUDIT_TYPES.map(q).join(' OR ')})`,
    `(resource.labels.database_id=${q(`${where.project}:${where.instance}`)} OR resource.labels.instance_id=${q(where.instance)})`,
    `timestamp>=${q(new Date(fromMs).toISOString())}`,
    `timestamp<${q(new Date(toMs).toISOString())}`,
  ].join(' AND ');
}

/**
 * entries.list through REST (google-rest.ts: application default credentials, the logging.read
 * scope, throttling and unavailability retried); a refusal (403: Private Logs Viewer missing) is an
 * error to act on.
 */
export function cloudLoggingApi(where: CloudInstance, endpoint = 'https://logging.googleapis.com'): CloudLoggingApi {
  const post = googleRest(
    SCOPE,
    (message) =>
      `--log-source cloud-logging: no Google credentials (${message}); run with a service account that has roles/logging.privateLogViewer (GOOGLE_APPLICATION_CREDENTIALS, workload identity or the metadata server)`,
    (what, { status, said }) => {
      const hint =
        status === 403
          ? ': the credentials need roles/logging.privateLogViewer on the project (Data Access audit logs are private logs)'
          : status === 400
            ? ': the request was refused as invalid'
            : '';
      return `--log-source cloud-logging: ${what} failed${status ? ` (HTTP ${status})` : ''}: ${said}${hint}`;
    },
  );
  return {
    async list(filter, pageToken) {
      const data = (await post(
        `${endpoint.replace(/\/$/, '')}/v2/entries:list`,
        { resourceNames: [`projects/${where.project}`], filter, orderBy: 'timestamp asc', pageSize: PAGE_SIZE, pageToken },
        `listing entries of project ${where.project}`,
      )) as { entries?: CloudLogEntry[]; nextPageToken?: string };
      return { entries: data.entries ?? [], nextPageToken: data.nextPageToken || undefined };
    },
  };
}

export interface CloudLoggingOptions {
  where: CloudInstance;
  statementMaxLength: number;
  log: Logger;
  /** how long after its timestamp an entry is taken to be readable (the window ends this far back) */
  lagMs: number;
  /** a window reads at most this much time, so one transaction stays bounded (default MAX_WINDOW_MS, 10 minutes) */
  maxWindowMs?: number;
  /** entries of one window held at once before it is halved (default MAX_WINDOW_ENTRIES) */
  maxWindowEntries?: number;
  /** where the first run starts when nothing is saved (default: now minus lag: the log from now on) */
  startMs?: number;
  now?: () => number;
}

/** A number the API may send as a JSON number or as a string (int64 fields are strings in JSON). */
const NUMERIC = (v: string | number | undefined): number | null => {
  const n = typeof v === 'number' ? v : v === undefined || v === '' ? NaN : Number(v);
  return Number.isSafeInteger(n) ? n : null;
};

/** pgaudit's CSV quoting: a field in double quotes, quotes doubled. */
const csvField = (s: string) => `"${s.replace(/"/g, '""')}"`;

/** One pgaudit line, joined from its chunks. */
export interface Joined {
  first: CloudLogEntry;
  statement: string;
  parameter: string;
  /** chunk numbers that never came */
  missing: number[];
  count: number;
  /** the entries joined (every chunk that came) */
  entries: CloudLogEntry[];
}

/** An entry's identity in Cloud Logging (its timestamp and insertId). */
export const entryId = (e: CloudLogEntry): string => `${e.timestamp}/${e.insertId}`;

/**
 * The key of the event a pgaudit line becomes, whichever way its entries are read (entries.list,
 * Pub/Sub) and whichever of its chunks came: an entry's own identity when it is whole; for a line
 * in chunks, the line's timestamp and a hash of what names the line (session, statement and
 * substatement ids, object, class, chunk count), the same for every chunk. So a chunk Pub/Sub
 * delivers again after its line was stored is known as that line's. (It takes the chunks of one
 * line to carry the line's timestamp, as they do in the fake; were they not to, a repeated chunk
 * would be stored as a fragment with its missing chunks noted: noise, nothing lost.)
 */
export function lineKey(j: Pick<Joined, 'first' | 'count'>): string {
  if (j.count <= 1) return `gcl:${entryId(j.first)}`;
  const names = createHash('sha256').update(lineNames(j.first, j.count)).digest('hex').slice(0, 24);
  return `gcl:${j.first.timestamp}/chunks-${names}`;
}

/** What names the pgaudit line a chunk belongs to: every chunk of one line says the same. */
function lineNames(e: CloudLogEntry, count: number): string {
  const r = e.protoPayload?.request ?? {};
  return [r.databaseSessionId, r.statementId, r.substatementId, r.object, r.auditClass, count].join('\u0000');
}

/** Entries of one window, chunks of a statement joined (in the order the first chunk came). */
export function joinChunks(entries: CloudLogEntry[]): Joined[] {
  const out: Joined[] = [];
  const open = new Map<string, { j: Joined; parts: Map<number, CloudLogEntry> }>();
  for (const e of entries) {
    const r = e.protoPayload?.request ?? {};
    const count = NUMERIC(r.chunkCount) ?? 1;
    const index = NUMERIC(r.chunkIndex) ?? 1;
    if (count <= 1) {
      out.push({ first: e, statement: r.statement ?? '', parameter: r.parameter ?? '', missing: [], count: 1, entries: [e] });
      continue;
    }
    const key = lineNames(e, count);
    let o = open.get(key);
    if (!o || o.parts.has(index)) {
      o = { j: { first: e, statement: '', parameter: '', missing: [], count, entries: [] }, parts: new Map() };
      open.set(key, o);
      out.push(o.j);
    }
    o.parts.set(index, e);
    o.j.entries.push(e);
    if (index < NUMERIC(o.j.first.protoPayload?.request?.chunkIndex)!) o.j.first = e;
  }
  for (const { j, parts } of open.values()) {
    for (let i = 1; i <= j.count; i++) {
      const p = parts.get(i)?.protoPayload?.request;
      if (!p) j.missing.push(i);
      else {
        j.statement += p.statement ?? '';
        j.parameter += p.parameter ?? '';
      }
    }
  }
  return out;
}

/** What joined entries say, as events: one classifier for every way Cloud Logging's entries are read. */
export interface EntryEvents {
  events: LogAuditEvent[];
  ignored: number;
  malformed: number;
  /** chunks that never came (each set is also an event) */
  lost: number;
}

/**
 * The events of joined pgaudit entries of `database`. Every event is keyed by its line (lineKey: the
 * line's event line 0, the note of its lost chunks line 1, an entry that is no pgaudit line line 0),
 * so reading an entry again, through either API, adds nothing.
 */
export function entryEvents(
  joined: Joined[],
  ctx: { database: string; tables: Awaited<ReturnType<typeof watchedTables>>; statementMaxLength: number; where: string },
): EntryEvents {
  const out: EntryEvents = { events: [], ignored: 0, malformed: 0, lost: 0 };
  for (const j of joined) {
    const line = entryLine(j);
    const c = classify(line, { database: ctx.database, tables: ctx.tables, statementMaxLength: ctx.statementMaxLength, contextOf: () => undefined });
    // No line with the read's context comes through this source (the server writes it to its own
    // log, not to the Data Access log): a read is written at once, its context unknown.
    if (c.kind === 'event') out.events.push(c.event);
    else if (c.kind === 'read') out.events.push(c.read.event);
    else if (c.kind === 'malformed') {
      // Never a silent drop: an entry of this database that is no pgaudit line is an event of its own.
      out.malformed++;
      out.events.push(
        aboutTheLog(
          UNREADABLE_ACTION,
          truncate(`${ctx.where} entry ${j.first.insertId} at ${j.first.timestamp}: ${line.message}`, ctx.statementMaxLength),
          `${c.reason}; its text is not trusted`,
          { occurredAt: j.first.timestamp, sessionUserName: line.userName || '(unknown)', logSessionId: line.sessionId, logLineNum: 0 },
        ),
      );
    } else out.ignored++;
    if (j.missing.length > 0 && line.databaseName === ctx.database) {
      out.lost += j.missing.length;
      out.events.push(
        aboutTheLog(
          MISSING_LINES_ACTION,
          `${ctx.where} entry ${j.first.insertId} at ${j.first.timestamp}: chunks ${j.missing.join(', ')} of ${j.count} of a pgaudit line (session ${j.first.protoPayload?.request?.databaseSessionId ?? '?'}, statement ${j.first.protoPayload?.request?.statementId ?? '?'})`,
          'parts of a pgaudit line never arrived: the statement is kept as far as it came',
          { sessionUserName: line.userName || '(unknown)', logSessionId: line.sessionId, logLineNum: 1 },
        ),
      );
    }
  }
  return out;
}

/**
 * The entry as the csvlog line pgaudit would have written, so one classifier (pgaudit.ts) decides
 * what every source's lines mean. What the entry does not carry stays empty: the client's address,
 * the process id, the transaction, the application name.
 */
export function entryLine(j: Joined): LogLine {
  const r = j.first.protoPayload?.request ?? {};
  const message =
    `AUDIT: ${r.auditType ?? ''},${r.statementId ?? ''},${r.substatementId ?? ''},${r.auditClass ?? ''},${r.command ?? ''},` +
    `${r.objectType ?? ''},${r.object ?? ''},${csvField(j.statement)},${csvField(j.parameter)}`;
  return {
    logTime: j.first.timestamp,
    userName: r.user ?? '',
    databaseName: r.database ?? '',
    processId: null,
    connectionFrom: '',
    sessionId: lineKey(j),
    sessionLineNum: 0,
    commandTag: r.command ?? '',
    virtualTransactionId: '',
    transactionId: '',
    errorSeverity: 'LOG',
    sqlStateCode: '00000',
    message,
    detail: '',
    hint: '',
    internalQuery: '',
    context: '',
    query: '',
    applicationName: '',
    backendType: 'client backend',
  };
}

/**
 * Reads pgaudit's entries for one instance from Cloud Logging into audit_log, a window at a time,
 * exactly once (see the top of this file). Same results and statistics as the file sources.
 */
export class CloudLoggingIngester {
  /** the position's row in audit.ingest_files, and the receipts' file_key: byte_offset holds milliseconds since the epoch */
  private readonly key: string;
  private readonly name: string;
  private database = '';
  private readonly now: () => number;

  constructor(
    private readonly client: pg.Client,
    private readonly api: CloudLoggingApi,
    private readonly opts: CloudLoggingOptions,
  ) {
    this.key = `gcl:${opts.where.project}:${opts.where.instance}`;
    this.name = `cloud-logging ${opts.where.project}:${opts.where.instance}`;
    this.now = opts.now ?? Date.now;
  }

  async runOnce(): Promise<IngestStats> {
    const stats: IngestStats = { files: 0, lines: 0, events: 0, ignored: 0, malformed: 0, duplicates: 0, pendingBytes: 0, held: 0 };
    if (!this.database) this.database = (await ingestQuery<{ db: string }>(this.client, 'SELECT current_database() AS db')).rows[0]!.db;
    const settled = this.now() - this.opts.lagMs;
    const { rows } = await ingestQuery<{ byte_offset: string }>(this.client, 'SELECT byte_offset FROM audit.ingest_files WHERE file_key = $1', [this.key]);
    let from = rows[0] ? Number(rows[0].byte_offset) : (this.opts.startMs ?? settled);
    if (!rows[0]) {
      // The first run: where the log starts for this ingester, saved so the next run goes on from it.
      await ingestQuery(
        this.client,
        `INSERT INTO audit.ingest_files (file_key, file_name, byte_offset) VALUES ($1, $2, $3) ON CONFLICT (file_key) DO NOTHING`,
        [this.key, this.name, from],
      );
      this.opts.log.info({ from: new Date(from).toISOString() }, 'Cloud Logging is read from here on (--cloud-logging-from: an earlier start)');
    }
    const step = this.opts.maxWindowMs ?? MAX_WINDOW_MS;
    while (from < settled) {
      const to = await this.window(from, Math.min(settled, from + step), stats);
      if (to === from) break; // nothing yet in a window shorter than a full one: asked again, longer, next pass
      from = to;
    }
    return stats;
  }

  follow(signal: AbortSignal, pollMs = MIN_POLL_MS, onPass?: (s: IngestStats) => void): Promise<IngestStats> {
    return followPasses(() => this.runOnce(), this.opts.log, signal, Math.max(pollMs, MIN_POLL_MS), onPass);
  }

  /**
   * One window [from, to), or its first part when it holds more than MAX_WINDOW_ENTRIES: its
   * entries, events, receipt and new position in one transaction. Returns where it ended (`from`:
   * nothing stored, the window empty and not yet full).
   */
  private async window(from: number, to: number, stats: IngestStats): Promise<number> {
    let entries: CloudLogEntry[] = [];
    for (;;) {
      const filter = windowFilter(this.opts.where, from, to);
      entries = [];
      let token: string | undefined;
      do {
        const page = await this.api.list(filter, token);
        entries.push(...page.entries);
        token = page.nextPageToken;
      } while (token && (entries.length <= (this.opts.maxWindowEntries ?? MAX_WINDOW_ENTRIES) || to - from <= 1000));
      if (!token) break;
      // Too many for one transaction and bounded memory: the first half of the window, listed again.
      to = from + Math.floor((to - from) / 2);
    }
    // A quiet log: a window with nothing in it is kept open (and read again, longer, next pass)
    // until it is a full one, so an idle instance writes one receipt a MAX_WINDOW_MS, not one a poll.
    if (entries.length === 0 && to - from < (this.opts.maxWindowMs ?? MAX_WINDOW_MS)) return from;
    // Listed in timestamp order, but the order within one timestamp, and an entry listed twice, are
    // the API's: the receipt hashes the sorted identities, and the key drops a repeat.
    const unique = [...new Map(entries.map((e) => [entryId(e), e])).values()];
    const ids = unique.map(entryId).sort();
    const tables = await watchedTables(this.client);
    const { events, ignored, malformed, lost } = entryEvents(joinChunks(unique), {
      database: this.database,
      tables,
      statementMaxLength: this.opts.statementMaxLength,
      where: 'Cloud Logging',
    });
    let inserted = 0;
    const file = { key: this.key, name: this.name };
    try {
      await inTransaction(this.client, async () => {
        if (events.length > 0) inserted = await insertEvents(this.client, events);
        await insertReceipt(this.client, file, { from, to, sha256: createHash('sha256').update(ids.join('\n')).digest('hex') }, ids.length, inserted);
        await savePosition(this.client, file, to, inserted);
      });
    } catch (err) {
      throw new ServiceError(
        `cannot store pgaudit events from Cloud Logging (${new Date(from).toISOString()} to ${new Date(to).toISOString()}): ${describePgError(err)}`,
      );
    }
    stats.files++;
    stats.lines += ids.length;
    stats.events += inserted;
    stats.duplicates += events.length - inserted;
    stats.ignored += ignored;
    stats.malformed += malformed;
    if (lost > 0)
      this.opts.log.error(
        { from: new Date(from).toISOString(), to: new Date(to).toISOString(), missing_chunks: lost },
        `chunks of pgaudit lines never arrived; recorded as ${MISSING_LINES_ACTION} events`,
      );
    return to;
  }
}

/** --gcp-project and --gcp-instance, checked. */
export function cloudInstance(project: string | undefined, instance: string | undefined, source = 'cloud-logging'): CloudInstance {
  if (!project)
    throw new ConfigError(
      `--log-source ${source} needs --gcp-project (GOOGLE_CLOUD_PROJECT): the project whose Data Access audit logs hold the instance's pgaudit entries`,
    );
  if (!instance) throw new ConfigError(`--log-source ${source} needs --gcp-instance (AUDIT_GCP_INSTANCE): the Cloud SQL or AlloyDB instance id`);
  if (!/^[a-z][-a-z0-9.:]*[a-z0-9]$/.test(project))
    throw new ConfigError(`--gcp-project ${project} is not a project id (lower-case letters, digits and hyphens; a domain-scoped one has a colon)`);
  if (!/^[a-z][-a-z0-9]*$/.test(instance))
    throw new ConfigError(`--gcp-instance ${instance} is not an instance id (lower-case letters, digits and hyphens; without the project)`);
  return { project, instance };
}
