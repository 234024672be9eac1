import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { sha256Hex } from '../seal/digest.js';
import type { VerifyKey } from '../seal/keys.js';
import { digestKey, pad, parseStreamKey } from '../sink/keys.js';
import type { ArchivedLine } from '../verify/file.js';
import { CSV_HEADER, csvLine } from './format.js';
import type { Query } from './filter.js';
import type { ScanReport, VerifiedFile } from './scan.js';

/**
 * An evidence package is a small archive of its own, in the archive's layout, so every file in it
 * can be compared with the archive byte for byte:
 *
 *   records.jsonl              the matching records, each line exactly as archived
 *   records.csv                the same records as a table (derived: checked against records.jsonl)
 *   data/dt=…/….jsonl.gz       every data file a record comes from, as stored
 *   digests/….digest           their signed digests
 *   keys/<key id>.pem          the public key(s) that signed them
 *   query.json                 what was asked, of which archive, when, and what was searched
 *   report.txt, README.txt     the answer's summary in words; how to check the package by hand
 *   SHA256SUMS                 every file above (`sha256sum -c SHA256SUMS`)
 *
 * Whole data files travel because the record chain is linear: proving one record unaltered needs
 * the records after it in its file, up to the hash the signed digest holds.
 */
export const EVIDENCE_FORMAT = 'pg-audit-shipper/evidence/1';

export interface EvidenceQuery {
  format: typeof EVIDENCE_FORMAT;
  archive: string;
  created_at: string;
  tool_version: string;
  query: Query;
  /** the question in words and the command line that asked it */
  question: string;
  /** commit-date partitions searched, the digests walked and the files read */
  searched: {
    partitions: { from: string | null; to: string | null };
    first_file: number | null;
    last_file: number | null;
    files_read: number;
    /** files whose signed key index ruled out every match (digest format 3) */
    files_skipped_by_index: number;
    digests_checked: number;
  };
  records: number;
  files: number[];
  key_ids: string[];
}

/** What a search read, as the package's query.json records it. */
export function searchedOf(report: ScanReport): EvidenceQuery['searched'] {
  return {
    partitions: report.partitions,
    first_file: report.firstFile,
    last_file: report.lastFile,
    files_read: report.filesRead,
    files_skipped_by_index: report.filesSkippedByIndex,
    digests_checked: report.digests,
  };
}

export class EvidenceWriter {
  private records!: WriteStream;
  private csv!: WriteStream;
  private readonly files: number[] = [];
  private readonly keyIds = new Set<string>();
  private count = 0;

  private constructor(readonly dir: string) {}

  /** A new, empty directory: a package is never written over another one. */
  static async create(dir: string): Promise<EvidenceWriter> {
    const existing = await readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
    if (existing.length > 0) throw new ConfigError(`--evidence ${dir} is not empty: an evidence package is written to a new directory`);
    await mkdir(dir, { recursive: true });
    const w = new EvidenceWriter(dir);
    w.records = createWriteStream(path.join(dir, 'records.jsonl'));
    w.csv = createWriteStream(path.join(dir, 'records.csv'));
    w.csv.write(`${CSV_HEADER}\n`);
    return w;
  }

  async add(file: VerifiedFile, matched: ArchivedLine[]): Promise<void> {
    const d = file.digest;
    await writeAt(this.dir, packagePath(d.object_key!), file.body);
    await writeAt(this.dir, digestKey(d.file_seq), file.digestBytes);
    this.files.push(d.file_seq);
    this.keyIds.add(d.key_id);
    for (const m of matched) {
      this.records.write(`${m.line}\n`);
      this.csv.write(`${csvLine(m.record)}\n`);
    }
    this.count += matched.length;
  }

  async finish(meta: Omit<EvidenceQuery, 'format' | 'records' | 'files' | 'key_ids'>, keys: VerifyKey[], reportText: string): Promise<void> {
    await Promise.all([close(this.records), close(this.csv)]);
    for (const k of keys) {
      if (this.keyIds.has(k.keyId)) await writeAt(this.dir, `keys/${k.keyId}.pem`, Buffer.from(k.publicKey.export({ type: 'spki', format: 'pem' }) as string));
    }
    const q: EvidenceQuery = { format: EVIDENCE_FORMAT, ...meta, records: this.count, files: this.files, key_ids: [...this.keyIds] };
    await writeAt(this.dir, 'query.json', Buffer.from(`${JSON.stringify(q, null, 2)}\n`));
    await writeAt(this.dir, 'report.txt', Buffer.from(reportText));
    await writeAt(this.dir, 'README.txt', Buffer.from(readme(q)));
    const sums: string[] = [];
    for (const rel of await listFiles(this.dir)) sums.push(`${sha256Hex(await readFile(path.join(this.dir, rel)))}  ${rel}`);
    await writeFile(path.join(this.dir, 'SHA256SUMS'), `${sums.join('\n')}\n`);
  }
}

/** Where a data file sits in a package: its archive key, or for a streamed file firehose/STREAM/N.jsonl. */
export function packagePath(objectKey: string): string {
  const streamed = parseStreamKey(objectKey);
  return streamed ? `firehose/${streamed.stream}/${pad(streamed.fileSeq)}.jsonl` : objectKey;
}

async function writeAt(dir: string, rel: string, body: Buffer): Promise<void> {
  const file = path.join(dir, rel);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, body);
}

function close(s: WriteStream): Promise<void> {
  return new Promise((resolve, reject) => {
    s.end((err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

/** Every file under dir, relative, sorted, without SHA256SUMS itself. */
export async function listFiles(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...(await listFiles(dir, child)));
    else if (child !== 'SHA256SUMS') out.push(child);
  }
  return out.sort();
}

function readme(q: EvidenceQuery): string {
  const first = q.files[0];
  return `Evidence package (${EVIDENCE_FORMAT})

Question: ${q.question}
Archive:  ${q.archive}
Written:  ${q.created_at} by pg-audit-shipper ${q.tool_version}
Answer:   ${q.records} records from ${q.files.length} archived files, signed by key ${q.key_ids.join(', ') || '(none)'}

Check it with the tool (no access to the archive needed):
  pg-audit-shipper verify-evidence . --verify-key <the archive owner's verify-key.pem>

Or by hand:
  sha256sum -c SHA256SUMS                      # nothing in the package changed since it was written
  # each digest is signed (Ed25519) over its first line:
  head -n1 digests/N.digest > body; tail -n1 digests/N.digest | jq -r .signature | base64 -d > sig
  openssl pkeyutl -verify -pubin -inkey keys/<key_id>.pem -rawin -in body -sigfile sig
  # the key id is the SHA-256 of the public key; compare it with the one the archive owner publishes:
  openssl pkey -pubin -in keys/<key_id>.pem -outform DER | sha256sum
  # each data file is the object its digest names (object_sha256), byte for byte:
  sha256sum data/dt=*/*.jsonl.gz
  # every line of records.jsonl is a line of one of those files:
  zcat data/dt=*/*.jsonl.gz | grep -Fxf records.jsonl | wc -l      # = ${q.records}
  # each record's chain hash: sha256( previous line's chain hash (64 hex) || "{" + line[76:] )
${first !== undefined ? `  # (the first record of a file continues from "prev_chain" in its digest; docs/format.md in the project)\n` : ''}
What this package proves: the records are exactly as archived, in files whose signed digests
verify, and no record of those files that matches the question was left out. That no other
archived file holds a match was checked by the tool against the archive when the package was
written (see query.json: "searched"); the archive's own \`verify\` report proves its completeness.
`;
}
