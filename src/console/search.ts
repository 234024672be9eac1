import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
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
import { CSV_HEADER, csvLine } from '../query/format.js';
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

/** How the console scans: the archive's keys and settings, and the watch of one request. */
function scanOptions(a: Archive, query: Query, watch: Watch, onMatches: ScanOptions['onMatches']): ScanOptions {
  return {
    keys: new Map(a.keys.map((k) => [k.keyId, k])),
    query,
    maxCommitDelayMs: a.maxCommitDelayMs,
    ...(a.workers !== undefined ? { workers: a.workers } : {}),
    ...(watch.signal ? { signal: watch.signal } : {}),
    ...(watch.onProgress ? { onProgress: watch.onProgress } : {}),
    onMatches,
  };
}

function scan(a: Archive, query: Query, onMatch: (f: Found) => void | Promise<void>, watch: Watch = {}): Promise<ScanReport> {
  return scanArchive(
    a.reader,
    scanOptions(a, query, watch, async (file: VerifiedFile, matched) => {
      const d = file.digest;
      for (const m of matched) {
        await onMatch({ record: m.record, fileSeq: d.file_seq, objectKey: d.object_key!, digestKey: digestKey(d.file_seq), keyId: d.key_id });
      }
    }),
  );
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
  const answer = await searchAll(
    a,
    query,
    (f) => {
      if (total >= page.offset && events.length < page.limit) events.push(f);
      total++;
    },
    watch,
  );
  return { events, total, ...answer };
}

/** Every event of a search, in archive order, to `each` as it is verified (reports, CSV). */
export async function searchAll(a: Archive, query: Query, each: (f: Found) => void | Promise<void>, watch: Watch = {}) {
  const report = await scan(a, query, each, watch);
  return { report, summary: scanSummary(report, query, a.location) };
}

/** A file the console made for a download, on disk until it is sent: `remove` when done with it. */
export interface Download {
  path: string;
  remove: () => Promise<void>;
}

async function tempDir(): Promise<Download> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pg-audit-shipper-console-'));
  return { path: dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Write to a file stream, waiting when its buffer is full: memory stays bounded however much is written. */
async function put(out: WriteStream, chunk: string | Uint8Array): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

/**
 * Every event of a search as CSV (the columns and lines `query --format csv` writes), in a file on
 * disk: its length is not bounded by memory, and its count is known before anything is sent.
 */
export async function csvFile(a: Archive, query: Query, watch: Watch = {}): Promise<Download & { events: number; report: ScanReport }> {
  const dir = await tempDir();
  try {
    const file = path.join(dir.path, 'report.csv');
    const out = createWriteStream(file);
    await put(out, `${CSV_HEADER}\n`);
    const report = await scan(a, query, (f) => put(out, `${csvLine(f.record)}\n`), watch);
    out.end();
    await finished(out);
    return { path: file, remove: dir.remove, events: report.matches, report };
  } catch (err) {
    await dir.remove();
    throw err;
  }
}

/**
 * The evidence package `query --evidence` writes, for this search, as one zip file: the package is
 * written to a new temporary directory and zipped from there into a file, entry by entry (stored:
 * its data files are gzip already), so neither is held in memory. `verify-evidence` checks it once unzipped.
 */
export async function evidenceZip(a: Archive, query: Query, question: string, watch: Watch = {}): Promise<Download & { events: number; report: ScanReport }> {
  const { Zip, ZipPassThrough } = await import('fflate');
  const dir = await tempDir();
  try {
    const pkg = path.join(dir.path, 'evidence');
    const writer = await EvidenceWriter.create(pkg);
    const report = await scanArchive(
      a.reader,
      scanOptions(a, query, watch, (file, matched) => writer.add(file, matched)),
    );
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
    const file = path.join(dir.path, 'evidence.zip');
    const out = createWriteStream(file);
    let failure: Error | null = null;
    const zip = new Zip((err, data, final) => {
      if (err) failure = err;
      else out.write(data);
      if (final || err) out.end();
    });
    for (const rel of [...(await listFiles(pkg)), 'SHA256SUMS']) {
      const entry = new ZipPassThrough(`evidence/${rel}`);
      zip.add(entry);
      for await (const chunk of createReadStream(path.join(pkg, rel))) {
        entry.push(chunk as Uint8Array);
        if (out.writableNeedDrain) await once(out, 'drain');
      }
      entry.push(new Uint8Array(0), true);
    }
    zip.end();
    await finished(out);
    if (failure) throw failure;
    await rm(pkg, { recursive: true, force: true });
    return { path: file, remove: dir.remove, events: report.matches, report };
  } catch (err) {
    await dir.remove();
    throw err;
  }
}
