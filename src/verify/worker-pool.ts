import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FileChecker, FileOutcome, FileTask } from './file-check.js';

/**
 * Files checked by worker threads: gunzip, two SHA-256 passes and a chain hash per record cost
 * ~14 us a record on one core, while the walk itself (a digest's signature, ~0.15 ms a file of
 * 10,000 records) is light, so N workers beside the walk scale with the cores. Each worker holds at
 * most two files (one being checked, one queued), so memory is bounded by 2 x N files.
 *
 * worker_threads directly, not a pool library: a fixed set of workers, request and reply by id,
 * is ~80 lines; piscina loads its own wrapper script by path, which the CLI's one-file bundle cannot
 * hold, and its queues, timeouts and resizing are not needed here.
 */
export const PER_WORKER = 2;

/** The worker script beside this module: dist/src/verify-worker.js (bundle) or dist/src/verify/verify-worker.js (tsc). */
export function defaultWorkerScript(): URL {
  return new URL('./verify-worker.js', import.meta.url);
}

interface Pending {
  resolve: (o: FileOutcome) => void;
  reject: (e: Error) => void;
  worker: number;
}

export class WorkerChecker implements FileChecker {
  readonly window: number;
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failed: Error | null = null;

  constructor(
    count: number,
    private readonly keepLines: boolean,
    script: URL | string = defaultWorkerScript(),
  ) {
    const path = typeof script === 'string' ? script : fileURLToPath(script);
    if (!existsSync(path)) throw new Error(`the verify worker script ${path} is missing: rebuild (npm run build), or run with --workers 0`);
    this.window = count * PER_WORKER;
    for (let i = 0; i < count; i++) {
      const w = new Worker(path);
      w.on('message', (m: { id: number; outcome?: FileOutcome; error?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        this.load[i]!--;
        if (m.outcome) p.resolve(m.outcome);
        else p.reject(new Error(m.error ?? 'a verify worker answered nothing'));
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
      w.on('exit', (code) => die(new Error(`a verify worker stopped (exit code ${code})`)));
      this.workers.push(w);
      this.load.push(0);
    }
  }

  check(task: FileTask): Promise<FileOutcome> {
    if (this.failed) return Promise.reject(this.failed);
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.load[i]! < this.load[w]!) w = i;
    const id = this.nextId++;
    const body = task.body;
    // The bytes move to the worker (no copy) when the Buffer owns its whole ArrayBuffer; a slice of
    // Node's shared pool is copied first, as moving it would take its neighbours along.
    const own = body && body.byteOffset === 0 && body.byteLength === body.buffer.byteLength ? body : body ? Buffer.from(body) : null;
    return new Promise<FileOutcome>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, worker: w });
      this.load[w]!++;
      this.workers[w]!.postMessage({ id, task: { ...task, body: own }, keepLines: this.keepLines }, own ? [own.buffer as ArrayBuffer] : []);
    });
  }

  async close(): Promise<void> {
    this.failed ??= new Error('the verify workers were closed');
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
