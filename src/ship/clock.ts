import type { Queryable } from '../db.js';

/**
 * How far this machine's clock may be from the database server's. The shipper's clock sets each
 * object's Object Lock retain-until date and files backfilled and gap records under a date: 400
 * days behind locked six-year objects for 5 years 1 month (the S3 SDK corrects request signing for
 * skew silently, so storage never complained). A minute is far beyond NTP's error and far below
 * anything that matters to a retention date or a day partition.
 */
export const MAX_CLOCK_SKEW_MS = 60_000;

/** The database server's clock minus ours (positive: ours is behind), from one round trip, halved. */
export async function measureSkew(serverNowMs: () => Promise<number>, localNow: () => number = Date.now): Promise<number> {
  const before = localNow();
  const server = await serverNowMs();
  const after = localNow();
  return server - (before + after) / 2;
}

/** What is wrong with a measured skew, in words, or null when it is within the bound. */
export function skewProblem(skewMs: number, max = MAX_CLOCK_SKEW_MS): string | null {
  if (Math.abs(skewMs) <= max) return null;
  return (
    `this machine's clock is ${describeSpan(Math.abs(skewMs))} ${skewMs > 0 ? 'behind' : 'ahead of'} the database server's ` +
    `(more than ${max / 1000}s): Object Lock retention dates and event-date partitions are computed from it; fix the clock (NTP) on the machine that is wrong`
  );
}

export function describeSpan(ms: number): string {
  const s = ms / 1000;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} days`;
}

/** The server's clock, in ms since the epoch. */
export async function serverClock(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ ms: string }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint::text AS ms');
  return Number(rows[0]!.ms);
}
