/**
 * A pgaudit object-audit read as PostgreSQL writes it to the csvlog (26 columns, PostgreSQL 15),
 * for tests that need log files the server did not write: torn, removed, another server's. Line
 * `n` of session `session` (backend `pid`) at 10:00:00.n on 2026-11-28.
 */
export function pgauditReadLine(o: {
  database: string;
  n: number;
  statement: string;
  pid: number;
  session: string;
  from?: string;
  application?: string;
}): string {
  const ms = String(o.n).padStart(3, '0');
  return (
    `2026-11-28 10:00:00.${ms} UTC,"app_login","${o.database}",${o.pid},"${o.from ?? '[local]'}",${o.session},${o.n},"SELECT",2026-11-28 10:00:00 UTC,3/${o.n},0,LOG,00000,` +
    `"AUDIT: OBJECT,${o.n},1,READ,SELECT,TABLE,public.customers,""${o.statement.replace(/"/g, '""""')}"",<not logged>",,,,,,,,,"${o.application ?? 'clinic-web'}","client backend",,0\n`
  );
}
