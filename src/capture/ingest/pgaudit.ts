import { hash } from 'node:crypto';
import { parseCsvLine } from './csv.js';
import { splitConnectionFrom, type LogLine } from './csvlog.js';

/** A row for audit_log built from the server log. */
export interface LogAuditEvent {
  occurredAt: string;
  action: string;
  outcome: 'success' | 'failure';
  schemaName: string | null;
  tableName: string | null;
  /** the partition, parent or other relation the statement named, when it is not the protected table itself (quoted as PostgreSQL quotes) */
  relationName: string | null;
  sessionUserName: string;
  appUserId: string | null;
  appCustomerId: string | null;
  /** 'unknown': the server recorded no app.user_id / app.customer_id for it (null: the values are what it recorded) */
  appContext: 'unknown' | null;
  applicationName: string | null;
  clientAddr: string | null;
  clientPort: number | null;
  backendPid: number | null;
  txid: number | null;
  statement: string | null;
  error: string | null;
  /** the log line's key (exactly-once); null for an unreadable record, which has none */
  logSessionId: string | null;
  logLineNum: number | null;
}

/** What the ingester keeps of a session between log lines (saved with its position). */
export interface SessionContext {
  /** the session's last object-audited statement: an ERROR line of the same statement marks it failed */
  last?: AuditedStatement;
  /** reads of tables with audit_read_context, waiting for the line in which the server says their context */
  pending?: PendingRead[];
  /** the session's last csvlog line number ingested (lines of this database only): a jump is lost lines */
  line?: number;
}

interface AuditedStatement {
  vxid: string;
  /** SHA-256 of the statement text (pgaudit's, and the ERROR line's query column: the same text) */
  sql: string;
  action: string;
  schema: string;
  table: string;
  /** absent in contexts saved before relations were recorded */
  relation?: string | null;
}

/** A pgaudit event held until the server's read-context line of the same read (attribution.ts). */
export interface PendingRead {
  event: LogAuditEvent;
  vxid: string;
  /** pgaudit's statement ID (one per statement the backend ran) and substatement ID (one per query run inside it) */
  statementId: string;
  substatementId: string;
  /** the statement as pgaudit wrote it, cut at the kept length */
  statement: string;
  /** when the ingester started holding it (ms since the epoch, its own clock) */
  heldAt: number;
}

/** A relation pgaudit names, and the protected table its events are recorded under. */
export interface Watched {
  schema: string;
  table: string;
  /** null when the relation is the protected table itself */
  relation: string | null;
  /** the relation has the policy audit_read_context: a read that returns a row is followed by the server's line with its context */
  readContext: boolean;
}

export interface ProtectedTables {
  /** tableKey(schema, table) of every watched relation (names as the catalog holds them) -> where its events go */
  qualified: Map<string, Watched>;
  /** bare relation name -> where events of each relation of that name go (error messages name only the relation) */
  byName: Map<string, Watched[]>;
}

/**
 * The relations whose pgaudit lines count (audit.watched_relations): protected tables, their
 * partitions and, for a protected partition, its parents, each with the protected table it belongs
 * to; the trail itself; the planner-statistics views.
 */
export function protectedTables(
  rows: {
    schema_name: string;
    table_name: string;
    protected_schema?: string;
    protected_table?: string;
    relation?: string | null;
    read_context?: boolean;
  }[],
): ProtectedTables {
  const qualified = new Map<string, Watched>();
  const byName = new Map<string, Watched[]>();
  const add = (s: string, t: string, ps = s, pt = t, relation: string | null = null, readContext = false): void => {
    const w: Watched = { schema: ps, table: pt, relation, readContext };
    // A parent of several protected partitions: recorded under the parent itself, which is what was read.
    const key = tableKey(s, t);
    qualified.set(key, qualified.has(key) ? { schema: s, table: t, relation: null, readContext: false } : w);
    byName.set(t, [...(byName.get(t) ?? []), w]);
  };
  for (const r of rows) add(r.schema_name, r.table_name, r.protected_schema, r.protected_table, r.relation ?? null, r.read_context === true);
  // Attempts on the trail itself are always recorded.
  if (!qualified.has(tableKey('audit', 'audit_log'))) add('audit', 'audit_log');
  return { qualified, byName };
}

/** A key for (schema, table) that no pair of names can share (names may hold dots and quotes). */
export function tableKey(schema: string, table: string): string {
  return `${schema}\u0000${table}`;
}

/**
 * pgaudit names an object as PostgreSQL quotes a qualified name: each part bare when it needs no
 * quoting, else in double quotes with "" for a quote (`clinic."PatientNotes"`, `clinic."user"`,
 * `"My Schema"."a.b"`). Returns the parts as the catalog holds them, or null when it is not two parts.
 */
export function parseQualifiedName(name: string): { schema: string; table: string } | null {
  const parts: string[] = [];
  let i = 0;
  while (i <= name.length) {
    let part = '';
    if (name[i] === '"') {
      i++;
      for (;;) {
        if (i >= name.length) return null;
        if (name[i] === '"') {
          if (name[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += name[i++];
      }
    } else {
      while (i < name.length && name[i] !== '.') part += name[i++];
      if (part === '') return null;
    }
    parts.push(part);
    if (i === name.length) break;
    if (name[i] !== '.') return null;
    i++;
  }
  return parts.length === 2 ? { schema: parts[0]!, table: parts[1]! } : null;
}

/**
 * Only pgaudit's own lines are evidence. pgaudit writes its LOG line with the statement and the
 * context hidden (errhidestmt, errhidecontext) and nothing else but the message. Any role can write
 * a LOG line whose message starts with "AUDIT: " (`DO $$ BEGIN RAISE LOG 'AUDIT: ...'; END $$`), but
 * every way open to a non-superuser runs inside a function, whose error context the server always
 * writes ("PL/pgSQL function inline_code_block line 1 at RAISE"), also under log_error_verbosity =
 * terse and with the statement hidden (checked on PostgreSQL 15). So an "AUDIT: " line with any
 * context, statement, detail, hint or internal query is a forgery.
 */
export function writtenByPgaudit(line: LogLine): boolean {
  return line.context === '' && line.query === '' && line.detail === '' && line.hint === '' && line.internalQuery === '' && line.sqlStateCode === '00000';
}

/** The action of an event recording a line that claims to be pgaudit's and is not. */
export const FORGED_ACTION = 'FORGED AUDIT LINE';

export type Classified =
  | { kind: 'event'; event: LogAuditEvent; sessionId?: string; context?: SessionContext }
  /** a read of a table with audit_read_context: held until its context line (attribution.ts) */
  | { kind: 'read'; read: Omit<PendingRead, 'heldAt'>; sessionId: string; context: SessionContext }
  | { kind: 'read-context'; sessionId: string; line: ReadContextLine }
  | { kind: 'ignored' }
  | { kind: 'malformed'; reason: string };

/** The line audit.read_context() wrote: the values, and which statement's scan it was written in. */
export interface ReadContextLine {
  vxid: string;
  user: string | null;
  customer: string | null;
  /** the statement run through SPI (a function's query) in which the scan ran, from the line's context; null at top level */
  nested: string | null;
  /** the statement the client sent (the line's query column) */
  query: string;
}

export interface ClassifyOptions {
  database: string;
  tables: ProtectedTables;
  statementMaxLength: number;
  /** current context of the line's session (mutated copies are returned, never this object) */
  contextOf: (sessionId: string) => SessionContext | undefined;
  /** logins that bypass row-level security (superusers, BYPASSRLS): their reads never get a context line */
  bypassesRowSecurity?: ReadonlySet<string>;
}

const AUDIT_PREFIX = 'AUDIT: ';
/** The message audit.read_context() writes (sql/migrations/007_read_context.sql), then a JSON object. */
export const READ_CONTEXT_PREFIX = 'audit read context ';
/**
 * The first line of its context. The function runs with search_path = pg_catalog, so the server
 * names it with its schema whatever the session's path; a function of any other schema that writes
 * the same message is named otherwise (quoted, if its name holds the dot), and only audit_owner and
 * superusers may create functions in audit.
 */
const READ_CONTEXT_FRAME = /^PL\/pgSQL function audit\.read_context\(\) line \d+ at RAISE$/;
const NESTED_FRAME = '\nSQL statement "';
// 42501 messages name the relation without its schema: "permission denied for table customers",
// 'new row violates row-level security policy for table "customers"'.
const DENIED_TABLE_RE = /\bfor table "?([^"\s]+)"?/;
// The owner's commands (ALTER, DROP, ...) refused to another role: "must be owner of table customers".
const NOT_OWNER_RE = /^must be owner of (?:table|relation|view|materialized view|sequence) "?([^"]+?)"?$/;
const DENIED_SCHEMA_RE = /^permission denied for schema "?([^"]+?)"?$/;
const DENIED_PARAMETER_RE = /^permission denied to set parameter "([^"]+)"$/;
/** Settings whose change would weaken or redirect the capture: an attempt to set them is recorded. */
const AUDIT_SETTINGS =
  /^(pgaudit\..+|session_replication_role|shared_preload_libraries|log_destination|logging_collector|log_directory|log_filename|log_min_messages|log_error_verbosity|log_min_error_statement|wal_level)$/;

export function classify(line: LogLine, opts: ClassifyOptions): Classified {
  if (line.databaseName !== opts.database) return { kind: 'ignored' };
  if (line.message.startsWith(AUDIT_PREFIX) && (line.errorSeverity !== 'LOG' || !writtenByPgaudit(line))) return forgery(line, opts);
  if (line.errorSeverity === 'LOG' && line.message.startsWith(AUDIT_PREFIX)) return classifyAudit(line, opts);
  if (line.message.startsWith(READ_CONTEXT_PREFIX)) return classifyReadContext(line, opts);
  if (line.errorSeverity === 'ERROR') return classifyError(line, opts);
  return { kind: 'ignored' };
}

/** A line audit.read_context() wrote, or one that only looks like it (a forgery event). */
function classifyReadContext(line: LogLine, opts: ClassifyOptions): Classified {
  const newline = line.context.indexOf('\n');
  const frame = newline < 0 ? line.context : line.context.slice(0, newline);
  if (line.errorSeverity !== 'LOG' || line.sqlStateCode !== '00000' || !READ_CONTEXT_FRAME.test(frame)) return forgery(line, opts);
  let values: { user?: unknown; customer?: unknown };
  try {
    values = JSON.parse(line.message.slice(READ_CONTEXT_PREFIX.length)) as typeof values;
  } catch {
    return { kind: 'malformed', reason: 'a read-context line whose values are not JSON' };
  }
  const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);
  const rest = newline < 0 ? '' : line.context.slice(newline);
  return {
    kind: 'read-context',
    sessionId: line.sessionId,
    line: {
      vxid: line.virtualTransactionId,
      user: text(values.user),
      customer: text(values.customer),
      nested: rest.startsWith(NESTED_FRAME) ? rest.slice(NESTED_FRAME.length) : null,
      query: line.query,
    },
  };
}

/** Never a read and never silence: the attempt itself is the event, with what it tried to say. */
function forgery(line: LogLine, opts: ClassifyOptions): Classified {
  return {
    kind: 'event',
    event: baseEvent(line, opts, {
      action: FORGED_ACTION,
      outcome: 'failure',
      schemaName: null,
      tableName: null,
      relationName: null,
      statement: truncate(line.message, opts.statementMaxLength),
      error: truncate(
        `a ${line.errorSeverity} line that claims to be ${line.message.startsWith(AUDIT_PREFIX) ? "pgaudit's" : "audit.read_context()'s"}, ` +
          `written from: ${line.context || line.query || 'unknown'}`,
        opts.statementMaxLength,
      ),
    }),
  };
}

function classifyAudit(line: LogLine, opts: ClassifyOptions): Classified {
  const payload = line.message.slice(AUDIT_PREFIX.length);
  // A message cut while parsing (a statement longer than the ingester keeps) ends inside the quoted
  // statement: close it (a cut just after the first quote of a doubled one reads as closed already).
  // The object name and command come before it and are whole.
  const f = parseCsvLine(payload) ?? parseCsvLine(`${payload}"`);
  if (!f || f.length < 8) return { kind: 'malformed', reason: 'AUDIT payload is not pgaudit CSV' };
  // SET lines are not followed: what a SET did depends on how its transaction ended, and
  // set_config(), SET clauses of functions, startup options and role defaults write none. The
  // server itself says the context of each read (classifyReadContext).
  const [auditType, statementId, substatementId, auditClass, command, , objectName, statement] = f as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  // Object audit lines, reads and writes. A WRITE line is a statement-level event: the row triggers
  // record which rows a committed write changed, but `UPDATE ... RETURNING` (or a DELETE that
  // matches nothing, a MERGE) in a transaction that rolls back returns PHI and leaves no row event.
  const object = parseQualifiedName(objectName);
  const watched = object ? opts.tables.qualified.get(tableKey(object.schema, object.table)) : undefined;
  if (auditType !== 'OBJECT' || (auditClass !== 'READ' && auditClass !== 'WRITE') || !watched) return { kind: 'ignored' };
  // An INSERT into the trail is the trail growing (the ingester's own ON CONFLICT insert is logged,
  // as it reads the arbiter columns): its rows are in the trail already. Reads of it are events.
  if (watched.schema === 'audit' && watched.table === 'audit_log' && auditClass === 'WRITE' && command === 'INSERT') return { kind: 'ignored' };
  const last: AuditedStatement = {
    vxid: line.virtualTransactionId,
    sql: sha256(statement),
    action: command,
    schema: watched.schema,
    table: watched.table,
    relation: watched.relation,
  };
  const kept = truncate(statement, opts.statementMaxLength);
  const event = baseEvent(line, opts, {
    action: command,
    outcome: 'success',
    schemaName: watched.schema,
    tableName: watched.table,
    relationName: watched.relation,
    statement: kept,
    error: null,
  });
  const context = { ...opts.contextOf(line.sessionId), last };
  if (watched.readContext && !opts.bypassesRowSecurity?.has(line.userName)) {
    return { kind: 'read', sessionId: line.sessionId, context, read: { event, vxid: line.virtualTransactionId, statementId, substatementId, statement: kept } };
  }
  return { kind: 'event', event, sessionId: line.sessionId, context };
}

function classifyError(line: LogLine, opts: ClassifyOptions): Classified {
  let schemaName: string | null = null;
  let tableName: string | null = null;
  let relationName: string | null = null;
  /** The relation an error names by its bare name: where its events go, or null when not watched. */
  const named = (name: string): boolean => {
    const all = opts.tables.byName.get(name);
    if (!all) return false;
    // Ambiguous when the same name is watched in several schemas: say so rather than guess.
    const w = all.length === 1 ? all[0]! : null;
    schemaName = w?.schema ?? null;
    tableName = w?.table ?? name;
    relationName = w?.relation ?? null;
    return true;
  };
  if (line.message.startsWith('audit.audit_log is append-only')) {
    schemaName = 'audit';
    tableName = 'audit_log';
  } else if (line.sqlStateCode === '42501' && line.message === 'permission denied for schema audit') {
    // Roles without USAGE on the audit schema are stopped there, before the table is named.
    schemaName = 'audit';
    tableName = /\baudit_log\b/i.test(line.query) ? 'audit_log' : null;
  } else if (line.sqlStateCode === '42501' && DENIED_SCHEMA_RE.test(line.message)) {
    // The schema of a protected table: the table is not named, the schema is.
    const schema = DENIED_SCHEMA_RE.exec(line.message)![1]!;
    if (schema === 'pg_catalog' || ![...opts.tables.qualified.keys()].some((k) => k.startsWith(tableKey(schema, '')))) return { kind: 'ignored' };
    schemaName = schema;
  } else if (line.sqlStateCode === '42501' && DENIED_PARAMETER_RE.test(line.message)) {
    // An attempt to switch auditing or logging off for the session or the server.
    if (!AUDIT_SETTINGS.test(DENIED_PARAMETER_RE.exec(line.message)![1]!)) return { kind: 'ignored' };
  } else if (line.sqlStateCode === '42501' && NOT_OWNER_RE.test(line.message)) {
    if (!named(NOT_OWNER_RE.exec(line.message)![1]!)) return { kind: 'ignored' };
  } else if (line.sqlStateCode === '42501') {
    const m = DENIED_TABLE_RE.exec(line.message);
    if (!m || !named(m[1]!)) return { kind: 'ignored' };
  } else {
    // Any other error of a statement pgaudit logged on a protected table: the access failed after
    // it began (`UPDATE ... SET id = full_name::int` fails with the row's name in the message). The
    // message may quote values, so only its SQLSTATE is kept.
    const last = opts.contextOf(line.sessionId)?.last;
    if (!last || last.vxid !== line.virtualTransactionId || !line.query || last.sql !== sha256(line.query)) return { kind: 'ignored' };
    return {
      kind: 'event',
      event: baseEvent(line, opts, {
        action: last.action,
        outcome: 'failure',
        schemaName: last.schema,
        tableName: last.table,
        relationName: last.relation ?? null,
        statement: truncate(line.query, opts.statementMaxLength),
        error: `${line.sqlStateCode}: the statement failed (the server's message is not kept: it may quote values)`,
      }),
    };
  }
  const action = (line.commandTag || firstWord(line.query) || 'UNKNOWN').toUpperCase();
  return {
    kind: 'event',
    event: baseEvent(line, opts, {
      action,
      outcome: 'failure',
      schemaName,
      tableName,
      relationName,
      statement: line.query ? truncate(line.query, opts.statementMaxLength) : null,
      error: `${line.sqlStateCode}: ${line.message}`,
    }),
  };
}

function baseEvent(
  line: LogLine,
  opts: ClassifyOptions,
  rest: Pick<LogAuditEvent, 'action' | 'outcome' | 'schemaName' | 'tableName' | 'relationName' | 'statement' | 'error'>,
): LogAuditEvent {
  const { addr, port } = splitConnectionFrom(line.connectionFrom);
  const txid = Number(line.transactionId);
  return {
    occurredAt: line.logTime,
    ...rest,
    sessionUserName: line.userName,
    // Unknown until the server's own line says otherwise (attribution.ts): never a value from before.
    appUserId: null,
    appCustomerId: null,
    appContext: 'unknown',
    applicationName: line.applicationName || null,
    clientAddr: addr,
    clientPort: port,
    backendPid: line.processId,
    txid: Number.isSafeInteger(txid) && txid > 0 ? txid : null,
    logSessionId: line.sessionId,
    logLineNum: line.sessionLineNum,
  };
}

function sha256(s: string): string {
  return hash('sha256', s, 'hex'); // one-shot: no Hash object per line
}

function firstWord(s: string): string {
  return /^\s*([A-Za-z]+)/.exec(s)?.[1] ?? '';
}

export function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  return `${s.slice(0, Math.max(0, max - 1))}…`;
}
