import { readFile, rename, writeFile } from 'node:fs/promises';
import { ConfigError } from '../errors.js';
import { sha256Hex } from '../seal/digest.js';

/**
 * What the last clean run proved: the archive up to this digest was intact. It is hashed, so a
 * damaged file is noticed; it is not signed, so keep it where only the verification job can write
 * (a forged state could only make a run skip re-reading old files; signatures and links are always
 * checked, and `--full` ignores it).
 */
export interface TrustedState {
  archive: string;
  file_seq: number;
  digest_sha256: string;
  verified_at: string;
}

export async function readState(file: string, archive: string): Promise<TrustedState | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null; // first run: check everything
    throw new ConfigError(`--state ${file} cannot be read: ${(err as NodeJS.ErrnoException).code}`);
  }
  let parsed: { state: TrustedState; sha256: string };
  try {
    parsed = JSON.parse(text) as { state: TrustedState; sha256: string };
  } catch {
    throw new ConfigError(`--state ${file} is not a verification state file; remove it to check everything once`);
  }
  if (sha256Hex(JSON.stringify(parsed.state)) !== parsed.sha256) {
    throw new ConfigError(`--state ${file} was altered or damaged; remove it and run with --full`);
  }
  if (parsed.state.archive !== archive) {
    throw new ConfigError(`--state ${file} belongs to ${parsed.state.archive}, not ${archive}`);
  }
  return parsed.state;
}

export async function writeState(file: string, state: TrustedState): Promise<void> {
  const text = `${JSON.stringify({ state, sha256: sha256Hex(JSON.stringify(state)) }, null, 2)}\n`;
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

/** Up to n distinct numbers from 1..max, at random: old files re-read to catch silent damage. */
export function sampleOf(max: number, n: number): Set<number> {
  const out = new Set<number>();
  if (max <= 0) return out;
  if (n >= max) {
    for (let i = 1; i <= max; i++) out.add(i);
    return out;
  }
  while (out.size < n) out.add(1 + Math.floor(Math.random() * max));
  return out;
}
