import { Option, type Command } from 'commander';
import { z } from 'zod';
import { loadVerifyKey, type VerifyKey } from '../seal/keys.js';
import { openArchive, parseRetention } from '../sink/open.js';
import type { Archive } from '../sink/sink.js';
import { settingOption, s3ForcePathStyleOption, yesNo } from '../config.js';

/** Options every command that reads or writes an archive shares. */
export function addArchiveOptions(cmd: Command): Command {
  return cmd
    .addOption(settingOption('archive', 'url'))
    .addOption(s3ForcePathStyleOption())
    .addOption(new Option('--s3-sse <mode>', 'server-side encryption of new objects').choices(['AES256', 'aws:kms', 'none'])
      .default('AES256').env('AUDIT_S3_SSE'))
    .addOption(new Option('--s3-kms-key-id <id>', 'KMS key for --s3-sse aws:kms').env('AUDIT_S3_KMS_KEY_ID'))
    .addOption(new Option('--retention <span>', 'Object Lock retention of each object: years (6y) or days').default('6y')
      .env('AUDIT_RETENTION'))
    .addOption(new Option('--allow-short-retention', 'accept a retention under six years (tests and trials only)'));
}

export const archiveSchema = z.object({
  archive: z.string().min(1),
  s3ForcePathStyle: yesNo,
  s3Sse: z.enum(['AES256', 'aws:kms', 'none']),
  s3KmsKeyId: z.string().optional(),
  retention: z.string(),
  allowShortRetention: z.boolean().optional(),
});

export async function archiveFrom(cfg: z.infer<typeof archiveSchema>, checkBucket = true,
  onStreamRetry?: (refused: number, code: string) => void): Promise<Archive> {
  return openArchive(cfg.archive, {
    ...(onStreamRetry ? { onStreamRetry } : {}),
    forcePathStyle: cfg.s3ForcePathStyle,
    sse: cfg.s3Sse,
    ...(cfg.s3KmsKeyId ? { kmsKeyId: cfg.s3KmsKeyId } : {}),
    retention: parseRetention(cfg.retention, cfg.allowShortRetention === true),
  }, checkBucket);
}

/** --verify-key is repeatable; AUDIT_VERIFY_KEY holds a comma-separated list. */
export async function verifyKeysFrom(flag: string[] | string | undefined): Promise<VerifyKey[]> {
  const files = (Array.isArray(flag) ? flag : flag ? flag.split(',') : []).map((f) => f.trim()).filter(Boolean);
  return Promise.all(files.map(loadVerifyKey));
}
