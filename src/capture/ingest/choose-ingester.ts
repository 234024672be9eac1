import type pg from 'pg';
import { ConfigError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { directoryLogs, sqlLogs, type LogFiles, type LogFormat } from './log-files.js';
import { rdsInstancesLogs, rdsLogApi } from './rds-logs.js';
import { Ingester, type IngestStats } from './ingester.js';
import { cloudInstance, cloudLoggingApi, CloudLoggingIngester } from './cloud-logging.js';
import { pubsubApi, PubSubIngester, pubsubSubscription } from './pubsub.js';

/** The settings that say where pgaudit's lines are read (ingest's, and ship's built-in ingester's). */
export const LOG_SOURCE_SETTINGS = [
  'logSource',
  'rdsInstance',
  'gcpProject',
  'gcpInstance',
  'cloudLoggingLag',
  'cloudLoggingFrom',
  'cloudLoggingEndpoint',
  'pubsubSubscription',
  'pubsubChunkWait',
  'pubsubRetention',
  'pubsubEndpoint',
  'logFormat',
  'logDir',
] as const;

/** What ingest and ship's built-in ingester run, whichever source the lines come from. */
export interface LogIngester {
  runOnce(): Promise<IngestStats>;
  follow(signal: AbortSignal, pollMs?: number, onPass?: (s: IngestStats) => void): Promise<IngestStats>;
}

export interface IngesterSettings {
  statementMaxLength: number;
  log: Logger;
  chunkBytes?: number;
  contextWaitMs?: number;
}

export type IngesterOf = (client: pg.Client, s: IngesterSettings) => LogIngester;

/**
 * The ingester a command runs, from its settings (ingest, and ship's built-in ingester): the log
 * files over SQL, from the directory or through the RDS API, or Cloud Logging's entries; or none
 * (ship without any). Given a directory and another source, it refuses: one log, read one way.
 */
export function chooseIngester(s: {
  logSource: 'dir' | 'sql' | 'rds' | 'cloud-logging' | 'pubsub';
  logFormat: LogFormat;
  logDir?: string | undefined;
  rdsInstance?: string | undefined;
  gcpProject?: string | undefined;
  gcpInstance?: string | undefined;
  cloudLoggingLag?: number | undefined;
  cloudLoggingEndpoint?: string | undefined;
  /** milliseconds since the epoch */
  cloudLoggingFrom?: number | undefined;
  pubsubSubscription?: string | undefined;
  pubsubEndpoint?: string | undefined;
  pubsubChunkWait?: number | undefined;
  pubsubRetention?: number | undefined;
}): IngesterOf | null {
  if (s.logSource !== 'dir' && s.logDir) {
    throw new ConfigError(`--log-dir (PGAUDIT_LOG_DIR) and --log-source ${s.logSource} do not go together: the ingester reads the log one way; drop one`);
  }
  const files =
    (logsOf: (client: pg.Client) => LogFiles): IngesterOf =>
    (client, o) =>
      new Ingester(client, { ...o, logs: logsOf(client) });
  if (s.logSource === 'sql') return files((client) => sqlLogs(client, s.logFormat));
  if (s.logSource === 'rds') {
    if (!s.rdsInstance) throw new ConfigError('--log-source rds needs --rds-instance (AUDIT_RDS_INSTANCE): the DB instance whose log files are read');
    const instances = s.rdsInstance.split(',').map((x) => x.trim());
    for (const id of instances) {
      if (!/^[A-Za-z][A-Za-z0-9-]{0,62}$/.test(id))
        throw new ConfigError(
          `--rds-instance (AUDIT_RDS_INSTANCE) ${JSON.stringify(id)} is not a DB instance identifier (a letter, then letters, digits and hyphens); several are separated by commas, the writer first`,
        );
    }
    if (new Set(instances).size !== instances.length) throw new ConfigError(`--rds-instance (AUDIT_RDS_INSTANCE) names an instance twice: ${s.rdsInstance}`);
    if (s.logFormat !== 'csvlog') throw new ConfigError('--log-source rds reads csvlog (RDS writes no jsonlog): drop --log-format, or set it to csvlog');
    const logs = rdsInstancesLogs(instances, rdsLogApi, s.logFormat);
    return files(() => logs);
  }
  if (s.logSource === 'cloud-logging') {
    const where = cloudInstance(s.gcpProject, s.gcpInstance);
    const api = cloudLoggingApi(where, s.cloudLoggingEndpoint);
    const lagMs = s.cloudLoggingLag ?? 120_000;
    const startMs = s.cloudLoggingFrom;
    return (client, o) =>
      new CloudLoggingIngester(client, api, {
        where,
        lagMs,
        statementMaxLength: o.statementMaxLength,
        log: o.log,
        ...(startMs !== undefined ? { startMs } : {}),
      });
  }
  if (s.logSource === 'pubsub') {
    const where = cloudInstance(s.gcpProject, s.gcpInstance, 'pubsub');
    const subscription = pubsubSubscription(s.pubsubSubscription);
    const api = pubsubApi(subscription, s.pubsubEndpoint);
    const { pubsubChunkWait: chunkWaitMs, pubsubRetention: retentionMs } = s;
    return (client, o) =>
      new PubSubIngester(client, api, {
        where,
        subscription,
        statementMaxLength: o.statementMaxLength,
        log: o.log,
        ...(chunkWaitMs !== undefined ? { chunkWaitMs } : {}),
        ...(retentionMs !== undefined ? { retentionMs } : {}),
      });
  }
  const dir = s.logDir;
  return dir ? files(() => directoryLogs(dir, s.logFormat)) : null;
}
