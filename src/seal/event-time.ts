/**
 * Event times are archived as the server printed them under TimeZone=UTC, DateStyle=ISO:
 * "2026-11-27 02:11:09.129119+00" (no fraction when it is zero). To compare them with each other
 * and with a user's bounds, both become fixed-width UTC keys "2026-11-27T02:11:09.129119Z", which
 * sort as text exactly as the instants do, to the microsecond (Date would drop the last three digits).
 */
export type TimeKey = string & { readonly __brand: 'TimeKey' };

const UTC_TEXT = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?)?(Z|[+-]00(?::?00)?)?$/i;

/** The key of a time text, or null when it is not a time. Text without a zone is UTC. */
export function timeKey(text: string): TimeKey | null {
  const t = text.trim();
  const m = UTC_TEXT.exec(t);
  if (m) {
    const [, date, hh = '00', mm = '00', ss = '00', frac = ''] = m;
    const key = `${date}T${hh}:${mm}:${ss}.${frac.padEnd(6, '0')}Z`;
    return Number.isNaN(Date.parse(key)) ? null : (key as TimeKey);
  }
  // Any other offset: through Date (millisecond precision is all such input carries in practice).
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : fromDate(new Date(ms));
}

export function fromDate(d: Date): TimeKey {
  return `${d.toISOString().slice(0, 23)}000Z` as TimeKey;
}

/** The UTC date (YYYY-MM-DD) of a key: data files are partitioned by it. */
export function dateOf(k: TimeKey): string {
  return k.slice(0, 10);
}

/** `k` moved by whole seconds of `ms` (the fraction is kept as it is). */
export function addMs(k: TimeKey, ms: number): TimeKey {
  const base = Date.parse(k);
  return `${new Date(base + Math.trunc(ms / 1000) * 1000).toISOString().slice(0, 19)}${k.slice(19)}` as TimeKey;
}
