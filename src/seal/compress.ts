import { Worker } from 'node:worker_threads';
import { constants as zc } from 'node:zlib';

/**
 * gzip because every query engine and `zcat` read it. Level 3: on audit JSON it compresses ~11.9x
 * against level 6's ~12.6x, at 2.5x the speed (330 vs 130 MB/s on this project's benchmark machine),
 * and compression competes for the same cores as the database's own decoding.
 */
const GZIP_OPTIONS = { level: 3, memLevel: 9, strategy: zc.Z_DEFAULT_STRATEGY };

/** A file's bytes, hashed (and compressed unless `raw`). */
export interface Packed {
  /** SHA-256 (hex) of the JSON lines */
  contentSha256: string;
  /** what is stored: the gzip member, or the lines themselves when raw */
  body: Buffer;
  /** SHA-256 (hex) of body */
  bodySha256: string;
}

// The worker's whole program. Inline (not a file beside this one) so it runs the same from the
// compiled package, from the TypeScript sources under test, and from a bundle.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { gzipSync } = require('node:zlib');
parentPort.on('message', ({ id, parts, raw, options }) => {
  try {
    const chunks = parts.map((p) => Buffer.from(p.buffer, 0, p.length));
    const h = createHash('sha256');
    for (const c of chunks) h.update(c);
    const contentSha256 = h.digest('hex');
    const content = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const body = raw ? content : gzipSync(content, options);
    const bodySha256 = raw ? contentSha256 : createHash('sha256').update(body).digest('hex');
    // A fresh ArrayBuffer that holds exactly the body, so it can be handed over without a copy.
    const out = body.byteOffset === 0 && body.buffer.byteLength === body.length ? body.buffer : body.buffer.slice(body.byteOffset, body.byteOffset + body.length);
    parentPort.postMessage({ id, contentSha256, body: out, bodySha256 }, [out]);
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.stack || err) });
  }
});
`;

interface Reply {
  id: number;
  contentSha256?: string;
  body?: ArrayBuffer;
  bodySha256?: string;
  error?: string;
}

/**
 * Hashing and compressing a file's megabytes run in one worker thread, so the thread that reads
 * the replication stream never stops for them. The chunks are handed over, not copied: the caller
 * must not touch them afterwards.
 */
class Packer {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (p: Packed) => void; reject: (e: Error) => void }>();

  pack(chunks: Buffer[], raw: boolean): Promise<Packed> {
    const worker = this.start();
    const id = this.nextId++;
    const parts = chunks.map(transferable);
    return new Promise<Packed>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.ref();
      worker.postMessage(
        { id, parts, raw, options: GZIP_OPTIONS },
        parts.map((p) => p.buffer),
      );
    });
  }

  start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on('message', (m: Reply) => {
      const job = this.pending.get(m.id);
      if (!job) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) worker.unref(); // an idle worker must not keep the process alive
      if (m.error !== undefined) job.reject(new Error(`compressing a file failed: ${m.error}`));
      else job.resolve({ contentSha256: m.contentSha256!, body: Buffer.from(m.body!), bodySha256: m.bodySha256! });
    });
    const fail = (err: Error) => {
      if (this.worker !== worker) return; // 'error' and then 'exit': told once
      this.worker = null;
      for (const job of this.pending.values()) job.reject(new Error(`the compression worker stopped: ${err.message}`));
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exit code ${code}`)));
    worker.unref();
    this.worker = worker;
    return worker;
  }
}

/**
 * A chunk as an ArrayBuffer to hand over. Buffers of more than half the pool size never share
 * theirs (Buffer.allocUnsafe's contract), so those go as they are; anything smaller is copied.
 */
function transferable(b: Buffer): { buffer: ArrayBuffer; length: number } {
  if (b.byteOffset === 0 && b.buffer instanceof ArrayBuffer && b.length >= Buffer.poolSize >>> 1) {
    return { buffer: b.buffer, length: b.length };
  }
  const copy = new ArrayBuffer(b.length);
  new Uint8Array(copy).set(b);
  return { buffer: copy, length: b.length };
}

const packer = new Packer();

/** Hash `chunks` (the file's lines in order) and gzip them unless `raw`; the chunks are consumed. */
export function pack(chunks: Buffer[], raw: boolean): Promise<Packed> {
  return packer.pack(chunks, raw);
}

/** Start the worker now (it takes tens of milliseconds), so the first file does not wait for it. */
export function prepareCompression(): void {
  packer.start();
}
