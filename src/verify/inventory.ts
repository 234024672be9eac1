import { gunzipSync } from 'node:zlib';
import type { ArchiveReader } from '../sink/sink.js';
import { DATA_DIR, DIGEST_DIR, parseDataKey, STREAM_DIR } from '../sink/keys.js';
import { sha256Hex } from '../seal/digest.js';
import { recordLines, type ChainReport, type Finding } from './chain.js';
import type { ObjectIndex } from './object-index.js';

/**
 * Everything stored must be accounted for by the chain: a data file no digest names (a copy under
 * another name, a file slipped in) and any object outside digests/ and data/ are findings.
 */
export async function checkInventory(
  reader: ArchiveReader,
  chain: Pick<ChainReport, 'objects' | 'firstSeq'> & Partial<Pick<ChainReport, 'cut'>>,
): Promise<{ findings: Finding[]; notes: Finding[] }> {
  const findings: Finding[] = [];
  const notes: Finding[] = [];
  for await (const key of reader.list('')) {
    if (key.startsWith(DIGEST_DIR)) continue; // the chain walk judged these
    if (key.startsWith(STREAM_DIR)) continue; // delivered by a stream: its lines were checked as the files they belong to
    if (key.startsWith(DATA_DIR)) {
      if (chain.objects.names(key)) continue;
      const parsed = parseDataKey(key);
      // After the cut (--through): stored since the run began, or left for the next one.
      if (parsed && chain.cut != null && parsed.fileSeq > chain.cut) continue;
      if (parsed && parsed.fileSeq < chain.firstSeq) {
        notes.push({
          code: 'before-start',
          where: key,
          message: `file ${parsed.fileSeq} lies before the starting point (file ${chain.firstSeq}): not checked`,
        });
        continue;
      }
      // A shipper stopped between storing a file and its digest seals the same records again
      // after restart, maybe cut differently. A copy whose every line is byte for byte the line the
      // archive holds at that sequence number is those same records: harmless. Comparing only the
      // chain hash is not enough: a made-up body can carry a real record's seq and chain value.
      const copy = parsed && chain.objects.size > 0 ? await supersededCopy(reader, key, parsed.fileSeq, chain.objects) : null;
      if (copy === 'same') {
        notes.push({
          code: 'superseded-copy',
          where: key,
          message: `file ${parsed!.fileSeq} as first written before an interrupted shutdown; its records are in the chain, sealed again under the name the digest gives`,
        });
        continue;
      }
      if (copy === 'backfill') {
        notes.push({
          code: 'superseded-backfill-copy',
          where: key,
          message:
            `file ${parsed!.fileSeq} as first written by a backfill that was interrupted; the backfill started again from a new snapshot ` +
            'and archived the same rows, at the same places, under its own WAL position: the rows are in the chain',
        });
        continue;
      }
      findings.push({
        code: 'unreferenced-object',
        where: key,
        message: !parsed
          ? 'an object in the data folder that no signed digest names'
          : chain.objects.has(parsed.fileSeq)
            ? `a data file for file ${parsed.fileSeq} that no signed digest names and whose records differ from the archived ones`
            : `a data file for file ${parsed.fileSeq} stored without its digest: the shipper stopped between the two writes ` +
              '(it seals these records again when it restarts), or the file was added',
      });
      continue;
    }
    findings.push({ code: 'foreign-object', where: key, message: 'an object that is not part of the archive layout' });
  }
  return { findings, notes };
}

/**
 * 'same': every line is the archived line with its seq, byte for byte. 'backfill': every line is a
 * backfill record whose archived counterpart (same seq) is a backfill record of the same row, equal in
 * everything but `chain`, `lsn` and `idx`: a backfill interrupted by a crash starts again from a new
 * snapshot, whose WAL position differs, so its records cannot be byte-identical. null: neither.
 */
async function supersededCopy(reader: ArchiveReader, key: string, fileSeq: number, objectOf: ObjectIndex): Promise<'same' | 'backfill' | null> {
  const same = await isSupersededCopy(reader, key, fileSeq, objectOf, (a, b) => a === b);
  if (same) return 'same';
  return (await isSupersededCopy(reader, key, fileSeq, objectOf, sameBackfillRecord)) ? 'backfill' : null;
}

function sameBackfillRecord(archived: string, copy: string): boolean {
  const strip = (line: string): string | null => {
    try {
      const { chain: _c, lsn: _l, idx: _i, ...rest } = JSON.parse(line) as Record<string, unknown>;
      return rest.op === 'insert' && typeof rest.backfill === 'string' ? JSON.stringify(rest) : null;
    } catch {
      return null;
    }
  };
  const a = strip(archived);
  return a !== null && a === strip(copy);
}

async function isSupersededCopy(
  reader: ArchiveReader,
  key: string,
  fileSeq: number,
  objectOf: ObjectIndex,
  equal: (archived: string, copy: string) => boolean,
): Promise<boolean> {
  // The shipper names a file by the hash of its content: a renamed or edited file fails this.
  const body = await reader.get(key);
  const content = body ? tryGunzip(body) : null;
  if (!content || sha256Hex(content).slice(0, 16) !== /-([0-9a-f]{16})\.jsonl\.gz$/.exec(key)?.[1]) return false;
  const copy = recordLines(content);
  if (!copy || copy.length === 0) return false;
  // The archived chain hashes over the copy's records. The shipper stores a few files' data ahead
  // of their digests, so after a crash the records may have been sealed again under earlier
  // numbers, cut differently: start at the archived file that holds the copy's first record.
  const archived = new Map<number, string>(); // seq -> the verified archive's line
  const last = copy[copy.length - 1]!.seq;
  let start = Math.min(fileSeq, objectOf.newestSeq);
  if (!objectOf.has(start)) return false; // its own digest is missing or bad: not a copy of anything verified
  while (start > 1 && objectOf.has(start - 1)) {
    const lines = await linesOf(reader, objectOf.get(start)!);
    if (!lines?.length || lines[0]!.seq <= copy[0]!.seq) break;
    start--;
  }
  for (let seq = start; objectOf.has(seq); seq++) {
    const lines = await linesOf(reader, objectOf.get(seq)!);
    if (!lines || lines.length === 0) return false;
    for (const l of lines) archived.set(l.seq, l.line);
    if (lines[lines.length - 1]!.seq >= last) break;
  }
  return copy.every((l) => {
    const a = archived.get(l.seq);
    return a !== undefined && equal(a, l.line);
  });
}

async function linesOf(reader: ArchiveReader, key: string): Promise<{ seq: number; line: string }[] | null> {
  const body = await reader.get(key);
  const content = body ? tryGunzip(body) : null;
  return content ? recordLines(content) : null;
}

function tryGunzip(b: Buffer): Buffer | null {
  try {
    return gunzipSync(b);
  } catch {
    return null;
  }
}
