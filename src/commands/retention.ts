import { Option, type Command } from 'commander';
import { z } from 'zod';
import { settingOption, validate, s3ForcePathStyleOption, yesNo } from '../config.js';
import { ConfigError } from '../errors.js';
import { parseS3Url, s3ArchiveReader, s3Client } from '../sink/s3/s3-archive.js';
import { extendRetention, inRange, objectsOf } from '../sink/s3/extend.js';
import { verifyChain } from '../verify/chain.js';
import { verifyKeysFrom } from './archive-options.js';

export function registerRetentionCommand(program: Command): void {
  const retention = program.command('retention').description('manage how long archived files are kept (S3 Object Lock)');
  retention.command('extend')
    .description('keep the files of a time range longer (--until) or under legal hold; never shortens')
    .addOption(settingOption('archive', 'url'))
    .addOption(settingOption('verifyKey'))
    .option('--from <time>', 'first event time of the range (ISO 8601; default: the beginning)')
    .option('--to <time>', 'last event time of the range (ISO 8601; default: now)')
    .option('--until <date>', 'new retain-until date (ISO 8601), later than the current one')
    .addOption(new Option('--legal-hold <on|off>', 'place or lift a legal hold (litigation)').choices(['on', 'off']))
    .addOption(s3ForcePathStyleOption())
    .action(async (raw, cmd: Command) => {
      const date = (flag: string) => z.string().refine((v) => !Number.isNaN(Date.parse(v)), `${flag} takes an ISO 8601 date or time`);
      const cfg = validate(z.object({
        archive: z.string().min(1),
        verifyKey: z.union([z.array(z.string()), z.string()]).optional(),
        from: date('--from').optional(),
        to: date('--to').optional(),
        until: date('--until').optional(),
        legalHold: z.enum(['on', 'off']).optional(),
        s3ForcePathStyle: yesNo,
      }), raw, cmd);
      if (!cfg.until && !cfg.legalHold) throw new ConfigError('say what to change: --until DATE and/or --legal-hold on|off');
      if (!cfg.archive.startsWith('s3://')) throw new ConfigError('retention extend works on s3:// archives: a local directory has no Object Lock');
      const until = cfg.until ? new Date(cfg.until) : undefined;
      if (until && until.getTime() <= Date.now()) throw new ConfigError(`--until ${cfg.until} is not in the future`);
      const keys = await verifyKeysFrom(cfg.verifyKey);
      if (keys.length === 0) throw new ConfigError('--verify-key (AUDIT_VERIFY_KEY) is required: only files of a verified chain are touched');
      const { bucket, prefix } = parseS3Url(cfg.archive);
      const client = s3Client(cfg.s3ForcePathStyle);
      const archive = s3ArchiveReader(client, bucket, prefix);
      // Walk the signed digests (not the data) to find the range's files.
      const inRangeKeys: string[] = [];
      const chain = await verifyChain(archive.reader, {
        keys: new Map(keys.map((k) => [k.keyId, k])), fullFrom: Number.MAX_SAFE_INTEGER,
        onDigest: (d) => { if (inRange(d, cfg.from ?? null, cfg.to ?? null)) inRangeKeys.push(...objectsOf(d)); },
      });
      if (chain.findings.length > 0) {
        throw new ConfigError(`the archive's digest chain has ${chain.findings.length} problems (run \`verify\`); refusing to pick files from it`);
      }
      // A delivery stream's file is no object of its own (firehose://STREAM/N): its lines are in the
      // objects the stream delivered, which are what must be locked longer.
      // (in sequence order, one at a time: the stream reader walks forward)
      const selected = new Set<string>();
      for (const k of inRangeKeys) for (const o of await archive.reader.storedObjects(k)) selected.add(o);
      const r = await extendRetention(client, bucket, prefix, [...selected], {
        ...(until ? { until } : {}), ...(cfg.legalHold ? { legalHold: cfg.legalHold === 'on' ? 'ON' as const : 'OFF' as const } : {}),
      });
      process.stdout.write(`${r.objects} objects in range: ${until ? `${r.extended} now retained until ${until.toISOString()}, ${r.alreadyLonger} already retained longer` : ''}` +
        `${cfg.legalHold ? `${until ? '; ' : ''}legal hold ${cfg.legalHold} on ${r.held}` : ''}\n`);
    });
}
