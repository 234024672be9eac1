import { gunzipSync } from 'node:zlib';
import { digestKey, parseStreamKey, STREAM_DIR } from '../keys.js';
import type { ArchiveReader } from '../sink.js';
import { CHAIN_PREFIX_LENGTH } from '../../seal/record.js';

const HOUR = 3_600_000;
/** Firehose buffers up to 15 minutes and retries S3 delivery for up to a day. */
const LOOK_BEFORE = 15 * 60_000;
const LOOK_AHEAD_HOURS = 26;

/**
 * An archive reader that also answers `firehose://STREAM/N` keys: file N's record lines, gathered
 * from the objects the stream delivered under firehose/YYYY/MM/DD/HH/ (Firehose's default UTC
 * arrival-time prefix), byte-identical repeats dropped, in sequence order. Anything else it finds
 * (two different lines for one sequence number) is passed on, so the file check reports it.
 * Walks read files in sequence order, so lines before the file asked for are forgotten.
 */
export function withStreamedFiles(reader: ArchiveReader): StreamedReader {
  const lines = new StreamedLines(reader);
  return {
    get: (key) => (parseStreamKey(key) ? lines.file(parseStreamKey(key)!.fileSeq) : reader.get(key)),
    exists: async (key) => (parseStreamKey(key) ? (await lines.file(parseStreamKey(key)!.fileSeq)) !== null : reader.exists(key)),
    list: (prefix, startAfter) => reader.list(prefix, startAfter),
    storedObjects: async (key) => {
      const stream = parseStreamKey(key);
      return stream ? lines.sources(stream.fileSeq) : [key];
    },
  };
}

/** A reader that also names the stored objects behind a key (what retention extend must lock longer). */
export interface StreamedReader extends ArchiveReader {
  /** `firehose://STREAM/N`: the delivered objects that hold file N's lines; any other key: itself */
  storedObjects(key: string): Promise<string[]>;
}

class StreamedLines {
  private readonly loaded = new Set<string>();
  private readonly bySeq = new Map<number, string[]>();
  /** the delivered objects each sequence number's lines were found in */
  private readonly objectsBySeq = new Map<number, Set<string>>();

  constructor(private readonly reader: ArchiveReader) {}

  async file(fileSeq: number): Promise<Buffer | null> {
    const range = await this.gather(fileSeq);
    if (!range) return null;
    const out: string[] = [];
    for (let seq = range.first; seq <= range.last; seq++) out.push(...(this.bySeq.get(seq) ?? []));
    return out.length === 0 ? null : Buffer.from(`${out.join('\n')}\n`);
  }

  /** The delivered objects holding file N's lines. */
  async sources(fileSeq: number): Promise<string[]> {
    const range = await this.gather(fileSeq);
    if (!range) return [];
    const keys = new Set<string>();
    for (let seq = range.first; seq <= range.last; seq++) for (const k of this.objectsBySeq.get(seq) ?? []) keys.add(k);
    return [...keys].sort();
  }

  /** Load the delivered lines of file N (by its digest's sequence range and seal time); its range, or null. */
  private async gather(fileSeq: number): Promise<{ first: number; last: number } | null> {
    const digest = await this.reader.get(digestKey(fileSeq));
    if (!digest) return null;
    let d: { first_seq: number | null; last_seq: number | null; created_at: string };
    try {
      d = JSON.parse(digest.toString('utf8').split('\n')[0]!) as typeof d;
    } catch {
      return null;
    }
    if (d.first_seq === null || d.last_seq === null) return null;
    const first = d.first_seq;
    const last = d.last_seq;
    const start = Math.floor((Date.parse(d.created_at) - LOOK_BEFORE) / HOUR) * HOUR;
    for (let h = 0; h <= LOOK_AHEAD_HOURS && !this.complete(first, last); h++) await this.load(start + h * HOUR);
    for (const seq of [...this.bySeq.keys()])
      if (seq < first) {
        this.bySeq.delete(seq);
        this.objectsBySeq.delete(seq);
      }
    return { first, last };
  }

  private complete(first: number, last: number): boolean {
    for (let seq = first; seq <= last; seq++) if (!this.bySeq.has(seq)) return false;
    return true;
  }

  private async load(hourStart: number): Promise<void> {
    const iso = new Date(hourStart).toISOString();
    const prefix = `${STREAM_DIR}${iso.slice(0, 4)}/${iso.slice(5, 7)}/${iso.slice(8, 10)}/${iso.slice(11, 13)}/`;
    if (this.loaded.has(prefix)) return;
    this.loaded.add(prefix);
    for await (const key of this.reader.list(prefix)) {
      let body = await this.reader.get(key);
      if (!body) continue;
      if (body[0] === 0x1f && body[1] === 0x8b) body = gunzipSync(body); // a stream configured with GZIP
      for (const line of body.toString('utf8').split('\n')) {
        const m = /^"seq":(\d+),/.exec(line.slice(CHAIN_PREFIX_LENGTH, CHAIN_PREFIX_LENGTH + 30));
        if (!m) continue;
        const seq = Number(m[1]);
        const from = this.objectsBySeq.get(seq);
        if (from) from.add(key);
        else this.objectsBySeq.set(seq, new Set([key]));
        const seen = this.bySeq.get(seq);
        if (!seen) this.bySeq.set(seq, [line]);
        else if (!seen.includes(line)) seen.push(line);
      }
    }
  }
}
