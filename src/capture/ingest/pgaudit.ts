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
  sessionUserName: string;
  appUserId: string | null;
  appCustomerId: string | null;
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

/** app.user_id / app.customer_id as a session last SET them; LOCAL values live for one transaction. */
export interface SessionContext {
  user?: ContextValue;
  customer?: ContextValue;
  /** the session's last object-audited statement: an ERROR line of the same statement marks it failed */
  last?: AuditedStatement;
}

interface AuditedStatement {
  vxid: string;
  /** SHA-256 of the statement text (pgaudit's, and the ERROR line's query column: the same text) */
  sql: string;
  action: string;
  schema: string;
  table: string;
}
/** `session` is what SET gave; `local` (SET LOCAL) overrides it inside one virtual transaction only. */
interface ContextValue { session: string | null; local?: { value: string | null; vxid: string } }

export interface ProtectedTables {
  /** tableKey(schema, table) of every protected table: names as the catalog holds them */
  qualified: Set<string>;
  /** bare table name -> schemas it is protected in (error messages name only the table) */
  byName: Map<string, string[]>;
}

export function protectedTables(rows: { schema_name: string; table_name: string }[]): ProtectedTables {
  const qualified = new Set<string>();
  const byName = new Map<string, string[]>();
  const add = (s: string, t: string): void => {
    qualified.add(tableKey(s, t));
    byName.set(t, [...(byName.get(t) ?? []), s]);
  };
  for (const r of rows) add(r.schema_name, r.table_name);
  // Attempts on the trail itself are always recorded.
  add('audit', 'audit_log');
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
          if (name[i + 1] === '"') { part += '"'; i += 2; continue; }
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
  return line.context === '' && line.query === '' && line.detail === '' && line.hint === '' && line.internalQuery === '' &&
    line.sqlStateCode === '00000';
}

/** The action of an event recording a line that claims to be pgaudit's and is not. */
export const FORGED_ACTION = 'FORGED AUDIT LINE';

export type Classified =
  | { kind: 'event'; event: LogAuditEvent; sessionId?: string; context?: SessionContext }
  | { kind: 'context'; sessionId: string; context: SessionContext }
  | { kind: 'ignored' }
  | { kind: 'malformed'; reason: string };

export interface ClassifyOptions {
  database: string;
  tables: ProtectedTables;
  statementMaxLength: number;
  /** current context of the line's session (mutated copies are returned, never this object) */
  contextOf: (sessionId: string) => SessionContext | undefined;
}

const AUDIT_PREFIX = 'AUDIT: ';
const SET_RE = /^\s*SET\s+(?:(SESSION|LOCAL)\s+)?app\.(user_id|customer_id)\s*(?:=|\bTO\b)\s*(.*?)\s*;?\s*$/is;
const RESET_RE = /^\s*RESET\s+(ALL|app\.(user_id|customer_id))\s*;?\s*$/is;
// 42501 messages name the relation without its schema: "permission denied for table customers",
// 'new row violates row-level security policy for table "customers"'.
const DENIED_TABLE_RE = /\bfor table "?([^"\s]+)"?/;
// The owner's commands (ALTER, DROP, ...) refused to another role: "must be owner of table customers".
const NOT_OWNER_RE = /^must be owner of (?:table|relation|view|materialized view|sequence) "?([^"]+?)"?$/;
const DENIED_SCHEMA_RE = /^permission denied for schema "?([^"]+?)"?$/;
const DENIED_PARAMETER_RE = /^permission denied to set parameter "([^"]+)"$/;
/** Settings whose change would weaken or redirect the capture: an attempt to set them is recorded. */
const AUDIT_SETTINGS = /^(pgaudit\..+|session_replication_role|shared_preload_libraries|log_destination|logging_collector|log_directory|log_filename|log_min_messages|log_error_verbosity|log_min_error_statement|wal_level)$/;

export function classify(line: LogLine, opts: ClassifyOptions): Classified {
  if (line.databaseName !== opts.database) return { kind: 'ignored' };
  if (line.message.startsWith(AUDIT_PREFIX) && (line.errorSeverity !== 'LOG' || !writtenByPgaudit(line))) return forgery(line, opts);
  if (line.errorSeverity === 'LOG' && line.message.startsWith(AUDIT_PREFIX)) return classifyAudit(line, opts);
  if (line.errorSeverity === 'ERROR') return classifyError(line, opts);
  return { kind: 'ignored' };
}

/** Never a read and never silence: the attempt itself is the event, with what it tried to say. */
function forgery(line: LogLine, opts: ClassifyOptions): Classified {
  return {
    kind: 'event',
    event: baseEvent(line, opts, {
      action: FORGED_ACTION, outcome: 'failure', schemaName: null, tableName: null,
      statement: truncate(line.message, opts.statementMaxLength),
      error: truncate(`a ${line.errorSeverity} line that claims to be pgaudit's, written from: ${line.context || line.query || 'unknown'}`, opts.statementMaxLength),
    }),
  };
}

function classifyAudit(line: LogLine, opts: ClassifyOptions): Classified {
  const payload = line.message.slice(AUDIT_PREFIX.length);
  // A message cut while parsing (a statement longer than the ingester keeps) ends inside the quoted
  // statement: close it. The object name and command come before it and are whole.
  const f = parseCsvLine(payload) ?? parseCsvLine(`${payload}"`);
  if (!f || f.length < 8) return { kind: 'malformed', reason: 'AUDIT payload is not pgaudit CSV' };
  const [auditType, , , auditClass, command, , objectName, statement] = f as [string, string, string, string, string, string, string, string];
  if (auditType === 'SESSION' && auditClass === 'MISC' && (command === 'SET' || command === 'RESET')) {
    const context = applySet(opts.contextOf(line.sessionId), statement, line.virtualTransactionId);
    return context ? { kind: 'context', sessionId: line.sessionId, context } : { kind: 'ignored' };
  }
  // Object audit lines, reads and writes. A WRITE line is a statement-level event: the row triggers
  // record which rows a committed write changed, but `UPDATE ... RETURNING` (or a DELETE that
  // matches nothing, a MERGE) in a transaction that rolls back returns PHI and leaves no row event.
  const object = parseQualifiedName(objectName);
  if (auditType !== 'OBJECT' || (auditClass !== 'READ' && auditClass !== 'WRITE') || !object ||
    !opts.tables.qualified.has(tableKey(object.schema, object.table))) {
    return { kind: 'ignored' };
  }
  const last: AuditedStatement = { vxid: line.virtualTransactionId, sql: sha256(statement), action: command, schema: object.schema, table: object.table };
  return {
    kind: 'event',
    event: baseEvent(line, opts, {
      action: command, outcome: 'success', schemaName: object.schema, tableName: object.table,
      statement: truncate(statement, opts.statementMaxLength), error: null,
    }),
    sessionId: line.sessionId,
    context: { ...opts.contextOf(line.sessionId), last },
  };
}

function classifyError(line: LogLine, opts: ClassifyOptions): Classified {
  let schemaName: string | null = null;
  let tableName: string | null = null;
  if (line.message.startsWith('audit.audit_log is append-only')) {
    schemaName = 'audit'; tableName = 'audit_log';
  } else if (line.sqlStateCode === '42501' && line.message === 'permission denied for schema audit') {
    // Roles without USAGE on the audit schema are stopped there, before the table is named.
    schemaName = 'audit'; tableName = /\baudit_log\b/i.test(line.query) ? 'audit_log' : null;
  } else if (line.sqlStateCode === '42501' && DENIED_SCHEMA_RE.test(line.message)) {
    // The schema of a protected table: the table is not named, the schema is.
    const schema = DENIED_SCHEMA_RE.exec(line.message)![1]!;
    if (![...opts.tables.byName.values()].some((schemas) => schemas.includes(schema))) return { kind: 'ignored' };
    schemaName = schema;
  } else if (line.sqlStateCode === '42501' && DENIED_PARAMETER_RE.test(line.message)) {
    // An attempt to switch auditing or logging off for the session or the server.
    if (!AUDIT_SETTINGS.test(DENIED_PARAMETER_RE.exec(line.message)![1]!)) return { kind: 'ignored' };
  } else if (line.sqlStateCode === '42501' && NOT_OWNER_RE.test(line.message)) {
    const m = NOT_OWNER_RE.exec(line.message)!;
    const schemas = opts.tables.byName.get(m[1]!);
    if (!schemas) return { kind: 'ignored' };
    tableName = m[1]!;
    schemaName = schemas.length === 1 ? schemas[0]! : null;
  } else if (line.sqlStateCode === '42501') {
    const m = DENIED_TABLE_RE.exec(line.message);
    const schemas = m ? opts.tables.byName.get(m[1]!) : undefined;
    if (!m || !schemas) return { kind: 'ignored' };
    tableName = m[1]!;
    // Ambiguous when the same name is protected in several schemas: say so rather than guess.
    schemaName = schemas.length === 1 ? schemas[0]! : null;
  } else {
    // Any other error of a statement pgaudit logged on a protected table: the access failed after
    // it began (`UPDATE ... SET id = full_name::int` fails with the row's name in the message). The
    // message may quote values, so only its SQLSTATE is kept.
    const last = opts.contextOf(line.sessionId)?.last;
    if (!last || last.vxid !== line.virtualTransactionId || !line.query || last.sql !== sha256(line.query)) return { kind: 'ignored' };
    return {
      kind: 'event',
      event: baseEvent(line, opts, {
        action: last.action, outcome: 'failure', schemaName: last.schema, tableName: last.table,
        statement: truncate(line.query, opts.statementMaxLength),
        error: `${line.sqlStateCode}: the statement failed (the server's message is not kept: it may quote values)`,
      }),
    };
  }
  const action = (line.commandTag || firstWord(line.query) || 'UNKNOWN').toUpperCase();
  return {
    kind: 'event',
    event: baseEvent(line, opts, {
      action, outcome: 'failure', schemaName, tableName,
      statement: line.query ? truncate(line.query, opts.statementMaxLength) : null,
      error: `${line.sqlStateCode}: ${line.message}`,
    }),
  };
}

function baseEvent(
  line: LogLine, opts: ClassifyOptions,
  rest: Pick<LogAuditEvent, 'action' | 'outcome' | 'schemaName' | 'tableName' | 'statement' | 'error'>,
): LogAuditEvent {
  const ctx = opts.contextOf(line.sessionId);
  const { addr, port } = splitConnectionFrom(line.connectionFrom);
  const txid = Number(line.transactionId);
  return {
    occurredAt: line.logTime,
    ...rest,
    sessionUserName: line.userName,
    appUserId: effective(ctx?.user, line.virtualTransactionId),
    appCustomerId: effective(ctx?.customer, line.virtualTransactionId),
    applicationName: line.applicationName || null,
    clientAddr: addr,
    clientPort: port,
    backendPid: line.processId,
    txid: Number.isSafeInteger(txid) && txid > 0 ? txid : null,
    logSessionId: line.sessionId,
    logLineNum: line.sessionLineNum,
  };
}

function effective(v: ContextValue | undefined, vxid: string): string | null {
  if (!v) return null;
  return v.local && v.local.vxid === vxid ? v.local.value : v.session;
}

/** The new context after a SET/RESET statement, or null when the statement is not about app.*. */
export function applySet(current: SessionContext | undefined, statement: string, vxid: string): SessionContext | null {
  const next: SessionContext = { ...current };
  const set = SET_RE.exec(statement);
  if (set) {
    const key = set[2] === 'user_id' ? 'user' : 'customer';
    const local = set[1]?.toUpperCase() === 'LOCAL';
    const value = unquote(set[3]!);
    const v = value === '' || /^DEFAULT$/i.test(value) ? null : value;
    next[key] = local ? { session: current?.[key]?.session ?? null, local: { value: v, vxid } } : { session: v };
    return next;
  }
  const reset = RESET_RE.exec(statement);
  if (reset) {
    if (reset[1]!.toUpperCase() === 'ALL') return {};
    delete next[reset[2] === 'user_id' ? 'user' : 'customer'];
    return next;
  }
  return null;
}

function unquote(v: string): string {
  const m = /^'((?:[^']|'')*)'$/.exec(v);
  if (m) return m[1]!.replaceAll("''", "'");
  const d = /^"((?:[^"]|"")*)"$/.exec(v);
  return d ? d[1]!.replaceAll('""', '"') : v;
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
