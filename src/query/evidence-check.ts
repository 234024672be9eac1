import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { openDigest, sha256Hex, type Digest } from '../seal/digest.js';
import { keyIdOf, type VerifyKey } from '../seal/keys.js';
import { createPublicKey } from 'node:crypto';
import { openRecord } from '../seal/record.js';
import { parseDigestKey } from '../sink/keys.js';
import { checkFile, type ArchivedRecord } from '../verify/file.js';
import type { Finding } from '../verify/findings.js';
import { EVIDENCE_FORMAT, listFiles, packagePath, type EvidenceQuery } from './evidence.js';
import { CSV_HEADER, csvLine } from './format.js';
import { matches } from './filter.js';

export interface EvidenceReport {
  dir: string;
  query: EvidenceQuery | null;
  /** which keys the signatures were checked with, and whether they came from outside the package */
  keyIds: string[];
  keysFromPackage: boolean;
  files: number;
  records: number;
  findings: Finding[];
  notes: string[];
}

/**
 * Check an evidence package offline: nothing changed since it was written (SHA256SUMS), every
 * digest's signature, every data file against its digest and record chain, every record in
 * records.jsonl a verbatim line of those files, and no record of those files that matches the
 * query left out. With `keys` (the archive owner's public keys, obtained independently) the
 * package's own keys are not trusted.
 */
export async function checkEvidence(dir: string, keys: VerifyKey[]): Promise<EvidenceReport> {
  const findings: Finding[] = [];
  const add = (code: string, where: string, message: string): void => {
    findings.push({ code, where, message });
  };
  const report: EvidenceReport = { dir, query: null, keyIds: [], keysFromPackage: keys.length === 0, files: 0, records: 0, findings, notes: [] };
  const read = async (rel: string): Promise<Buffer | null> => readFile(path.join(dir, rel)).catch(() => null);

  // 1. The package as written.
  const sums = await read('SHA256SUMS');
  const present = await listFiles(dir);
  if (!sums) {
    add('no-checksums', 'SHA256SUMS', 'the package has no SHA256SUMS: it is incomplete or not an evidence package');
  } else {
    const listed = new Set<string>();
    for (const line of sums.toString('utf8').split('\n').filter(Boolean)) {
      const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
      if (!m) {
        add('bad-checksums', 'SHA256SUMS', `not a sha256sum line: ${line.slice(0, 80)}`);
        continue;
      }
      listed.add(m[2]!);
      const body = await read(m[2]!);
      if (!body) add('missing-file', m[2]!, 'listed in SHA256SUMS but not in the package');
      else if (sha256Hex(body) !== m[1]) add('file-changed', m[2]!, 'changed since the package was written (its SHA-256 differs from SHA256SUMS)');
    }
    for (const rel of present) if (!listed.has(rel)) add('unlisted-file', rel, 'in the package but not in SHA256SUMS: added after it was written');
  }

  const queryBytes = await read('query.json');
  try {
    report.query = queryBytes ? (JSON.parse(queryBytes.toString('utf8')) as EvidenceQuery) : null;
  } catch {
    /* reported below */
  }
  if (!report.query || report.query.format !== EVIDENCE_FORMAT) {
    add('no-query', 'query.json', `query.json is missing or not ${EVIDENCE_FORMAT}: the question the records answer is unknown`);
    return report;
  }

  // 2. Keys: the owner's, given independently, or else the package's own (said in the report).
  let verifyKeys = keys;
  if (verifyKeys.length === 0) {
    verifyKeys = [];
    for (const rel of present.filter((p) => /^keys\/[0-9a-f]{64}\.pem$/.test(p))) {
      try {
        const publicKey = createPublicKey((await read(rel))!);
        verifyKeys.push({ keyId: keyIdOf(publicKey), publicKey });
      } catch {
        add('bad-key', rel, 'not a PEM public key');
      }
    }
    report.notes.push('signatures were checked with the public key inside the package: confirm its key id with the archive owner, or pass --verify-key');
  }
  const keyMap = new Map(verifyKeys.map((k) => [k.keyId as string, k]));
  report.keyIds = [...keyMap.keys()];

  // 3. Every file against its signed digest; every line it holds, by record sequence.
  const lineOf = new Map<number, string>();
  const fileRecords: ArchivedRecord[] = [];
  for (const rel of present.filter((p) => parseDigestKey(p) !== null)) {
    const opened = openDigest((await read(rel))!, keyMap);
    if (!opened.ok) {
      add('bad-digest', rel, opened.problem);
      continue;
    }
    const d: Digest = opened.digest;
    if (d.kind !== 'data' || !d.object_key) continue;
    report.files++;
    const file = checkFile(await read(packagePath(d.object_key)), d, { chain: d.prev_chain, recordSeq: (d.first_seq ?? 1) - 1, lastPos: null });
    findings.push(...file.findings);
    if (file.findings.length > 0) continue;
    for (const l of file.lines) {
      lineOf.set(l.record.seq, l.line);
      fileRecords.push(l.record);
    }
  }

  // 4. records.jsonl: verbatim archived lines, each an answer to the query, none left out.
  const recordsText = (await read('records.jsonl'))?.toString('utf8') ?? '';
  const shown = new Set<number>();
  const csv: string[] = [CSV_HEADER];
  recordsText
    .split('\n')
    .filter(Boolean)
    .forEach((line, i) => {
      const where = `records.jsonl line ${i + 1}`;
      const rec = openRecord(line);
      let fields: ArchivedRecord | null = null;
      try {
        fields = rec ? { ...(JSON.parse(rec.body) as ArchivedRecord), chain: rec.claimed } : null;
      } catch {
        /* below */
      }
      if (!fields || typeof fields.seq !== 'number') {
        add('bad-record', where, 'not an archived record line');
        return;
      }
      report.records++;
      shown.add(fields.seq);
      csv.push(csvLine(fields));
      const archived = lineOf.get(fields.seq);
      if (archived === undefined) add('record-not-in-files', where, `record ${fields.seq} is not in any verified file of the package`);
      else if (archived !== line) add('record-altered', where, `record ${fields.seq} differs from the archived line in its file`);
      if (!matches(fields, report.query!.query)) add('record-off-question', where, `record ${fields.seq} does not answer the package's question`);
    });
  for (const r of fileRecords) {
    if (matches(r, report.query.query) && !shown.has(r.seq)) {
      add('record-withheld', `record ${r.seq}`, `record ${r.seq} answers the question and is in the package's files, but is missing from records.jsonl`);
    }
  }
  const csvBytes = await read('records.csv');
  if (csvBytes && csvBytes.toString('utf8') !== `${csv.join('\n')}\n`) {
    add('csv-differs', 'records.csv', 'records.csv does not show the same records as records.jsonl');
  }
  if (report.records !== report.query.records) {
    add('record-count', 'records.jsonl', `holds ${report.records} records, query.json says ${report.query.records}`);
  }
  return report;
}

export function evidenceText(r: EvidenceReport): string {
  const out: string[] = [];
  out.push(`evidence package ${r.dir}`);
  if (r.query) out.push(`question: ${r.query.question}`, `archive:  ${r.query.archive} (package written ${r.query.created_at})`);
  out.push(
    `checked:  ${r.records} records in ${r.files} files, signatures with key ${r.keyIds.join(', ') || '(none)'}` +
      `${r.keysFromPackage ? ' (from the package itself)' : ' (given with --verify-key)'}`,
  );
  for (const n of r.notes) out.push(`note: ${n}`);
  if (r.findings.length === 0) {
    out.push('result:   VERIFIED: every record is exactly as archived, in signed files, and none that answers the question was left out of them');
  } else {
    out.push(`result:   FAILED: ${r.findings.length} problem${r.findings.length === 1 ? '' : 's'}`);
    for (const f of r.findings) out.push(`  - ${f.where}: ${f.message}`);
  }
  return `${out.join('\n')}\n`;
}
