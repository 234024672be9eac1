import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { keygen, loadVerifyKey, type VerifyKey } from '../../src/seal/keys.js';
import type { ArchiveReader } from '../../src/sink/sink.js';
import { fileArchive } from '../../src/sink/file/file-archive.js';
import { verifyChain, type ArchivedRecord, type ChainReport } from '../../src/verify/chain.js';

export interface TestKeys {
  dir: string;
  signingKey: string;
  verifyKey: string;
  keys: Map<string, VerifyKey>;
}

export async function makeKeys(): Promise<TestKeys> {
  const dir = path.join(await mkdtemp(path.join(tmpdir(), 'pgas-keys-')), 'k');
  const k = await keygen(dir);
  const vk = await loadVerifyKey(k.verifyKeyPath);
  return { dir, signingKey: k.signingKeyPath, verifyKey: k.verifyKeyPath, keys: new Map([[vk.keyId, vk]]) };
}

export async function tempArchiveDir(): Promise<string> {
  return path.join(await mkdtemp(path.join(tmpdir(), 'pgas-archive-')), 'archive');
}

/** Every record of a verified archive, in chain order, with the verifier's report. */
export async function readArchive(reader: ArchiveReader | string, keys: Map<string, VerifyKey>): Promise<{ report: ChainReport; records: ArchivedRecord[] }> {
  const r = typeof reader === 'string' ? fileArchive(reader).reader : reader;
  const records: ArchivedRecord[] = [];
  const report = await verifyChain(r, {
    keys,
    onRecords: (recs) => {
      records.push(...recs);
    },
  });
  return { report, records };
}

/** The environment `ship` needs, for the CLI. */
export function shipArgs(opts: { archive: string; keys: TestKeys; extra?: string[] }): string[] {
  return [
    'ship',
    '--archive',
    opts.archive,
    '--signing-key',
    opts.keys.signingKey,
    '--http-port',
    '0',
    '--batch-max-age',
    '200ms',
    '--allow-short-retention',
    '--retention',
    '1d',
    ...(opts.extra ?? []),
  ];
}
