import { ServiceError } from '../../errors.js';

/** A refused or failed request: its HTTP status (when there was an answer) and what Google said. */
export interface GoogleFailure {
  status: number | undefined;
  said: string;
}

/**
 * POSTs to a Google REST API, signed by Google's auth library with the application default
 * credentials (a service account's key, workload identity, the metadata server) and `scope`; the
 * library is loaded on first use. Throttling (429) and unavailability (5xx) are retried with backoff
 * by the library's HTTP client, 6 times; anything else is a ServiceError, said by `noCredentials`
 * and `failed` (which name the source, the role to grant, what to check).
 */
export function googleRest(
  scope: string,
  noCredentials: (message: string) => string,
  failed: (what: string, f: GoogleFailure) => string,
): (url: string, data: object, what: string) => Promise<unknown> {
  let client: Promise<{ request: (o: object) => Promise<{ data: unknown }> }> | null = null;
  const connect = () =>
    (client ??= import('google-auth-library').then(async (m) => {
      const auth = new m.GoogleAuth({ scopes: [scope] });
      return (await auth.getClient()) as unknown as { request: (o: object) => Promise<{ data: unknown }> };
    }));
  return async (url, data, what) => {
    let c;
    try {
      c = await connect();
    } catch (err) {
      client = null;
      throw new ServiceError(noCredentials((err as Error).message));
    }
    try {
      const r = await c.request({
        url,
        method: 'POST',
        data,
        retry: true,
        retryConfig: {
          retry: 6,
          statusCodesToRetry: [
            [429, 429],
            [500, 599],
          ],
          httpMethodsToRetry: ['POST'],
        },
      });
      return r.data;
    } catch (err) {
      const e = err as { status?: number; response?: { status?: number; data?: { error?: { message?: string } } }; message: string };
      throw new ServiceError(failed(what, { status: e.response?.status ?? e.status, said: e.response?.data?.error?.message ?? e.message }));
    }
  };
}
