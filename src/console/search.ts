import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { VERSION } from '../paths.js';
import type { VerifyKey } from '../seal/keys.js';
import { digestKey } from '../sink/keys.js';
import type { ArchiveReader } from '../sink/sink.js';
import type { ArchivedRecord } from '../verify/archived.js';
import { EvidenceWriter, listFiles, searchedOf } from '../query/evidence.js';
import { describe, type Query } from '../query/filter.js';
import { scanSummary } from '../query/report.js';
import { scanArchive, type ScanOptions, type ScanReport, type VerifiedFile } from '../query/scan.js';

/** An event and the proof behind it: the file it is stored in, the signed digest, the key. */
export interface Found {
  record: ArchivedRecord;
  fileSeq: number;
  objectKey: string;
  digestKey: string;
  keyId: string;
}

export interface Archive {
  location: string;
  reader: ArchiveReader;
  keys: VerifyKey[];
  maxCommitDelayMs: number;
  workers?: number;
}

/** Stopping a search (the person left the page), and seeing how far it is. */
export interface Watch {
  signal?: AbortSignal;
  onProgress?: ScanOptions['onProgress'];
}

function scan(a: Archive, query: Query, onMatch: (f: Found) => void | Promise<void>, watch: Watch = {}): Promise<ScanReport> {
  return scanArchive(a.reader, {
    keys: new Map(a.keys.map((k) => [k.keyId, k])),
    query,
    maxCommitDelayMs: a.maxCommitDelayMs,
    ...(a.workers !== undefined ? { workers: a.workers } : {}),
    ...(watch.signal ? { signal: watch.signal } : {}),
    ...(watch.onProgress ? { onProgress: watch.onProgress } : {}),
    onMatches: async (file: VerifiedFile, matched) => {
      const d = file.digest;
      for (const m of matched) {
        await onMatch({ record: m.record, fileSeq: d.file_seq, objectKey: d.object_key!, digestKey: digestKey(d.file_seq), keyId: d.key_id });
      }
    },
  });
}

/**
 * One page of a search's answer, and how many events answer it in all. The whole range is read
 * (verified file by file, as `query` does); only the page's events are kept, so a search holds at
 * most `limit` events however many match.
 */
export async function searchPage(
  a: Archive,
  query: Query,
  page: { offset: number; limit: number },
  watch: Watch = {},
): Promise<{ events: Found[]; total: number; report: ScanReport; summary: string }> {
  const events: Found[] = [];
  let total = 0;
  const report = await scan(
    a,
    query,
    (f) => {
      if (total >= page.offset && events.length < page.limit) events.push(f);
      total++;
    },
    watch,
  );
  return { events, total, report, summary: scanSummary(report, query, a.location) };
}

/** Every event of a search, in archive order, to `each` as it is verified (reports, CSV). */
export async function searchAll(a: Archive, query: Query, each: (f: Found) => void | Promise<void>, watch: Watch = {}) {
  const report = await scan(a, query, each, watch);
  return { report, summary: scanSummary(report, query, a.location) };
}

/**
 * The evidence package `query --evidence` writes, for this search, as one zip: written to a new
 * temporary directory, zipped, removed. `verify-evidence` checks it once unzipped.
 */
export async function evidenceZip(
  a: Archive,
  query: Query,
  question: string,
  signal?: AbortSignal,
): Promise<{ zip: Uint8Array; events: number; report: ScanReport }> {
  const { zipSync } = await import('fflate');
  const dir = await mkdtemp(path.join(tmpdir(), 'pg-audit-shipper-evidence-'));
  try {
    const pkg = path.join(dir, 'evidence');
    const writer = await EvidenceWriter.create(pkg);
    const report = await scanArchive(a.reader, {
      keys: new Map(a.keys.map((k) => [k.keyId, k])),
      query,
      maxCommitDelayMs: a.maxCommitDelayMs,
      ...(a.workers !== undefined ? { workers: a.workers } : {}),
      ...(signal ? { signal } : {}),
      onMatches: (file, matched) => writer.add(file, matched),
    });
    const summary = scanSummary(report, query, a.location);
    await writer.finish(
      {
        archive: a.location,
        created_at: new Date().toISOString(),
        tool_version: VERSION,
        query,
        question: `${describe(query)} (${question})`,
        searched: searchedOf(report),
      },
      a.keys,
      summary,
    );
    const entries: Record<string, Uint8Array> = {};
    // Stored, not deflated: the data files are gzip already, and the rest is small.
    for (const rel of [...(await listFiles(pkg)), 'SHA256SUMS']) entries[`evidence/${rel}`] = await readFile(path.join(pkg, rel));
    return { zip: zipSync(entries, { level: 0 }), events: report.matches, report };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
