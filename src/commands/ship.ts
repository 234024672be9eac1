import { readdir } from 'node:fs/promises';
import { getHeapStatistics } from 'node:v8';
import type { Command } from 'commander';
import { addSettings, settingsSchema, validate } from '../config.js';
import { createLogger } from '../log.js';
import { loadSigningKey } from '../seal/keys.js';
import { startHttp } from '../ship/http.js';
import { createMetrics } from '../ship/metrics.js';
import { ship } from '../ship/shipper.js';
import { ConfigError, FindingsError } from '../errors.js';
import { addArchiveOptions, archiveFrom, archiveSchema, verifyKeysFrom } from './archive-options.js';
import { chooseIngester, LOG_SOURCE_SETTINGS } from '../capture/ingest/choose-ingester.js';

/**
 * Every heartbeat is an object locked for the retention period (six years): one a second would be
 * 190 million undeletable objects. Under a minute only for short-retention trials.
 */
const MIN_HEARTBEAT_MS = 60_000;

const SHIP_SETTINGS = [
  'databaseUrl',
  'signingKey',
  'verifyKey',
  'slot',
  'batchMaxRecords',
  'batchMaxBytes',
  'batchMaxAge',
  'maxInflightBytes',
  'heartbeatInterval',
  'attestCheckInterval',
  'gracePeriod',
  'drain',
  ...LOG_SOURCE_SETTINGS,
  'statementMaxLength',
  'httpPort',
  'lockReadbackEvery',
  'lockConfigCheckInterval',
] as const;

export function registerShipCommand(program: Command): void {
  const cmd = addSettings(
    program.command('ship').description('stream audit_log through a replication slot into sealed, signed, locked files (runs until SIGTERM)'),
    ...SHIP_SETTINGS,
  );
  addArchiveOptions(cmd).action(async (raw) => {
    const cfg = validate(archiveSchema.extend(settingsSchema(...SHIP_SETTINGS).partial({ logDir: true }).shape), raw, cmd);
    if (cfg.heartbeatInterval < MIN_HEARTBEAT_MS && cfg.allowShortRetention !== true) {
      throw new ConfigError(
        `--heartbeat-interval (AUDIT_HEARTBEAT_INTERVAL) ${raw.heartbeatInterval} is shorter than a minute: every heartbeat is an object ` +
          'locked for the retention period; shorter only with --allow-short-retention (tests and trials)',
      );
    }
    const log = createLogger();
    const key = await loadSigningKey(cfg.signingKey);
    const verifyKeys = await verifyKeysFrom(cfg.verifyKey);
    const archive = await archiveFrom(
      cfg,
      true,
      (refused, code) => log.warn({ refused, error_code: code }, 'the delivery stream refused some records; sending them again'),
      { readbackEvery: cfg.lockReadbackEvery, configCheckMs: cfg.lockConfigCheckInterval },
    );
    if (cfg.batchMaxBytes > cfg.maxInflightBytes) throw new ConfigError('--max-inflight-bytes must be at least --batch-max-bytes');
    const ingestFrom = chooseIngester(cfg); // the built-in ingester: with --log-dir, or another --log-source
    if (cfg.logDir) {
      // A directory that cannot be read now is a setting to fix, not a failure to retry: say so and stop.
      await readdir(cfg.logDir).catch((err: NodeJS.ErrnoException) => {
        throw new ConfigError(
          `--log-dir (PGAUDIT_LOG_DIR) ${cfg.logDir} cannot be read: ${err.code}; ` +
            `point it at the server's log_directory with log_destination including '${cfg.logFormat}', readable by this user`,
        );
      });
    }
    const metrics = createMetrics();
    const stop = new AbortController();
    const onSignal = (sig: string) => () => {
      if (stop.signal.aborted) {
        log.warn({ signal: sig }, 'second signal: exiting now; what is not stored stays in the slot');
        process.exit(2);
      }
      log.info({ signal: sig }, 'stopping: storing what is open');
      stop.abort();
      // Never outlive the grace period by much: nothing unstored was acknowledged, so exiting is safe.
      setTimeout(() => {
        log.error({ grace_ms: cfg.gracePeriod }, 'shutdown did not finish within the grace period; exiting, unstored records stay in the slot');
        process.exit(2);
      }, cfg.gracePeriod + 10_000).unref();
    };
    process.on('SIGINT', onSignal('SIGINT')).on('SIGTERM', onSignal('SIGTERM'));
    let ready = false;
    const problems = new Map<string, string>();
    const server =
      cfg.httpPort > 0
        ? await startHttp(cfg.httpPort, metrics.registry, {
            ready: () => ready,
            problems: () => [...problems].map(([component, problem]) => `${component}: ${problem}`),
            secondsSinceDurableWrite: () => (metrics.lastWriteMs() ? (Date.now() - metrics.lastWriteMs()) / 1000 : 0),
            stallSeconds: Math.max(600, (cfg.heartbeatInterval / 1000) * 2),
          })
        : null;
    log.info(
      {
        archive: archive.location,
        slot: cfg.slot,
        key_id: key.keyId,
        http_port: cfg.httpPort || null,
        heap_limit_mib: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
      },
      'shipping',
    );
    try {
      const result = await ship({
        databaseUrl: cfg.databaseUrl,
        archive,
        key,
        verifyKeys,
        slot: cfg.slot,
        limits: { maxRecords: cfg.batchMaxRecords, maxBytes: cfg.batchMaxBytes, maxAgeMs: cfg.batchMaxAge },
        maxInflightBytes: cfg.maxInflightBytes,
        heartbeatMs: cfg.heartbeatInterval,
        attestCheckMs: cfg.attestCheckInterval,
        drain: cfg.drain,
        graceMs: cfg.gracePeriod,
        log,
        metrics,
        signal: stop.signal,
        ...(ingestFrom ? { ingestFrom } : {}),
        statementMaxLength: cfg.statementMaxLength,
        onReady: (r) => {
          ready = r;
        },
        onProblem: (component, problem) => {
          if (problem === null) problems.delete(component);
          else problems.set(component, problem);
          metrics.componentFailing.set({ component }, problem === null ? 0 : 1);
        },
      });
      process.stdout.write(`stored ${result.files} files with ${result.records} records; archive head is file ${result.headSeq}\n`);
      if (!result.complete) throw new FindingsError('stopped before everything received was stored (it stays in the slot for the next start)');
    } finally {
      server?.close();
    }
  });
}
