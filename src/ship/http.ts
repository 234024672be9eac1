import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { ConfigError } from '../errors.js';

export interface Health {
  /** connected to the database and streaming */
  ready: () => boolean;
  /** seconds since the last durable write, to call a stall */
  secondsSinceDurableWrite: () => number;
  stallSeconds: number;
  /** components that are failing, in words ("ingest: failed: ..."); any makes the sidecar not ready */
  problems?: () => string[];
}

/** /healthz (alive), /readyz (connected, not stalled), /metrics (Prometheus). */
export async function startHttp(port: number, registry: Registry, health: Health): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const since = health.secondsSinceDurableWrite();
      const problems = health.problems?.() ?? [];
      const ok = health.ready() && since < health.stallSeconds && problems.length === 0;
      res
        .writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' })
        .end(
          ok
            ? 'ready\n'
            : !health.ready()
              ? 'not connected\n'
              : problems.length > 0
                ? `${problems.join('\n')}\n`
                : `stalled: nothing stored for ${Math.round(since)}s\n`,
        );
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE' || err.code === 'EACCES'
          ? new ConfigError(
              `--http-port (AUDIT_HTTP_PORT) ${port} ${err.code === 'EADDRINUSE' ? 'is in use by another process' : 'may not be used by this user'}: ` +
                'choose another port, or 0 to serve no health and metrics endpoint',
            )
          : err,
      ),
    );
    server.listen(port, '0.0.0.0', () => resolve());
  });
  return server;
}
