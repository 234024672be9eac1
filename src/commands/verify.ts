import { Option, type Command } from 'commander';
import { z } from 'zod';
import { postgresUrl, settingOption, validate, wholeNumber, s3ForcePathStyleOption, yesNo } from '../config.js';
import { connect } from '../db.js';
import { parseDuration } from '../duration.js';
import { ConfigError, FindingsError } from '../errors.js';
import { fileArchivePath, openArchiveReader, parseRetention } from '../sink/open.js';
import { fileArchive } from '../sink/file/file-archive.js';
import { parseS3Url, s3ArchiveReader, s3Client } from '../sink/s3/s3-archive.js';
import type { Archive } from '../sink/sink.js';
import { parseExpectedHead } from '../verify/chain.js';
import { verifyArchive } from '../verify/archive.js';
import { checkAgainstDatabase, checkHeadAge } from '../verify/completeness.js';
import { toJson, toText, type VerifyResult } from '../verify/report.js';
import { checkS3Storage, type StorageReport } from '../verify/storage-s3.js';
import { verifyKeysFrom } from './archive-options.js';
import { readState, sampleOf, writeState } from '../verify/state.js';
import { digestKey } from '../sink/keys.js';
import { sha256Hex } from '../seal/digest.js';

export function registerVerifyCommand(program: Command): void {
  program.command('verify')
    .description('prove the archive is complete, unaltered and locked: exit 0 intact, 1 findings, 2 could not run')
    .addOption(settingOption('archive', 'url'))
    .addOption(settingOption('verifyKey'))
    .addOption(new Option('--database-url <url>', "compare the archive head with the head the shipper recorded (optional)").env('DATABASE_URL'))
    .addOption(settingOption('slot'))
    .addOption(new Option('--max-head-age <duration>', 'the newest digest must be younger (heartbeats keep it fresh)').default('2h'))
    .addOption(new Option('--min-retention <span>', 'every object must be locked at least this long past its creation').default('6y'))
    .addOption(new Option('--allow-short-retention', 'accept --min-retention under six years (tests and trials)'))
    .addOption(s3ForcePathStyleOption())
    .addOption(new Option('--state <file>', 'incremental: remember the verified head here; later runs read only new files and a sample of older ones').env('AUDIT_VERIFY_STATE'))
    .addOption(new Option('--sample <n>', 'with --state: older files re-read at random each run').default('20'))
    .addOption(new Option('--expect-head <seq:sha256>', 'a head an earlier report printed: the archive must still hold that digest, unchanged (catches a cut tail)').env('AUDIT_EXPECT_HEAD'))
    .addOption(new Option('--start <seq:sha256>', 'when the oldest files have expired: a digest an earlier report printed, taken as proven; the walk starts there'))
    .option('--full', 'read every file, whatever --state says')
    .option('--json', 'machine-readable report on stdout')
    .action(async (raw, cmd: Command) => {
      const cfg = validate(z.object({
        archive: z.string().min(1),
        verifyKey: z.union([z.array(z.string()), z.string()]).optional(),
        databaseUrl: postgresUrl.optional(),
        slot: z.string().min(1),
        maxHeadAge: z.string(),
        minRetention: z.string(),
        allowShortRetention: z.boolean().optional(),
        s3ForcePathStyle: yesNo,
        json: z.boolean().optional(),
        state: z.string().optional(),
        sample: wholeNumber('--sample', 0),
        full: z.boolean().optional(),
        expectHead: z.string().optional(),
        start: z.string().optional(),
      }), raw, cmd);
      const start = cfg.start === undefined ? undefined : parseExpectedHead(cfg.start);
      if (start === null) throw new ConfigError(`--start takes SEQ:SHA256 as a report's "Head:" line prints it, not ${JSON.stringify(cfg.start)}`);
      const expectHead = cfg.expectHead === undefined ? undefined : parseExpectedHead(cfg.expectHead);
      if (expectHead === null) {
        throw new ConfigError(`--expect-head (AUDIT_EXPECT_HEAD) takes SEQ:SHA256 as a report's "Head:" line prints it, not ${JSON.stringify(cfg.expectHead)}`);
      }
      const keys = await verifyKeysFrom(cfg.verifyKey);
      if (keys.length === 0) throw new ConfigError('--verify-key (AUDIT_VERIFY_KEY) is required: the public key(s) the archive is signed with');
      const maxHeadAgeMs = parseDuration(cfg.maxHeadAge);
      if (!maxHeadAgeMs) throw new ConfigError(`--max-head-age ${cfg.maxHeadAge} is invalid: use a duration such as 2h`);
      const minimum = parseRetention(cfg.minRetention, cfg.allowShortRetention === true);

      let archive: Pick<Archive, 'location' | 'reader'>;
      let storage: () => Promise<StorageReport | null> = async () => null;
      if (cfg.archive.startsWith('s3://')) {
        const { bucket, prefix } = parseS3Url(cfg.archive);
        const client = s3Client(cfg.s3ForcePathStyle);
        archive = s3ArchiveReader(client, bucket, prefix);
        storage = () => checkS3Storage(client, bucket, prefix, minimum);
      } else if (cfg.archive.startsWith('file://')) {
        archive = fileArchive(fileArchivePath(cfg.archive));
      } else {
        // A delivery stream's archive is read from its bucket; openArchiveReader says how.
        archive = openArchiveReader(cfg.archive, cfg.s3ForcePathStyle);
      }

      const trusted = cfg.state && !cfg.full ? await readState(cfg.state, archive.location) : null;
      const verdict = await verifyArchive(archive.reader, {
        keys: new Map(keys.map((k) => [k.keyId, k])),
        ...(expectHead ? { expectHead } : {}),
        ...(start ? { start } : {}),
        // Progress only for a person at a terminal; logs and pipes get the report alone.
        ...(process.stderr.isTTY ? { onProgress: (done: number, total: number) => {
          if (done === total || done % 25 === 0) process.stderr.write(`\rverifying file ${done}/${total}${done === total ? '\n' : ''}`);
        } } : {}),
        ...(trusted ? {
          trusted: { fileSeq: trusted.file_seq, digestSha256: trusted.digest_sha256 },
          fullFrom: trusted.file_seq + 1,
          sample: sampleOf(trusted.file_seq, cfg.sample),
        } : {}),
      });
      const chain = verdict.chain;
      const findings = [...verdict.findings, ...checkHeadAge(chain.head, { maxHeadAgeMs })];
      const storageReport = await storage();
      if (storageReport) findings.push(...storageReport.findings);
      if (cfg.databaseUrl) {
        const client = await connect(cfg.databaseUrl, 'pg-audit-shipper verify');
        try {
          findings.push(...await checkAgainstDatabase(client, cfg.slot, chain.head));
        } finally {
          await client.end();
        }
      }
      const result: VerifyResult = {
        archive: archive.location, chain, storage: storageReport, comparedWithDatabase: Boolean(cfg.databaseUrl),
        findings, acknowledged: verdict.acknowledged,
        notes: [...verdict.notes, ...storageReport?.notes ?? []],
      };
      process.stdout.write(cfg.json ? toJson(result) : toText(result));
      if (cfg.state && findings.length === 0 && chain.head) {
        const bytes = await archive.reader.get(digestKey(chain.head.file_seq));
        await writeState(cfg.state, { archive: archive.location, file_seq: chain.head.file_seq,
          digest_sha256: sha256Hex(bytes!), verified_at: new Date().toISOString() });
      }
      if (findings.length > 0) throw new FindingsError(`${findings.length} problem${findings.length === 1 ? '' : 's'} found in ${archive.location}`);
    });
}
