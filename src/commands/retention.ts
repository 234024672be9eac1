import { Option, type Command } from 'commander';
import { z } from 'zod';
import { settingOption, settingsSchema, validate } from '../config.js';
import { ConfigError } from '../errors.js';
import { openArchiveReader } from '../sink/open.js';
import { extendRetention, inRange, objectsOf } from '../sink/s3/extend.js';
import { verifyChain } from '../verify/chain.js';
import { verifyKeysFrom } from './archive-options.js';

export function registerRetentionCommand(program: Command): void {
  const retention = program.command('retention').description('manage how long archived files are kept (S3 Object Lock)');
  retention
    .command('extend')
    .description('keep the files of a time range longer (--until) or under legal hold; never shortens')
    .addOption(settingOption('archive'))
    .addOption(settingOption('verifyKey'))
    .option('--from <time>', 'first event time of the range (ISO 8601; default: the beginning)')
    .option('--to <time>', 'last event time of the range (ISO 8601; default: now)')
    .option('--until <date>', 'new retain-until date (ISO 8601), later than the current one')
    .addOption(new Option('--legal-hold <on|off>', 'place or lift a legal hold (litigation)').choices(['on', 'off']))
    .addOption(settingOption('s3ForcePathStyle'))
    .action(async (raw, cmd: Command) => {
      const date = () => z.string().refine((v) => !Number.isNaN(Date.parse(v)), 'takes an ISO 8601 date or time');
      const cfg = validate(
        settingsSchema('archive', 'verifyKey', 's3ForcePathStyle').extend({
          from: date().optional(),
          to: date().optional(),
          until: date().optional(),
          legalHold: z.enum(['on', 'off']).optional(),
        }),
        raw,
        cmd,
      );
      if (!cfg.until && !cfg.legalHold) throw new ConfigError('say what to change: --until DATE and/or --legal-hold on|off');
      const archive = openArchiveReader(cfg.archive, cfg.s3ForcePathStyle);
      if (!archive.bucket) throw new ConfigError('retention extend works on s3:// archives: a local directory has no Object Lock');
      const { client, bucket, prefix } = archive.bucket;
      const until = cfg.until ? new Date(cfg.until) : undefined;
      if (until && until.getTime() <= Date.now()) throw new ConfigError(`--until ${cfg.until} is not in the future`);
      const keys = await verifyKeysFrom(cfg.verifyKey);
      if (keys.length === 0) throw new ConfigError('--verify-key (AUDIT_VERIFY_KEY) is required: only files of a verified chain are touched');
      // Walk the signed digests (not the data) to find the range's files.
      const inRangeKeys: string[] = [];
      const chain = await verifyChain(archive.reader, {
        keys: new Map(keys.map((k) => [k.keyId, k])),
        fullFrom: Number.MAX_SAFE_INTEGER,
        onDigest: (d) => {
          if (inRange(d, cfg.from ?? null, cfg.to ?? null)) inRangeKeys.push(...objectsOf(d));
        },
      });
      if (chain.findings.length > 0) {
        throw new ConfigError(`the archive's digest chain has ${chain.findings.length} problems (run \`verify\`); refusing to pick files from it`);
      }
      // A delivery stream's file is no object of its own (firehose://STREAM/N): its lines are in the
      // objects the stream delivered, which are what must be locked longer.
      // (in sequence order, one at a time: the stream reader walks forward)
      const selected = new Set<string>();
      for (const k of inRangeKeys) for (const o of await archive.bucket.reader.storedObjects(k)) selected.add(o);
      const r = await extendRetention(client, bucket, prefix, [...selected], {
        ...(until ? { until } : {}),
        ...(cfg.legalHold ? { legalHold: cfg.legalHold === 'on' ? ('ON' as const) : ('OFF' as const) } : {}),
      });
      process.stdout.write(
        `${r.objects} objects in range: ${until ? `${r.extended} now retained until ${until.toISOString()}, ${r.alreadyLonger} already retained longer` : ''}` +
          `${cfg.legalHold ? `${until ? '; ' : ''}legal hold ${cfg.legalHold} on ${r.held}` : ''}\n`,
      );
    });
}
