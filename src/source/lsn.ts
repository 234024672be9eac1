/**
 * A WAL position. Not a number (64 bits do not fit a double) and not a string (the server and
 * the replication library spell the same position `0/19B9418` and `00000000/019B9418`).
 */
export type Lsn = bigint & { readonly __brand: 'Lsn' };

export const ZERO_LSN = 0n as Lsn;

export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(text)}`);
  return ((BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`)) as Lsn;
}

/** The LSN of a text from outside (an archived record or digest), or null when it is none. */
export function tryParseLsn(text: unknown): Lsn | null {
  if (typeof text !== 'string') return null;
  try {
    return parseLsn(text);
  } catch {
    return null;
  }
}

/** The server's own spelling, as the archive writes LSNs: upper-case hex, no padding. */
export const SERVER_LSN_TEXT = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;

/** The server's own spelling: upper-case hex, no padding (`16/B374D848`). */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/**
 * A digest's ack_lsn: where the slot may stand once the file is stored. "Nothing confirmed yet" is
 * spelled 0/0 in the archive (docs/format.md); these two are the only places that know it.
 */
export function formatAckLsn(lsn: Lsn | null): string {
  return lsn === null ? '0/0' : formatLsn(lsn);
}

export function parseAckLsn(text: string): Lsn | null {
  const lsn = parseLsn(text);
  return lsn === ZERO_LSN ? null : lsn;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
