/**
 * One line of PostgreSQL's csvlog (PostgreSQL 13+: 23 to 26 columns; columns after `query_id`
 * that later versions add are ignored). Names follow the server documentation.
 */
export interface LogLine {
  logTime: string;
  userName: string;
  databaseName: string;
  processId: number | null;
  connectionFrom: string;
  sessionId: string;
  sessionLineNum: number;
  commandTag: string;
  virtualTransactionId: string;
  transactionId: string;
  errorSeverity: string;
  sqlStateCode: string;
  message: string;
  detail: string;
  hint: string;
  internalQuery: string;
  /** where the message came from (a PL/pgSQL RAISE names its function here); pgaudit hides it */
  context: string;
  query: string;
  applicationName: string;
  backendType: string;
}

export const MIN_CSVLOG_FIELDS = 23;
/** The message's column (0-based): the server's own fields come before it. */
export const MESSAGE_FIELD = 13;

export function toLogLine(f: string[]): LogLine | null {
  if (f.length < MIN_CSVLOG_FIELDS) return null;
  const sessionLineNum = Number(f[6]);
  if (!f[0] || !f[5] || !Number.isInteger(sessionLineNum)) return null;
  return {
    logTime: f[0],
    userName: f[1]!,
    databaseName: f[2]!,
    processId: f[3] ? Number(f[3]) : null,
    connectionFrom: f[4]!,
    sessionId: f[5],
    sessionLineNum,
    commandTag: f[7]!,
    virtualTransactionId: f[9]!,
    transactionId: f[10]!,
    errorSeverity: f[11]!,
    sqlStateCode: f[12]!,
    message: f[MESSAGE_FIELD]!,
    detail: f[14]!,
    hint: f[15]!,
    internalQuery: f[16]!,
    context: f[18]!,
    query: f[19]!,
    applicationName: f[22]!,
    backendType: f[23] ?? '',
  };
}

/** "10.0.0.5:51234" / "[::1]:5432" / "[local]" -> address and port, when it is a network client. */
export function splitConnectionFrom(v: string): { addr: string | null; port: number | null } {
  const m = /^\[?([0-9A-Fa-f:.]+)\]?:(\d+)$/.exec(v);
  if (!m) return { addr: null, port: null };
  return { addr: m[1]!, port: Number(m[2]) };
}
