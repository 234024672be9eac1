/**
 * Every wait before another attempt, in one place: exponential from a first wait to a cap, with full
 * jitter (a random wait between 0 and the bound, so shippers and reconnects that failed together do
 * not retry together). Which failures are worth another attempt is each caller's decision
 * (src/sink/retry.ts for storage); how long to wait is this one's.
 */
export interface Backoff {
  firstMs: number;
  maxMs: number;
}

export const BACKOFF = {
  /** storage and delivery-stream requests (the slot holds the data meanwhile), and the head record */
  storage: { firstMs: 200, maxMs: 30_000 },
  /** records a delivery stream refused within a batch it accepted */
  streamRecords: { firstMs: 100, maxMs: 5_000 },
  /** the replication connection */
  replication: { firstMs: 500, maxMs: 30_000 },
  /** the built-in ingester (ship --log-dir), restarted after a failure */
  ingest: { firstMs: 1_000, maxMs: 60_000 },
} as const satisfies Record<string, Backoff>;

/** The wait after the `attempt`-th failure in a row (0-based). */
export function backoffMs(policy: Backoff, attempt: number, random: () => number = Math.random): number {
  return random() * Math.min(policy.maxMs, policy.firstMs * 2 ** Math.min(attempt, 20));
}
