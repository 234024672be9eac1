import { readdir } from 'node:fs/promises';
import { getHeapStatistics } from 'node:v8';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { durationMs, postgresUrl, settingOption, statementMaxLength, validate, wholeNumber } from '../config.js';
import { parseBytes } from '../duration.js';
import { createLogger } from '../log.js';
import { loadSigningKey } from '../seal/keys.js';
import { startHttp } from '../ship/http.js';
import { createMetrics } from '../ship/metrics.js';
import { ship } from '../ship/shipper.js';
import { ConfigError, FindingsError } from '../errors.js';
import { addArchiveOptions, archiveFrom, archiveSchema, verifyKeysFrom } from './archive-options.js';

/**
 * Every heartbeat is an object locked for the retention period (six years): one a second would be
 * 190 million undeletable objects. Under a minute only for short-retention trials.
 */
const MIN_HEARTBEAT_MS = 60_000;
const bytes = (flag: string) => z.string().transform((v, ctx) => {
  const b = parseBytes(v);
  if (b === null || b <= 0) { ctx.addIssue({ code: 'custom', message: `${flag} takes a size such as 8MiB` }); return z.NEVER; }
  return b;
});

export function registerShipCommand(program: Command): void {
  const cmd = program.command('ship')
    .description('stream audit_log through a replication slot into sealed, signed, locked files (runs until SIGTERM)')
    .addOption(settingOption('databaseUrl', 'url'))
    .addOption(settingOption('signingKey', 'pem'))
    .addOption(settingOption('verifyKey'))
    .addOption(settingOption('slot'))
    .addOption(new Option('--batch-max-records <n>', 'seal a file at this many records').default('10000'))
    .addOption(new Option('--batch-max-bytes <size>', 'seal a file at this much uncompressed JSON').default('8MiB'))
    .addOption(new Option('--batch-max-age <duration>', 'seal a file this long after its first record').default('5s'))
    .addOption(new Option('--max-inflight-bytes <size>', 'pause the slot while this much is received but not stored').default('64MiB'))
    .addOption(new Option('--heartbeat-interval <duration>', 'signed "nothing happened" checkpoint when idle this long').default('1h').env('AUDIT_HEARTBEAT_INTERVAL'))
    .addOption(new Option('--attest-check-interval <duration>', 'read the capture configuration this often; attested in the trail when it changed, and once per heartbeat interval').default('1m'))
    .addOption(new Option('--grace-period <duration>', 'on SIGTERM, time to store what is open before exiting').default('30s'))
    .option('--drain', 'ship everything committed before start, then exit (jobs, tests)')
    .addOption(settingOption('logDir', 'dir'))
    .addOption(settingOption('statementMaxLength'))
    .addOption(new Option('--http-port <port>', '/healthz, /readyz, /metrics (0: off)').default('9898').env('AUDIT_HTTP_PORT'));
  addArchiveOptions(cmd).action(async (raw) => {
    const cfg = validate(archiveSchema.extend({
      databaseUrl: postgresUrl,
      signingKey: z.string().min(1),
      verifyKey: z.union([z.array(z.string()), z.string()]).optional(),
      slot: z.string().regex(/^[a-z0-9_]{1,63}$/, 'slot names are lower-case letters, digits and _'),
      batchMaxRecords: wholeNumber('--batch-max-records', 1, 1_000_000),
      batchMaxBytes: bytes('--batch-max-bytes'),
      batchMaxAge: durationMs('--batch-max-age'),
      maxInflightBytes: bytes('--max-inflight-bytes'),
      heartbeatInterval: durationMs('--heartbeat-interval', 1000),
      attestCheckInterval: durationMs('--attest-check-interval', 100),
      gracePeriod: durationMs('--grace-period'),
      drain: z.boolean().optional(),
      logDir: z.string().optional(),
      statementMaxLength: statementMaxLength(),
      httpPort: wholeNumber('--http-port', 0, 65535),
    }), raw, cmd);
    if (cfg.heartbeatInterval < MIN_HEARTBEAT_MS && cfg.allowShortRetention !== true) {
      throw new ConfigError(`--heartbeat-interval (AUDIT_HEARTBEAT_INTERVAL) ${raw.heartbeatInterval} is shorter than a minute: every heartbeat is an object ` +
        'locked for the retention period; shorter only with --allow-short-retention (tests and trials)');
    }
    const log = createLogger();
    const key = await loadSigningKey(cfg.signingKey);
    const verifyKeys = await verifyKeysFrom(cfg.verifyKey);
    const archive = await archiveFrom(cfg, true, (refused, code) =>
      log.warn({ refused, error_code: code }, 'the delivery stream refused some records; sending them again'));
    if (cfg.batchMaxBytes > cfg.maxInflightBytes) throw new ConfigError('--max-inflight-bytes must be at least --batch-max-bytes');
    if (cfg.logDir) {
      // A directory that cannot be read now is a setting to fix, not a failure to retry: say so and stop.
      await readdir(cfg.logDir).catch((err: NodeJS.ErrnoException) => {
        throw new ConfigError(`--log-dir (PGAUDIT_LOG_DIR) ${cfg.logDir} cannot be read: ${err.code}; ` +
          "point it at the server's log_directory with log_destination including 'csvlog', readable by this user");
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
    const server = cfg.httpPort > 0 ? await startHttp(cfg.httpPort, metrics.registry, {
      ready: () => ready,
      problems: () => [...problems].map(([component, problem]) => `${component}: ${problem}`),
      secondsSinceDurableWrite: () => (metrics.lastWriteMs() ? (Date.now() - metrics.lastWriteMs()) / 1000 : 0),
      stallSeconds: Math.max(600, (cfg.heartbeatInterval / 1000) * 2),
    }) : null;
    log.info({ archive: archive.location, slot: cfg.slot, key_id: key.keyId, http_port: cfg.httpPort || null,
      heap_limit_mib: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20) }, 'shipping');
    try {
      const result = await ship({
        databaseUrl: cfg.databaseUrl, archive, key, verifyKeys, slot: cfg.slot,
        limits: { maxRecords: cfg.batchMaxRecords, maxBytes: cfg.batchMaxBytes, maxAgeMs: cfg.batchMaxAge },
        maxInflightBytes: cfg.maxInflightBytes, heartbeatMs: cfg.heartbeatInterval, attestCheckMs: cfg.attestCheckInterval, drain: cfg.drain === true,
        graceMs: cfg.gracePeriod, log, metrics, signal: stop.signal,
        ...(cfg.logDir ? { logDir: cfg.logDir } : {}), statementMaxLength: cfg.statementMaxLength,
        onReady: (r) => { ready = r; },
        onProblem: (component, problem) => {
          if (problem === null) problems.delete(component); else problems.set(component, problem);
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
