import type { Command } from 'commander';
import type { z } from 'zod';
import { loadVerifyKey, type VerifyKey } from '../seal/keys.js';
import { openArchive, parseRetention, type LockChecks } from '../sink/open.js';
import type { Archive } from '../sink/sink.js';
import { addSettings, settingsSchema } from '../config.js';

/** Settings every command that reads or writes an archive shares. */
export const ARCHIVE_SETTINGS = ['archive', 's3ForcePathStyle', 's3Sse', 's3KmsKeyId', 'retention', 'allowShortRetention'] as const;

export function addArchiveOptions(cmd: Command): Command {
  return addSettings(cmd, ...ARCHIVE_SETTINGS);
}

export const archiveSchema = settingsSchema(...ARCHIVE_SETTINGS);

export async function archiveFrom(
  cfg: z.infer<typeof archiveSchema>,
  checkBucket = true,
  onStreamRetry?: (refused: number, code: string) => void,
  lockChecks?: LockChecks,
): Promise<Archive> {
  return openArchive(
    cfg.archive,
    {
      ...(onStreamRetry ? { onStreamRetry } : {}),
      ...(lockChecks ? { lockChecks } : {}),
      forcePathStyle: cfg.s3ForcePathStyle,
      sse: cfg.s3Sse,
      ...(cfg.s3KmsKeyId ? { kmsKeyId: cfg.s3KmsKeyId } : {}),
      retention: parseRetention(cfg.retention, cfg.allowShortRetention === true),
    },
    checkBucket,
  );
}

/** --verify-key's files (the setting's type has split AUDIT_VERIFY_KEY's list). */
export async function verifyKeysFrom(files: readonly string[]): Promise<VerifyKey[]> {
  return Promise.all(files.map(loadVerifyKey));
}
