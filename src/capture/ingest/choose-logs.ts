import type pg from 'pg';
import { ConfigError } from '../../errors.js';
import { directoryLogs, sqlLogs, type LogFiles, type LogFormat } from './log-files.js';
import { rdsLogApi, rdsLogs } from './rds-logs.js';

/**
 * The log a command reads, from its settings (ingest, and ship's built-in ingester): over SQL, or
 * the directory, or none (ship without either). Given both, it refuses: one log, read one way.
 */
export function chooseLogs(s: {
  logSource: 'dir' | 'sql' | 'rds';
  logFormat: LogFormat;
  logDir?: string | undefined;
  rdsInstance?: string | undefined;
}): ((client: pg.Client) => LogFiles) | null {
  if (s.logSource !== 'dir' && s.logDir) {
    throw new ConfigError(`--log-dir (PGAUDIT_LOG_DIR) and --log-source ${s.logSource} do not go together: the ingester reads the log one way; drop one`);
  }
  if (s.logSource === 'sql') return (client) => sqlLogs(client, s.logFormat);
  if (s.logSource === 'rds') {
    const instance = s.rdsInstance;
    if (!instance) throw new ConfigError('--log-source rds needs --rds-instance (AUDIT_RDS_INSTANCE): the DB instance whose log files are read');
    if (s.logFormat !== 'csvlog') throw new ConfigError('--log-source rds reads csvlog (RDS writes no jsonlog): drop --log-format, or set it to csvlog');
    const logs = rdsLogs(rdsLogApi(instance), s.logFormat);
    return () => logs;
  }
  const dir = s.logDir;
  return dir ? () => directoryLogs(dir, s.logFormat) : null;
}
