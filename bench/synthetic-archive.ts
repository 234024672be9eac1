/**
 * A busy hospital's trail, sealed by the shipper's own sealer into a file:// archive without a
 * database: 5,000 events a second, files sealed at 10,000 records (the default --batch-max-records,
 * which a busy database reaches before --batch-max-age), a heartbeat never needed. One patient,
 * TARGET, is in one file in a thousand (0.1% of files; the first at file 51, so every size has one).
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DIGEST_FORMAT_V2, sha256Hex, signDigest, type Digest } from '../src/seal/digest.js';
import { Batch } from '../src/seal/batch.js';
import type { SigningKey } from '../src/seal/keys.js';
import type { RowText } from '../src/seal/record.js';
import { sealBatch, type ArchiveHead } from '../src/seal/sealer.js';
import { fileArchive } from '../src/sink/file/file-archive.js';
import { EMPTY_HEAD } from '../src/ship/resume.js';
import type { Lsn } from '../src/source/lsn.js';

export const TARGET = 'patient-target';
export const PER_FILE = 10_000;
const TARGET_EVERY_FILES = 1000;
const TARGET_FIRST_FILE = 50; // 0-based: file_seq 51
const RATE_PER_S = 5000;
const TABLES = ['patients', 'visits', 'notes', 'labs', 'orders'];

/** xorshift32: the same archive every run */
function rng(seed: number): () => number {
  let s = seed | 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

function pad(n: number, w: number): string {
  return String(n).padStart(w, '0');
}

/** occurred_at as the server writes it, for event i at RATE_PER_S from 2026-01-01 00:00 UTC */
function serverTime(i: number): string {
  const us = Math.floor((i * 1e6) / RATE_PER_S);
  const s = Math.floor(us / 1e6);
  const day = 1 + Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `2026-01-${pad(day, 2)} ${pad(h, 2)}:${pad(m, 2)}:${pad(s % 60, 2)}.${pad(us % 1e6, 6)}+00`;
}

export interface SyntheticArchive {
  root: string;
  events: number;
  files: number;
  targetFiles: number;
  compressedBytes: number;
  digestBytes: number;
}

export async function buildSyntheticArchive(root: string, events: number, key: SigningKey, progress: (files: number) => void): Promise<SyntheticArchive> {
  await mkdir(root, { recursive: true });
  const archive = fileArchive(root);
  const source = { systemIdentifier: '7712636088010598091', timeline: 1, database: 'hospital', slot: 'pg_audit_shipper' };
  const r = rng(42);
  let head: ArchiveHead = EMPTY_HEAD;
  let lsn = 0x1000000n;
  let files = 0;
  let targetFiles = 0;
  let compressedBytes = 0;
  let digestBytes = 0;
  for (let first = 0; first < events; first += PER_FILE) {
    const fileIndex = first / PER_FILE;
    const holdsTarget = fileIndex % TARGET_EVERY_FILES === TARGET_FIRST_FILE;
    const date = serverTime(first).slice(0, 10);
    const batch = new Batch(head.position, date);
    const n = Math.min(PER_FILE, events - first);
    for (let j = 0; j < n; j++) {
      const i = first + j;
      lsn += 0x80n;
      const kind = r();
      const table = TABLES[Math.floor(r() * TABLES.length)]!;
      const unattributed = r() < 0.02;
      const customer = holdsTarget && j === 1234 ? TARGET : `p${Math.floor(r() * 50_000)}`;
      const read = kind < 0.6;
      const row: RowText = {
        id: String(i + 1),
        occurred_at: serverTime(i),
        source: read ? 'pgaudit' : 'trigger',
        action: read ? 'SELECT' : kind < 0.85 ? 'UPDATE' : 'INSERT',
        outcome: 'success',
        schema_name: 'clinic',
        table_name: table,
        relation_name: null,
        row_id: read ? null : String(Math.floor(r() * 10_000_000)),
        old_row_id: null,
        changed_columns: read ? null : '{status,updated_at}',
        statement: read ? `SELECT * FROM clinic.${table} WHERE id = $1` : null,
        session_user_name: r() < 0.95 ? 'app' : 'reporting',
        current_role_name: 'app',
        app_user_id: `clinician${Math.floor(r() * 2000)}`,
        app_customer_id: unattributed ? null : customer,
        app_context: unattributed ? 'unknown' : 'set',
        client_addr: '10.0.3.17',
        application_name: 'ehr-api',
        backend_pid: String(10_000 + Math.floor(r() * 200)),
      };
      batch.append({ op: 'insert', commitLsn: lsn as Lsn, idx: 0, row });
    }
    batch.ackLsn = lsn as Lsn;
    const sealed = await sealBatch(batch, head, source, key, new Date(Date.parse(`${date}T23:59:00Z`)));
    for (const o of sealed.objects) {
      await archive.sink.put(o);
      if (o.key.startsWith('data/')) compressedBytes += o.body.length;
      else digestBytes += o.body.length;
    }
    head = { fileSeq: sealed.fileSeq, digestSha256: sealed.digestSha256, position: sealed.position, ackLsn: sealed.ackLsn, lastWrittenAt: 0 };
    files++;
    if (holdsTarget) targetFiles++;
    if (files % 100 === 0) progress(files);
  }
  return { root, events, files, targetFiles, compressedBytes, digestBytes };
}

/** Rewrite every digest as format 2 (no index), signed again: the archive as an earlier release wrote it. */
export async function downgradeToFormat2(root: string, key: SigningKey): Promise<void> {
  const dir = path.join(root, 'digests');
  let prev: string | null = null;
  for (const name of (await readdir(dir)).sort()) {
    const d = JSON.parse((await readFile(path.join(dir, name), 'utf8')).split('\n')[0]!) as Digest;
    const { index: _index, ...rest } = d;
    const bytes = signDigest({ ...rest, format: DIGEST_FORMAT_V2, prev_digest_sha256: prev }, key);
    await writeFile(path.join(dir, name), bytes);
    prev = sha256Hex(bytes);
  }
}
