import { once } from 'node:events';
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { durationMs, settingOption, settingsSchema, validate } from '../config.js';
import { ConfigError, FindingsError } from '../errors.js';
import { VERSION } from '../paths.js';
import { timeKey, type TimeKey } from '../seal/event-time.js';
import { openArchiveReader } from '../sink/open.js';
import { checkEvidence, evidenceText } from '../query/evidence-check.js';
import { EvidenceWriter, searchedOf } from '../query/evidence.js';
import { describe, type Query } from '../query/filter.js';
import type { Format } from '../query/format.js';
import { answerQuery } from '../query/answer.js';
import { verifyKeysFrom } from './archive-options.js';

const ACTIONS = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'COPY', 'EXECUTE', 'REFERENCES', 'MERGE'];

const time = () =>
  z.string().transform((v, ctx) => {
    const k = timeKey(v);
    if (k === null) ctx.addIssue({ code: 'custom', message: `takes a date or time such as 2026-03-01 or 2026-03-01T08:00:00Z (UTC unless it says otherwise)` });
    return k as TimeKey;
  });
const list = z
  .union([z.array(z.string()), z.string()])
  .optional()
  .transform((v) =>
    (Array.isArray(v) ? v : v ? [v] : [])
      .flatMap((s) => s.split(','))
      .map((s) => s.trim())
      .filter(Boolean),
  );

export function registerQueryCommands(program: Command): void {
  program
    .command('query')
    .summary('who touched which record, when, how: search the archive, verifying every file it reads')
    .description(
      'who touched which record, when, how: search the archive, verifying every file it reads\n' +
        'exit 0 answered, 1 some file in range failed verification (its records are not shown), 2 could not run',
    )
    .addOption(settingOption('archive'))
    .addOption(settingOption('verifyKey'))
    .addOption(settingOption('s3ForcePathStyle'))
    .addOption(
      settingOption('workers', 'worker threads checking and matching files when a search reads more than one (0: this thread; cores: one per core, at most 8)'),
    )
    .option('--from <time>', 'events that occurred at or after this time (UTC unless the time says otherwise)')
    .option('--to <time>', 'events that occurred before this time')
    .option('--db-user <role>', 'database role: the session user or the role in effect')
    .option('--app-user <id>', 'application user (app.user_id)')
    .option('--customer <id>', 'customer (app.customer_id)')
    .option('--table <name>', 'schema.table, or a table name in any schema')
    .option('--row-id <key>', "the protected row's key")
    .option('--action <action...>', `${ACTIONS.join(', ')} (repeat or comma-separate)`)
    .addOption(new Option('--outcome <outcome>', 'success, or failure (denied)').choices(['success', 'failure']))
    .addOption(
      new Option('--source <source>', 'trigger (writes), pgaudit (statements: reads, denials) or row-read (each row read, protect --reads rows|both)').choices([
        'trigger',
        'pgaudit',
        'row-read',
      ]),
    )
    .addOption(
      new Option('--format <format>', 'table for people; csv or json (lines) for tools; the verification summary goes to stderr for csv/json')
        .choices(['table', 'csv', 'json'])
        .default('table'),
    )
    .option('--evidence <dir>', 'also write an evidence package to this new directory (check it with verify-evidence)')
    .option('--max-commit-delay <duration>', 'files are filed by commit date: look this far past --to for events committed late', '1d')
    .action(async (raw, cmd: Command) => {
      const cfg = validate(
        settingsSchema('archive', 'verifyKey', 's3ForcePathStyle', 'workers').extend({
          from: time().optional(),
          to: time().optional(),
          dbUser: z.string().optional(),
          appUser: z.string().optional(),
          customer: z.string().optional(),
          table: z.string().optional(),
          rowId: z.string().optional(),
          action: list.transform((a) => a.map((s) => s.toUpperCase())),
          outcome: z.enum(['success', 'failure']).optional(),
          source: z.enum(['trigger', 'pgaudit', 'row-read']).optional(),
          format: z.enum(['table', 'csv', 'json']),
          evidence: z.string().optional(),
          maxCommitDelay: durationMs(),
        }),
        raw,
        cmd,
      );
      const unknown = cfg.action.filter((a) => !ACTIONS.includes(a));
      if (unknown.length) throw new ConfigError(`--action ${unknown.join(',')} is not an audited action: use ${ACTIONS.join(', ')}`);
      if (cfg.from && cfg.to && cfg.from >= cfg.to) throw new ConfigError(`--from ${cfg.from} is not before --to ${cfg.to}`);
      const delay = cfg.maxCommitDelay;
      const keys = await verifyKeysFrom(cfg.verifyKey);
      if (keys.length === 0) throw new ConfigError('--verify-key (AUDIT_VERIFY_KEY) is required: query shows only records of files signed by these keys');
      const query: Query = {
        from: cfg.from ?? null,
        to: cfg.to ?? null,
        dbUser: cfg.dbUser ?? null,
        appUser: cfg.appUser ?? null,
        customer: cfg.customer ?? null,
        table: cfg.table ?? null,
        rowId: cfg.rowId ?? null,
        actions: cfg.action,
        outcome: cfg.outcome ?? null,
        source: cfg.source ?? null,
      };
      const archive = openArchiveReader(cfg.archive, cfg.s3ForcePathStyle);
      const evidence = cfg.evidence ? await EvidenceWriter.create(cfg.evidence) : null;
      const out = (s: string): void => {
        process.stdout.write(s);
      };
      const { report, summary } = await answerQuery(archive, {
        keys,
        query,
        format: cfg.format as Format,
        maxCommitDelayMs: delay,
        write: out,
        evidence,
        workers: cfg.workers,
        // Rows go to a pipe as fast as files are read; a reader slower than that (gzip, a network)
        // filled memory instead, the writes queueing (250k rows to a reader 3 s late: 880 MiB).
        drained: () => (process.stdout.writableNeedDrain ? once(process.stdout, 'drain').then(() => undefined) : Promise.resolve()),
      });
      if (cfg.format === 'table') out(`\n${summary}`);
      else process.stderr.write(summary);
      if (evidence) {
        await evidence.finish(
          {
            archive: archive.location,
            created_at: new Date().toISOString(),
            tool_version: VERSION,
            query,
            question: `${describe(query)} (pg-audit-shipper ${commandLine(cmd)})`,
            searched: searchedOf(report),
          },
          keys,
          summary,
        );
        (cfg.format === 'table' ? process.stdout : process.stderr).write(
          `evidence: ${evidence.dir} (check it with: pg-audit-shipper verify-evidence ${evidence.dir})\n`,
        );
      }
      if (report.findings.length > 0)
        throw new FindingsError(`${report.findings.length} problem${report.findings.length === 1 ? '' : 's'} in the files searched: see above`);
    });

  program
    .command('verify-evidence')
    .summary('check an evidence package offline: records exactly as archived, signed, none left out')
    .description('check an evidence package offline: records exactly as archived, signed, none left out\n' + 'exit 0 verified, 1 it is not, 2 could not run')
    .argument('<dir>', 'the package directory (written by query --evidence)')
    .addOption(settingOption('verifyKey', "the archive owner's public key(s), obtained independently (default: the package's own, with a warning)"))
    .addOption(settingOption('json'))
    .action(async (dir: string, raw, cmd: Command) => {
      const cfg = validate(settingsSchema('verifyKey', 'json'), raw, cmd);
      const keys = await verifyKeysFrom(cfg.verifyKey);
      const report = await checkEvidence(dir, keys);
      if (!report.query && report.findings.some((f) => f.code === 'no-checksums')) {
        throw new ConfigError(`${dir} is not an evidence package (no SHA256SUMS, no query.json)`);
      }
      process.stdout.write(cfg.json ? `${JSON.stringify(report, null, 2)}\n` : evidenceText(report));
      if (report.findings.length > 0) throw new FindingsError(`${report.findings.length} problem${report.findings.length === 1 ? '' : 's'} in ${dir}`);
    });
}

/** The options as given (values quoted when needed), for the package's record of the question. */
function commandLine(cmd: Command): string {
  const parts: string[] = ['query'];
  for (const o of cmd.options) {
    const name = o.attributeName();
    if (['verifyKey', 's3ForcePathStyle', 'evidence', 'format'].includes(name)) continue;
    const src = cmd.getOptionValueSource(name);
    if (src !== 'cli' && src !== 'env') continue;
    const v = cmd.getOptionValue(name) as unknown;
    for (const one of Array.isArray(v) ? v : [v])
      parts.push(typeof one === 'boolean' ? o.long! : `${o.long} ${/^[\w.:@/+-]+$/.test(String(one)) ? one : JSON.stringify(one)}`);
  }
  return parts.join(' ');
}
