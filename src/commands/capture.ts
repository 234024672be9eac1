import { Option, type Command } from 'commander';
import { z } from 'zod';
import { addSettings, settingOption, settingsSchema, validate } from '../config.js';
import { connect } from '../db.js';
import { createLogger } from '../log.js';
import { init } from '../capture/migrate.js';
import { protect, READS_MODES, rowSecurityBypassers, unprotect } from '../capture/protect.js';
import { keygen } from '../seal/keys.js';
import { readServerFacts } from '../capture/doctor.js';
import { diagnose, looksLike, PLATFORMS } from '../capture/platform.js';
import { ConfigError, FindingsError } from '../errors.js';
import { chooseIngester, LOG_SOURCE_SETTINGS } from '../capture/ingest/choose-ingester.js';

const dbSchema = settingsSchema('databaseUrl');
const INGEST_SETTINGS = ['databaseUrl', ...LOG_SOURCE_SETTINGS, 'follow', 'statementMaxLength', 'pollMs', 'contextWait', 'chunkBytes'] as const;

async function withClient<T>(databaseUrl: string, fn: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  const client = await connect(databaseUrl);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function registerCaptureCommands(program: Command): void {
  program
    .command('init')
    .description(
      "install or upgrade the audit schema (idempotent, one transaction); as a managed platform's admin role (no superuser) it leaves out " +
        'what needs a superuser, says what, and records it for doctor',
    )
    .addOption(settingOption('databaseUrl'))
    .option('--example', 'also install the example PHI schema (customers: pgcrypto, row-level security, roles)')
    .action(async (raw, cmd: Command) => {
      const cfg = validate(dbSchema.extend({ example: z.boolean().default(false) }), raw, cmd);
      const log = createLogger();
      const r = await withClient(cfg.databaseUrl, (c) => init(c, { example: cfg.example, log }));
      for (const w of r.warnings) process.stdout.write(`warning: ${w}\n`);
      process.stdout.write(
        r.applied.length === 0 && r.closed.length === 0
          ? `schema up to date (${r.alreadyApplied.length} migrations already applied, nothing changed)\n`
          : r.applied.length > 0
            ? `applied ${r.applied.join(', ')}\n`
            : '',
      );
      if (r.closed.length > 0) process.stdout.write(`closed, as a superuser, what an earlier init could not do: ${r.closed.join(', ')}\n`);
      // Not a superuser (a managed platform's admin role): each part left out, on one line, with what to ask for.
      for (const g of r.gaps) process.stdout.write(`could not (needs a superuser): ${g.gap}: ${g.consequence}; instead: ${g.remedy}\n`);
    });

  program
    .command('doctor')
    .description(
      'check a database against what the capture and the shipper need on its platform, and say what to change there: exit 0 ready, 1 something to fix, 2 could not run',
    )
    .addOption(settingOption('databaseUrl'))
    .addOption(settingOption('slot'))
    .addOption(new Option('--platform <name>', 'where the database runs (default: what the server looks like)').choices(PLATFORMS))
    .action(async (raw, cmd: Command) => {
      const cfg = validate(settingsSchema('databaseUrl', 'slot').extend({ platform: z.enum(PLATFORMS).optional() }), raw, cmd);
      const facts = await withClient(cfg.databaseUrl, (c) => readServerFacts(c, cfg.slot));
      const platform = cfg.platform ?? looksLike(facts);
      const checks = diagnose(platform, facts);
      const mark = { ok: 'ok  ', fix: 'FIX ', note: 'note' } as const;
      const lines = checks.flatMap((c) => [`${mark[c.verdict]} ${c.says}`, ...(c.todo ? [`     -> ${c.todo}`] : [])]);
      const fixes = checks.filter((c) => c.verdict === 'fix').length;
      const notes = checks.filter((c) => c.verdict === 'note').length;
      process.stdout.write(
        `${cfg.platform ? '' : `platform: ${platform} (what the server looks like; --platform to say otherwise)\n`}${lines.join('\n')}\n` +
          `${fixes === 0 ? 'ready' : `${fixes} to fix`}${notes > 0 ? `, ${notes} to know` : ''}\n`,
      );
      if (fixes > 0) throw new FindingsError(`${fixes} thing${fixes === 1 ? '' : 's'} to fix before the capture and the shipper can work`);
    });

  program
    .command('protect')
    .description('audit a table: row triggers for writes; reads through pgaudit statements, the rows they return, or both (idempotent)')
    .argument('<table>', 'schema.table')
    .addOption(settingOption('databaseUrl'))
    .option('--key <column...>', 'column(s) recorded as the row identifier (default: the primary key)')
    .addOption(
      new Option(
        '--read-context <on|off>',
        'attribute reads through the row-level security policy audit_read_context ' +
          "(off: the table's row security is left alone, COPY FROM keeps working, its reads are recorded with app_context unknown)",
      )
        .choices(['on', 'off'])
        .default('on'),
    )
    .addOption(
      new Option(
        '--reads <mode>',
        'how reads are recorded: statements (pgaudit logs each statement), rows (every row a read returns, with its key, through the policy and the replication slot; no pgaudit), or both (default: as the table had it; statements when first protected)',
      ).choices(READS_MODES),
    )
    .action(async (table: string, raw, cmd: Command) => {
      const cfg = validate(
        dbSchema.extend({ key: z.array(z.string().min(1)).optional(), readContext: z.enum(['on', 'off']), reads: z.enum(READS_MODES).optional() }),
        raw,
        cmd,
      );
      const { done, bypass } = await withClient(cfg.databaseUrl, async (c) => {
        const result = await protect(c, table, cfg.key, { attributeReads: cfg.readContext === 'on', ...(cfg.reads ? { reads: cfg.reads } : {}) });
        return { done: result, bypass: result.reads !== 'statements' ? await rowSecurityBypassers(c) : [] };
      });
      if (bypass.length > 0) {
        process.stderr.write(
          `warning: reads by ${bypass.join(', ')} skip row-level security (superuser or BYPASSRLS): ` +
            (done.reads === 'rows'
              ? 'with --reads rows they are not recorded at all (--reads both keeps their statements)\n'
              : 'they are recorded as statements by pgaudit, not row by row\n'),
        );
      }
      process.stdout.write(
        `protected ${table}${cfg.readContext === 'off' ? ' (reads not attributed: --read-context off)' : ''}` +
          // Said whenever asked for or changed: --read-context off turns row reads off with the policy.
          `${cfg.reads || (done.was !== null && done.was !== done.reads) ? ` (reads recorded: ${done.reads}${done.was !== null && done.was !== done.reads ? `, were ${done.was}` : ''})` : ''}\n`,
      );
    });

  program
    .command('unprotect')
    .description('stop auditing a table (its past events stay in the trail)')
    .argument('<table>', 'schema.table')
    .addOption(settingOption('databaseUrl'))
    .action(async (table: string, raw, cmd: Command) => {
      const cfg = validate(dbSchema, raw, cmd);
      await withClient(cfg.databaseUrl, (c) => unprotect(c, table));
      process.stdout.write(`unprotected ${table}\n`);
    });

  addSettings(
    program.command('ingest').description("turn pgaudit lines of the server's csvlog or jsonlog into audit_log rows, exactly once"),
    ...INGEST_SETTINGS,
  ).action(async (raw, cmd: Command) => {
    const cfg = validate(settingsSchema(...INGEST_SETTINGS).partial({ logDir: true }), raw, cmd);
    const ingesterOf = chooseIngester(cfg);
    if (!ingesterOf)
      throw new ConfigError(
        "--log-dir (PGAUDIT_LOG_DIR) is required: the server's csvlog directory; or read the log over SQL (--log-source sql), through the RDS API (--log-source rds) or from Cloud Logging (--log-source cloud-logging)",
      );
    const log = createLogger();
    const stats = await withClient(cfg.databaseUrl, async (client) => {
      const ingester = ingesterOf(client, { statementMaxLength: cfg.statementMaxLength, log, chunkBytes: cfg.chunkBytes, contextWaitMs: cfg.contextWait });
      if (!cfg.follow) return ingester.runOnce();
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
      log.info({ log_source: cfg.logSource, log_dir: cfg.logDir ?? null }, 'following the server log');
      return ingester.follow(stop.signal, cfg.pollMs);
    });
    process.stdout.write(
      (cfg.logSource === 'cloud-logging'
        ? `ingested ${stats.events} events from ${stats.lines} log entries in ${stats.files} windows`
        : cfg.logSource === 'pubsub'
          ? `ingested ${stats.events} events from ${stats.lines} Pub/Sub messages`
          : `ingested ${stats.events} events from ${stats.lines} log lines in ${stats.files} files`) +
        ` (${stats.ignored} not audit-relevant, ${stats.malformed} malformed, ${stats.duplicates} already present)` +
        `${stats.held > 0 ? (cfg.logSource === 'pubsub' ? `; ${stats.held} chunks of long statements waiting for the rest, pulled again by a later run` : `; ${stats.held} reads held for the server's line with their context, written by a later run`) : ''}\n`,
    );
  });

  program
    .command('keygen')
    .description('create the Ed25519 key pair that signs (signing-key.pem) and checks (verify-key.pem) digests')
    .requiredOption('--out <dir>', 'directory for the two PEM files (never overwritten)')
    .action(async (raw, cmd: Command) => {
      const cfg = validate(z.object({ out: z.string().min(1) }), raw, cmd);
      const k = await keygen(cfg.out);
      process.stdout.write(`signing key: ${k.signingKeyPath} (keep secret)\nverify key:  ${k.verifyKeyPath}\nkey id:      ${k.keyId}\n`);
    });
}
