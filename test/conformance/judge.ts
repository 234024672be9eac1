import type { VerifyKey } from '../../src/seal/keys.js';
import type { ArchiveReader } from '../../src/sink/sink.js';
import { parseExpectedHead, type ChainOptions } from '../../src/verify/chain.js';
import { verifyArchive } from '../../src/verify/archive.js';
import { KEY_A, KEY_B } from './build.js';
import type { Case, CaseArgs } from './cases.js';

export type Verdict = Case['expected'];

export const KEYS = { A: KEY_A, B: KEY_B } as const;

export function keysFor(names: ('A' | 'B')[] = ['A']): Map<string, VerifyKey> {
  return new Map(names.map((n) => [KEYS[n].keyId, { keyId: KEYS[n].keyId, publicKey: KEYS[n].publicKey }]));
}

/** The verifier's options for a case: its keys, and the head or start its arguments name. */
export function chainOptions(keys: Map<string, VerifyKey>, args: CaseArgs): ChainOptions {
  const expectHead = args.expect_head ? parseExpectedHead(args.expect_head) : null;
  const start = args.start ? parseExpectedHead(args.start) : null;
  return { keys, ...(expectHead ? { expectHead } : {}), ...(start ? { start } : {}) };
}

/** What this implementation's verifier says of an archive, in the corpus's terms (case.json "expected"). */
export async function judge(reader: ArchiveReader, keys: Map<string, VerifyKey>, args: CaseArgs): Promise<Verdict> {
  const v = await verifyArchive(reader, chainOptions(keys, args));
  const distinct = (xs: string[]) => [...new Set(xs)].sort();
  const out: Verdict = { ok: v.findings.length === 0, findings: distinct(v.findings.map((f) => f.code)) };
  if (v.acknowledged.length > 0) out.acknowledged = v.acknowledged.map((a) => a.id!);
  if (v.notes.length > 0) out.notes = distinct(v.notes.map((n) => n.code));
  return out;
}
