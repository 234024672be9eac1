import type { Command } from 'commander';
import { settingOption, settingsSchema, validate } from '../config.js';
import { connect } from '../db.js';
import { ConfigError, FindingsError } from '../errors.js';
import { openArchiveReader, parseRetention } from '../sink/open.js';
import { verifyArchive, type ArchiveVerdict } from '../verify/archive.js';
import { checkAgainstDatabase, checkHeadAge } from '../verify/completeness.js';
import { toJson, toText, type VerifyResult } from '../verify/report.js';
import { checkS3Storage, type StorageReport } from '../verify/storage-s3.js';
import { verifyKeysFrom } from './archive-options.js';
import { readState, sampleOf, writeState } from '../verify/state.js';
import { digestKey } from '../sink/keys.js';
import { sha256Hex } from '../seal/digest.js';
import { readFile, writeFile } from 'node:fs/promises';
import { BLOCK_FILES, mergeShards, verifyShard } from '../verify/shards.js';
import type { Finding } from '../verify/findings.js';
import type pg from 'pg';
import type { ArchivedIds } from '../verify/file-check.js';
import { Reconciliation } from '../verify/reconcile.js';
import { IdSet } from '../ship/id-set.js';
import { formatLsn } from '../source/lsn.js';

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description('prove the archive is complete, unaltered and locked: exit 0 intact, 1 findings, 2 could not run')
    .addOption(settingOption('archive'))
    .addOption(settingOption('verifyKey'))
    .addOption(settingOption('databaseUrl', 'compare the archive head with the head the shipper recorded (optional)'))
    .addOption(settingOption('slot'))
    .addOption(settingOption('maxHeadAge'))
    .addOption(settingOption('minRetention'))
    .addOption(settingOption('allowShortRetention', 'accept --min-retention under six years (tests and trials)'))
    .addOption(settingOption('s3ForcePathStyle'))
    .addOption(settingOption('state'))
    .addOption(settingOption('sample'))
    .addOption(settingOption('expectHead'))
    .addOption(settingOption('start'))
    .addOption(settingOption('full'))
    .addOption(settingOption('reconcile'))
    .addOption(settingOption('reconcileWait'))
    .addOption(settingOption('workers'))
    .addOption(settingOption('through'))
    .addOption(settingOption('shard'))
    .addOption(settingOption('shardReport'))
    .addOption(settingOption('json'))
    .action(async (raw, cmd: Command) => {
      const cfg = validate(
        settingsSchema(
          'archive',
          'verifyKey',
          'databaseUrl',
          'slot',
          'maxHeadAge',
          'minRetention',
          'allowShortRetention',
          's3ForcePathStyle',
          'state',
          'sample',
          'expectHead',
          'start',
          'full',
          'reconcile',
          'reconcileWait',
          'workers',
          'through',
          'shard',
          'shardReport',
          'json',
        ).partial({ databaseUrl: true }),
        raw,
        cmd,
      );
      const { start, expectHead } = cfg;
      const keys = await verifyKeysFrom(cfg.verifyKey);
      if (keys.length === 0) throw new ConfigError('--verify-key (AUDIT_VERIFY_KEY) is required: the public key(s) the archive is signed with');
      const minimum = parseRetention(cfg.minRetention, cfg.allowShortRetention === true);

      if (cfg.through && cfg.databaseUrl) {
        throw new ConfigError(
          '--through and --database-url (DATABASE_URL) do not go together: the database knows the head now, not at the cut; compare with it in a run without --through',
        );
      }
      if (cfg.shardReport && !cfg.shard) throw new ConfigError('--shard-report (AUDIT_VERIFY_SHARD_REPORT) is for shard runs: give --shard I/N too');
      if (cfg.shard && (cfg.state || cfg.databaseUrl)) {
        throw new ConfigError(
          '--shard checks every file of its shard and leaves the verdict to verify-merge: it takes neither --state nor --database-url (give --database-url to verify-merge)',
        );
      }
      if (cfg.reconcile) {
        if (!cfg.databaseUrl) throw new ConfigError('--reconcile compares the archive with audit_log: give --database-url (DATABASE_URL) too');
        if (cfg.shard || cfg.through || cfg.start || (cfg.state && !cfg.full)) {
          throw new ConfigError(
            '--reconcile needs every audit_log id the archive holds, so a walk of every file from the first: it takes no --shard, --through or --start, and --state only with --full',
          );
        }
      }
      const archive = openArchiveReader(cfg.archive, cfg.s3ForcePathStyle);
      const s3 = archive.bucket;
      const storage = async (): Promise<StorageReport | null> => (s3 ? checkS3Storage(s3.client, s3.bucket, s3.prefix, minimum) : null);
      const common = {
        keys: new Map(keys.map((k) => [k.keyId, k])),
        workers: cfg.workers,
        ...(cfg.through ? { through: cfg.through } : {}),
        ...(expectHead ? { expectHead } : {}),
        ...(start ? { start } : {}),
        // Progress only for a person at a terminal; logs and pipes get the report alone.
        ...(process.stderr.isTTY
          ? {
              onProgress: (done: number, total: number) => {
                if (done === total || done % 25 === 0) process.stderr.write(`\rverifying file ${done}/${total}${done === total ? '\n' : ''}`);
              },
            }
          : {}),
      };

      if (cfg.shard) {
        const shard = { ...cfg.shard, blockFiles: BLOCK_FILES };
        const report = await verifyShard(archive.reader, archive.location, { ...common, shard });
        // The locks of the whole bucket are read by shard 0 alone (one listing of every version).
        if (shard.index === 0) report.storage = await storage();
        const text = `${JSON.stringify(report)}\n`;
        if (cfg.shardReport) await writeFile(cfg.shardReport, text);
        else process.stdout.write(text);
        const read = report.blocks.reduce((n, b) => n + b.files_read, 0);
        process.stderr.write(
          `shard ${shard.index}/${shard.count}: files ${report.frame.first_seq}-${report.frame.last_seq} of the archive, ${report.blocks.length} block${report.blocks.length === 1 ? '' : 's'} of ${shard.blockFiles} its own, ` +
            `${read} data files read; the verdict is verify-merge's${cfg.shardReport ? ` (report: ${cfg.shardReport})` : ''}\n`,
        );
        return;
      }

      const trusted = cfg.state && !cfg.full ? await readState(cfg.state, archive.location) : null;
      // --reconcile: the database's ids first, then (once the shipper stored everything committed
      // before that) the archive's, collected as the walk reads each file.
      const reconciling = cfg.reconcile ? await beginReconciliation(cfg.databaseUrl!, cfg.slot, cfg.reconcileWait) : null;
      const archived = new IdSet();
      const verdict = await verifyArchive(archive.reader, {
        ...common,
        ...(reconciling
          ? {
              onArchivedIds: (ids: ArchivedIds) => {
                for (let i = 0; i < ids.runs.length; i += 2) archived.addRun(ids.runs[i]!, ids.runs[i + 1]!);
                for (const t of ids.text) archived.add(t);
              },
            }
          : {}),
        ...(trusted
          ? {
              trusted: { fileSeq: trusted.file_seq, digestSha256: trusted.digest_sha256 },
              fullFrom: trusted.file_seq + 1,
              sample: sampleOf(trusted.file_seq, cfg.sample),
            }
          : {}),
      });
      const chain = verdict.chain;
      if (reconciling) {
        try {
          if (chain.head && chain.head.slot !== cfg.slot) {
            throw new ConfigError(
              `--reconcile: --slot (AUDIT_SLOT) is ${cfg.slot}, but ${archive.location} is shipped from slot ${chain.head.slot}: name that one`,
            );
          }
          const { findings, missing } = await reconciling.reconciliation.findings(archived);
          verdict.findings.push(...findings);
          const { rows, position } = reconciling.reconciliation;
          verdict.notes.push({
            code: 'reconciled',
            where: 'audit.audit_log',
            message: `${rows} rows committed before ${formatLsn(position)}: ${missing === 0 ? 'every one archived' : `${missing} not archived`}`,
            detail: { rows, missing, position: formatLsn(position) },
          });
        } finally {
          await reconciling.client.end();
        }
      }
      const { findings } = await conclude(archive.location, verdict, await storage(), cfg);
      if (cfg.state && findings.length === 0 && chain.head) {
        const bytes = await archive.reader.get(digestKey(chain.head.file_seq));
        await writeState(cfg.state, {
          archive: archive.location,
          file_seq: chain.head.file_seq,
          digest_sha256: sha256Hex(bytes!),
          verified_at: new Date().toISOString(),
        });
      }
      if (findings.length > 0) throw new FindingsError(`${findings.length} problem${findings.length === 1 ? '' : 's'} found in ${archive.location}`);
    });

  program
    .command('verify-merge')
    .description(
      'join the reports of verify --shard I/N runs into one verdict: exit 0 intact, 1 findings, 2 could not run (a shard missing, twice, or of another archive)',
    )
    .argument('<reports...>', 'the shard reports (files written by --shard-report, or saved from stdout), all N of them')
    .addOption(settingOption('databaseUrl', 'compare the archive head with the head the shipper recorded (optional)'))
    .addOption(settingOption('slot'))
    .addOption(settingOption('maxHeadAge'))
    .addOption(settingOption('json'))
    .action(async (files: string[], raw, cmd: Command) => {
      const cfg = validate(settingsSchema('databaseUrl', 'slot', 'maxHeadAge', 'json').partial({ databaseUrl: true }), raw, cmd);
      const reports: unknown[] = [];
      for (const f of files) {
        let text: string;
        try {
          text = await readFile(f, 'utf8');
        } catch (err) {
          throw new ConfigError(`verify-merge: cannot read shard report ${f} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
        }
        try {
          reports.push(JSON.parse(text));
        } catch {
          throw new ConfigError(`verify-merge: ${f} is not JSON: a shard report is what verify --shard I/N writes`);
        }
      }
      const merged = mergeShards(reports);
      if (merged.verdict.chain.cut !== null && cfg.databaseUrl) {
        throw new ConfigError(
          '--database-url (DATABASE_URL): the shards were cut with --through, and the database knows the head now, not at the cut; compare in a run without --through',
        );
      }
      const { findings } = await conclude(merged.archive, merged.verdict, merged.storage, cfg);
      if (findings.length > 0)
        throw new FindingsError(`${findings.length} problem${findings.length === 1 ? '' : 's'} found in ${merged.archive} (${merged.shards} shards)`);
    });
}

/**
 * What verify and verify-merge add to the archive's own verdict, and the report they print: the
 * head's age by the clock, the storage's locks, and the head the database remembers.
 */
async function conclude(
  archive: string,
  verdict: ArchiveVerdict,
  storageReport: StorageReport | null,
  cfg: { maxHeadAge: number; databaseUrl?: string | undefined; slot: string; json?: boolean | undefined },
): Promise<{ findings: Finding[] }> {
  const chain = verdict.chain;
  const findings = [...verdict.findings, ...checkHeadAge(chain.head, { maxHeadAgeMs: cfg.maxHeadAge })];
  if (storageReport) findings.push(...storageReport.findings);
  if (cfg.databaseUrl) {
    const client = await connect(cfg.databaseUrl, 'pg-audit-shipper verify');
    try {
      findings.push(...(await checkAgainstDatabase(client, cfg.slot, chain.head)));
    } finally {
      await client.end();
    }
  }
  const result: VerifyResult = {
    archive,
    chain,
    storage: storageReport,
    comparedWithDatabase: Boolean(cfg.databaseUrl),
    findings,
    acknowledged: verdict.acknowledged,
    notes: [...verdict.notes, ...(storageReport?.notes ?? [])],
  };
  process.stdout.write(cfg.json ? toJson(result) : toText(result));
  return { findings };
}

/** Connect and collect what --reconcile compares with the archive (see src/verify/reconcile.ts). */
async function beginReconciliation(url: string, slot: string, waitMs: number): Promise<{ reconciliation: Reconciliation; client: pg.Client }> {
  const client = await connect(url, 'pg-audit-shipper verify');
  try {
    let said = false;
    const r = await Reconciliation.begin(client, slot, waitMs, (confirmed, needed) => {
      if (said) return;
      said = true;
      process.stderr.write(
        `reconciling: waiting for slot ${slot} to be confirmed past ${formatLsn(needed)} (it is at ${confirmed === null ? 'nothing' : formatLsn(confirmed)})\n`,
      );
    });
    return { reconciliation: r, client };
  } catch (err) {
    await client.end();
    throw err;
  }
}
