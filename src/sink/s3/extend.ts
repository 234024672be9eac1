import { GetObjectRetentionCommand, PutObjectLegalHoldCommand, PutObjectRetentionCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Digest } from '../../seal/digest.js';
import { timeKey } from '../../seal/event-time.js';
import { digestKey } from '../keys.js';

export interface ExtendResult {
  extended: number;
  alreadyLonger: number;
  held: number;
  objects: number;
}

/** The digest and data objects of files whose events (or, for heartbeats, sealing time) touch [from, to]. */
export function inRange(d: Digest, from: string | null, to: string | null): boolean {
  const first = timeKey(d.first_event_at ?? d.created_at);
  const last = timeKey(d.last_event_at ?? d.created_at);
  // Event times are the server's text ("2026-11-27 00:51:22.4+00"): compared as time keys, like query does.
  if (first === null || last === null) return true; // unreadable: keep it rather than leave it unprotected
  return (from === null || last >= (timeKey(from) ?? '')) && (to === null || first <= (timeKey(to) ?? '\uffff'));
}

export function objectsOf(d: Digest): string[] {
  return [digestKey(d.file_seq), ...(d.object_key ? [d.object_key] : [])];
}

/**
 * Litigation and longer policies: move retain-until later, or place/lift a legal hold. COMPLIANCE
 * retention can only grow; a date earlier than the current one is left alone and counted.
 */
export async function extendRetention(
  client: S3Client,
  bucket: string,
  prefix: string,
  keys: string[],
  change: { until?: Date; legalHold?: 'ON' | 'OFF' },
): Promise<ExtendResult> {
  const result: ExtendResult = { extended: 0, alreadyLonger: 0, held: 0, objects: keys.length };
  for (const rel of keys) {
    const Key = prefix + rel;
    if (change.until) {
      const current = await client.send(new GetObjectRetentionCommand({ Bucket: bucket, Key }));
      const now = current.Retention?.RetainUntilDate;
      if (now && now.getTime() >= change.until.getTime()) {
        result.alreadyLonger++;
      } else {
        await client.send(new PutObjectRetentionCommand({ Bucket: bucket, Key, Retention: { Mode: 'COMPLIANCE', RetainUntilDate: change.until } }));
        result.extended++;
      }
    }
    if (change.legalHold) {
      await client.send(new PutObjectLegalHoldCommand({ Bucket: bucket, Key, LegalHold: { Status: change.legalHold } }));
      result.held++;
    }
  }
  return result;
}
