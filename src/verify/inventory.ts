import { gunzipSync } from 'node:zlib';
import type { ArchiveReader } from '../sink/sink.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { DATA_DIR, DIGEST_DIR, digestKey, parseDataKey, parseDigestKey, STREAM_DIR } from '../sink/keys.js';
import { sha256Hex } from '../seal/digest.js';
import { recordLines, type ChainReport, type Finding } from './chain.js';

/**
 * Which objects a run judges, and how it learns what a digest names. One run over the archive
 * judges all, from its own index; a shard (shards.ts) judges the data files of its blocks, shard 0
 * everything else, and looks up digests outside its blocks when a leftover copy needs them.
 */
export interface InventoryScope {
  owns(fileSeq: number): boolean;
  /** objects of no file: foreign objects, misnamed ones, files before the start, the digest folder's strays */
  globals: boolean;
  /** the object a digest that verifies names (a digest this run did not walk is read and checked) */
  objectAt(fileSeq: number): Promise<string | undefined>;
  newestSeq: number;
}

export interface InventoryItem {
  finding: Finding;
  note: boolean;
  /** the file it concerns, when its name says */
  fileSeq: number | null;
}

/** How long a data file past the walked head may wait for its digest (the shipper stores it right after). */
export const DIGEST_FOLLOWS_MS = 1000;

async function digestFollows(reader: ArchiveReader, fileSeq: number): Promise<boolean> {
  if (await reader.exists(digestKey(fileSeq))) return true;
  await sleep(DIGEST_FOLLOWS_MS);
  return reader.exists(digestKey(fileSeq));
}

/**
 * Everything stored must be accounted for by the chain: a data file no digest names (a copy under
 * another name, a file slipped in) and any object outside digests/ and data/ are findings.
 */
export async function checkInventory(
  reader: ArchiveReader,
  chain: Pick<ChainReport, 'objects' | 'firstSeq'> & Partial<Pick<ChainReport, 'cut' | 'lastSeq'>>,
  scope?: InventoryScope,
): Promise<{ findings: Finding[]; notes: Finding[]; items: InventoryItem[] }> {
  const items: InventoryItem[] = [];
  const add = (finding: Finding, note: boolean, fileSeq: number | null): void => {
    items.push({ finding, note, fileSeq });
  };
  const globals = scope?.globals ?? true;
  const objectAt = scope ? scope.objectAt : (seq: number) => Promise.resolve(chain.objects.get(seq));
  const newest = scope ? scope.newestSeq : chain.objects.newestSeq;
  /** the newest digest the walk saw listed: a data file past it was stored after the walk */
  const listed = scope ? scope.newestSeq : (chain.lastSeq ?? newest);
  for await (const key of reader.list('')) {
    if (key.startsWith(DIGEST_DIR)) {
      // The walk judged the digests; a shard's walk lists only its blocks, so shard 0 looks for strays here.
      if (scope && globals && parseDigestKey(key) === null)
        add({ code: 'unexpected-object', where: key, message: 'an object in the digest folder that is not a digest' }, false, null);
      continue;
    }
    if (key.startsWith(STREAM_DIR)) continue; // delivered by a stream: its lines were checked as the files they belong to
    if (key.startsWith(DATA_DIR)) {
      const parsed = parseDataKey(key);
      // After the cut (--through): stored since the run began, or left for the next one.
      if (parsed && chain.cut != null && parsed.fileSeq > chain.cut) continue;
      if (parsed && parsed.fileSeq < chain.firstSeq) {
        if (globals)
          add(
            { code: 'before-start', where: key, message: `file ${parsed.fileSeq} lies before the starting point (file ${chain.firstSeq}): not checked` },
            true,
            null,
          );
        continue;
      }
      const pastHead = parsed !== null && parsed.fileSeq > listed;
      // A data file past the archive's newest digest belongs to no shard's blocks: shard 0 judges it, as one run would.
      if (parsed ? scope && !scope.owns(parsed.fileSeq) && !(globals && pastHead) : !globals) continue;
      // Named by a digest this run verified. Past the head, only a digest of another file can name
      // it (already an object-key-mismatch finding), and the shard that judges it cannot know: it
      // is judged below like any file past the head, so every run gives the same verdict.
      if (chain.objects.names(key) && !pastHead) continue;
      // Past the newest digest this run walked: a shipper running beside verify stored it after the
      // walk, and its digest is there by now (or within a second: the shipper writes the digest
      // right after the file). The next run judges it; a file whose digest never comes is judged
      // below like any other (a shipper stopped between the two writes, or an added file).
      if (pastHead && (await digestFollows(reader, parsed.fileSeq))) {
        add(
          {
            code: 'sealed-after-walk',
            where: key,
            message: `file ${parsed.fileSeq} was sealed after this run walked the chain (to file ${listed}): the next run checks it`,
          },
          true,
          parsed.fileSeq,
        );
        continue;
      }
      // A shipper stopped between storing a file and its digest seals the same records again
      // after restart, maybe cut differently. A copy whose every line is byte for byte the line the
      // archive holds at that sequence number is those same records: harmless. Comparing only the
      // chain hash is not enough: a made-up body can carry a real record's seq and chain value.
      const copy = parsed && newest > 0 ? await supersededCopy(reader, key, parsed.fileSeq, objectAt, newest) : null;
      const seq = parsed?.fileSeq ?? null;
      if (copy === 'same') {
        add(
          {
            code: 'superseded-copy',
            where: key,
            message: `file ${parsed!.fileSeq} as first written before an interrupted shutdown; its records are in the chain, sealed again under the name the digest gives`,
          },
          true,
          seq,
        );
        continue;
      }
      if (copy === 'backfill') {
        add(
          {
            code: 'superseded-backfill-copy',
            where: key,
            message:
              `file ${parsed!.fileSeq} as first written by a backfill that was interrupted; the backfill started again from a new snapshot ` +
              'and archived the same rows, at the same places, under its own WAL position: the rows are in the chain',
          },
          true,
          seq,
        );
        continue;
      }
      add(
        {
          code: 'unreferenced-object',
          where: key,
          message: !parsed
            ? 'an object in the data folder that no signed digest names'
            : (await objectAt(parsed.fileSeq)) !== undefined
              ? `a data file for file ${parsed.fileSeq} that no signed digest names and whose records differ from the archived ones`
              : `a data file for file ${parsed.fileSeq} stored without its digest: the shipper stopped between the two writes ` +
                '(it seals these records again when it restarts), or the file was added',
        },
        false,
        seq,
      );
      continue;
    }
    if (globals) add({ code: 'foreign-object', where: key, message: 'an object that is not part of the archive layout' }, false, null);
  }
  return { findings: items.filter((i) => !i.note).map((i) => i.finding), notes: items.filter((i) => i.note).map((i) => i.finding), items };
}

/**
 * 'same': every line is the archived line with its seq, byte for byte. 'backfill': every line is a
 * backfill record whose archived counterpart (same seq) is a backfill record of the same row, equal in
 * everything but `chain`, `lsn` and `idx`: a backfill interrupted by a crash starts again from a new
 * snapshot, whose WAL position differs, so its records cannot be byte-identical. null: neither.
 */
type ObjectAt = (fileSeq: number) => Promise<string | undefined>;

async function supersededCopy(reader: ArchiveReader, key: string, fileSeq: number, objectAt: ObjectAt, newest: number): Promise<'same' | 'backfill' | null> {
  const same = await isSupersededCopy(reader, key, fileSeq, objectAt, newest, (a, b) => a === b);
  if (same) return 'same';
  return (await isSupersededCopy(reader, key, fileSeq, objectAt, newest, sameBackfillRecord)) ? 'backfill' : null;
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
  objectAt: ObjectAt,
  newest: number,
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
  let start = Math.min(fileSeq, newest);
  if ((await objectAt(start)) === undefined) return false; // its own digest is missing or bad: not a copy of anything verified
  while (start > 1 && (await objectAt(start - 1)) !== undefined) {
    const lines = await linesOf(reader, (await objectAt(start))!);
    if (!lines?.length || lines[0]!.seq <= copy[0]!.seq) break;
    start--;
  }
  for (let seq = start; ; seq++) {
    const at = await objectAt(seq);
    if (at === undefined) break;
    const lines = await linesOf(reader, at);
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
