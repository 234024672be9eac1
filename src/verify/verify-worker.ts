// A worker thread of `verify`: checks the data files it is sent (gunzip, SHA-256 of the object and
// its content, every record's chain hash, the per-record rules) and sends back what the walk needs.
// Built twice, beside the module that starts it: by tsc (dist/src/verify/) and as a bundle of its
// own beside the CLI bundle (dist/src/), so `new URL('./verify-worker.js', import.meta.url)` finds it in both.
import { parentPort } from 'node:worker_threads';
import type { Digest } from '../seal/digest.js';
import { checkTask, type Wanted } from './file-check.js';
import type { ChainState } from './links.js';
import { serveRequests } from './worker-pool.js';

serveRequests(parentPort, 'verify-worker.js', (m) => {
  const digest = m.digest as Digest;
  try {
    return checkTask({ body: m.body, digest, before: m.before as ChainState }, m.want as Wanted);
  } catch (err) {
    throw new Error(`checking file ${digest.file_seq} failed: ${(err as Error).message}`);
  }
});
