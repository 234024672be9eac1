// A worker thread of `verify`: checks the data files it is sent (gunzip, SHA-256 of the object and
// its content, every record's chain hash, the per-record rules) and sends back what the walk needs.
// Built twice, beside the module that starts it: by tsc (dist/src/verify/) and as a bundle of its
// own beside the CLI bundle (dist/src/), so `new URL('./verify-worker.js', import.meta.url)` finds it in both.
import { parentPort } from 'node:worker_threads';
import { checkTask, type FileTask } from './file-check.js';

interface Request {
  id: number;
  task: Omit<FileTask, 'body'> & { body: Uint8Array | null };
  keepLines: boolean;
}

const port = parentPort;
if (!port) throw new Error('verify-worker.js runs as a worker thread of pg-audit-shipper verify');
port.on('message', (m: Request) => {
  try {
    const b = m.task.body;
    const body = b ? Buffer.from(b.buffer, b.byteOffset, b.byteLength) : null;
    port.postMessage({ id: m.id, outcome: checkTask({ ...m.task, body }, m.keepLines) });
  } catch (err) {
    port.postMessage({ id: m.id, error: `checking file ${m.task.digest.file_seq} failed: ${(err as Error).message}` });
  }
});
