import type { Command } from 'commander';
import { settingOption, settingsSchema, validate } from '../config.js';
import { connect } from '../db.js';
import { ConfigError, FindingsError } from '../errors.js';
import { openArchiveReader, parseRetention } from '../sink/open.js';
import { verifyArchive } from '../verify/archive.js';
import { checkAgainstDatabase, checkHeadAge } from '../verify/completeness.js';
import { toJson, toText, type VerifyResult } from '../verify/report.js';
import { checkS3Storage, type StorageReport } from '../verify/storage-s3.js';
import { verifyKeysFrom } from './archive-options.js';
import { readState, sampleOf, writeState } from '../verify/state.js';
import { digestKey } from '../sink/keys.js';
import { sha256Hex } from '../seal/digest.js';

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
    .addOption(settingOption('workers'))
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
          'workers',
          'json',
        ).partial({ databaseUrl: true }),
        raw,
        cmd,
      );
      const { start, expectHead, maxHeadAge: maxHeadAgeMs } = cfg;
      const keys = await verifyKeysFrom(cfg.verifyKey);
      if (keys.length === 0) throw new ConfigError('--verify-key (AUDIT_VERIFY_KEY) is required: the public key(s) the archive is signed with');
      const minimum = parseRetention(cfg.minRetention, cfg.allowShortRetention === true);

      const archive = openArchiveReader(cfg.archive, cfg.s3ForcePathStyle);
      const s3 = archive.bucket;
      const storage = async (): Promise<StorageReport | null> => (s3 ? checkS3Storage(s3.client, s3.bucket, s3.prefix, minimum) : null);

      const trusted = cfg.state && !cfg.full ? await readState(cfg.state, archive.location) : null;
      const verdict = await verifyArchive(archive.reader, {
        keys: new Map(keys.map((k) => [k.keyId, k])),
        workers: cfg.workers,
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
        ...(trusted
          ? {
              trusted: { fileSeq: trusted.file_seq, digestSha256: trusted.digest_sha256 },
              fullFrom: trusted.file_seq + 1,
              sample: sampleOf(trusted.file_seq, cfg.sample),
            }
          : {}),
      });
      const chain = verdict.chain;
      const findings = [...verdict.findings, ...checkHeadAge(chain.head, { maxHeadAgeMs })];
      const storageReport = await storage();
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
        archive: archive.location,
        chain,
        storage: storageReport,
        comparedWithDatabase: Boolean(cfg.databaseUrl),
        findings,
        acknowledged: verdict.acknowledged,
        notes: [...verdict.notes, ...(storageReport?.notes ?? [])],
      };
      process.stdout.write(cfg.json ? toJson(result) : toText(result));
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
}
