/**
 * Failed sign-ins, counted per key (the console counts per account name): after `limit` failures
 * within `windowMs`, that key may not try again until the window has passed since its first
 * failure. With scrypt at ~60 ms a guess, this keeps an online guesser to `limit` guesses a window
 * instead of thousands an hour. In memory: a restart forgets it (and takes the console down meanwhile).
 */
export class SignInThrottle {
  private readonly failures = new Map<string, { first: number; count: number }>();

  constructor(
    private readonly limit = 5,
    private readonly windowMs = 15 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds to wait before any of these keys may try again; 0: go ahead. */
  waitFor(keys: string[]): number {
    const t = this.now();
    let wait = 0;
    for (const k of keys) {
      const f = this.failures.get(k);
      if (!f) continue;
      if (t - f.first >= this.windowMs) this.failures.delete(k);
      else if (f.count >= this.limit) wait = Math.max(wait, f.first + this.windowMs - t);
    }
    return wait;
  }

  failed(keys: string[]): void {
    const t = this.now();
    for (const k of keys) {
      const f = this.failures.get(k);
      if (!f || t - f.first >= this.windowMs) this.failures.set(k, { first: t, count: 1 });
      else f.count++;
    }
    // Bounded: an address sweep cannot grow the map without end.
    if (this.failures.size > 100_000) for (const [k, f] of this.failures) if (t - f.first >= this.windowMs) this.failures.delete(k);
  }

  succeeded(keys: string[]): void {
    for (const k of keys) this.failures.delete(k);
  }
}
