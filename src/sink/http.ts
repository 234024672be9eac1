import { ConfigError } from '../errors.js';
import { parseDuration } from '../duration.js';

/**
 * How every storage and delivery-stream request is bounded (S3, Firehose). Without a timeout, an
 * endpoint that accepts the connection and never answers (a load balancer or NAT that lost its
 * state) held a PUT forever: no retry, no warning, shipping frozen. With one, the request fails and
 * is retried like any other failure. The request timeout is the socket's idle time, not the whole
 * upload's: an 8 MiB file on a slow link is not cut off while bytes move.
 * AUDIT_STORAGE_TIMEOUT (default 30s) sets it; connecting gets at most 10 s of it.
 */
export function storageRequestHandler(env: NodeJS.ProcessEnv = process.env): {
  connectionTimeout: number;
  requestTimeout: number;
  throwOnRequestTimeout: true;
} {
  const raw = env.AUDIT_STORAGE_TIMEOUT;
  const ms = raw === undefined || raw === '' ? 30_000 : parseDuration(raw);
  if (ms === null || ms < 100 || ms > 3_600_000) {
    throw new ConfigError(
      `AUDIT_STORAGE_TIMEOUT ${JSON.stringify(raw)} is not a duration between 100ms and 1h (e.g. 30s): how long a storage request may go without an answer`,
    );
  }
  // throwOnRequestTimeout: from @smithy/node-http-handler 4.4 an exceeded requestTimeout only warns unless this is set.
  return { connectionTimeout: Math.min(ms, 10_000), requestTimeout: ms, throwOnRequestTimeout: true };
}
