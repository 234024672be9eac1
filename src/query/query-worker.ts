// A worker thread of `query`: checks the data files it is sent against their signed digests and
// matches their records. Built beside the module that starts it, as src/verify/verify-worker.ts is.
import { parentPort } from 'node:worker_threads';
import type { Digest } from '../seal/digest.js';
import type { ChainState } from '../verify/links.js';
import { serveRequests } from '../verify/worker-pool.js';
import type { Query } from './filter.js';
import { checkAndMatch } from './file-match.js';

serveRequests(parentPort, 'query-worker.js', (m) => {
  const digest = m.digest as Digest;
  try {
    return checkAndMatch(m.body, digest, m.before as ChainState, m.query as Query, (m.unattributed as Query | null) ?? null);
  } catch (err) {
    throw new Error(`checking file ${digest.file_seq} failed: ${(err as Error).message}`);
  }
});
