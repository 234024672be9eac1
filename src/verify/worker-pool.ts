import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FileChecker, FileOutcome, FileTask, Wanted } from './file-check.js';

/**
 * Files checked by worker threads: gunzip, two SHA-256 passes and a chain hash per record cost
 * ~7.6 us a record on one core, while the walk itself (a digest's signature and links, ~0.3 ms a
 * file of 10,000 records) is light, so N workers beside the walk scale with the cores. Each worker
 * holds at most two files (one being checked, one queued), so memory is bounded by 2 x N files.
 *
 * worker_threads directly, not a pool library: a fixed set of workers, request and reply by id,
 * is ~80 lines; piscina loads its own wrapper script by path, which the CLI's one-file bundle cannot
 * hold, and its queues, timeouts and resizing are not needed here.
 */
export const PER_WORKER = 2;

/** A script beside the module that names it: dist/src/NAME (bundle) or dist/src/<folder>/NAME (tsc). */
export function scriptPath(script: URL | string): string {
  const path = typeof script === 'string' ? script : fileURLToPath(script);
  if (!existsSync(path)) throw new Error(`the worker script ${path} is missing: rebuild (npm run build), or run with --workers 0`);
  return path;
}

interface Pending {
  resolve: (o: unknown) => void;
  reject: (e: Error) => void;
  worker: number;
}

/**
 * N workers running `script`, each sent `{ id, ...request }` and answering `{ id, result }` or
 * `{ id, error }`. A request's `body` (a Buffer) is copied once and the copy moved to the worker.
 */
export class WorkerPool {
  readonly window: number;
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failed: Error | null = null;

  constructor(count: number, script: URL | string) {
    const path = scriptPath(script);
    this.window = count * PER_WORKER;
    for (let i = 0; i < count; i++) {
      const w = new Worker(path);
      w.on('message', (m: { id: number; result?: unknown; error?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.load[i]!--;
        if (m.error === undefined) p.resolve(m.result);
        else p.reject(new Error(m.error));
      });
      // A worker that dies takes its files with it: every file in flight fails, and so does the run
      // (exit 2, could not run), never a verdict over files nobody checked.
      const die = (err: Error): void => {
        this.failed ??= err;
        for (const [id, p] of this.pending) {
          if (p.worker !== i) continue;
          this.pending.delete(id);
          p.reject(err);
        }
      };
      w.on('error', die);
      w.on('exit', (code) => die(new Error(`a worker thread stopped (exit code ${code})`)));
      this.workers.push(w);
      this.load.push(0);
    }
  }

  run<T>(request: Record<string, unknown> & { body?: Buffer | null }): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.load[i]! < this.load[w]!) w = i;
    const id = this.nextId++;
    const body = request.body ?? null;
    // One copy into an ArrayBuffer of its own, which then moves to the worker. Node 22 and later
    // refuse to move the ArrayBuffers behind Buffers they allocate (pooled or not: "Cannot transfer
    // object of unsupported type"), and a plain clone would copy a pooled Buffer's whole pool.
    // The caller keeps its Buffer (query writes it into evidence packages).
    const own = body ? new Uint8Array(body) : null;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (o: unknown) => void, reject, worker: w });
      this.load[w]!++;
      this.workers[w]!.postMessage({ ...request, id, body: own }, own ? [own.buffer] : []);
    });
  }

  async close(): Promise<void> {
    this.failed ??= new Error('the worker threads were closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** verify's checker on a pool of src/verify/verify-worker.ts. */
export function workerChecker(count: number, want: Wanted, script: URL | string = new URL('./verify-worker.js', import.meta.url)): FileChecker {
  const pool = new WorkerPool(count, script);
  return {
    window: pool.window,
    check: (t: FileTask) => pool.run<FileOutcome>({ body: t.body, digest: t.digest, before: t.before, want }),
    close: () => pool.close(),
  };
}

/** Answer a pool's requests in a worker script: `handle` gets each request (its body a Buffer again). */
export function serveRequests(
  port: import('node:worker_threads').MessagePort | null,
  name: string,
  handle: (m: Record<string, unknown> & { body: Buffer | null }) => unknown,
): void {
  if (!port) throw new Error(`${name} runs as a worker thread of pg-audit-shipper`);
  port.on('message', (m: Record<string, unknown> & { id: number; body: Uint8Array | null }) => {
    try {
      const b = m.body;
      const body = b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : null;
      port.postMessage({ id: m.id, result: handle({ ...m, body }) });
    } catch (err) {
      port.postMessage({ id: m.id, error: (err as Error).message });
    }
  });
}
