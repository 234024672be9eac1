import { open, readdir, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { CsvRecordStream, parseCsvLine } from '../../src/capture/ingest/csv.js';
import { toLogLine } from '../../src/capture/ingest/csvlog.js';
import type { CloudLogEntry } from '../../src/capture/ingest/cloud-logging.js';

/**
 * A stand-in for what a Cloud SQL instance's pgaudit lines become in Google Cloud: Data Access audit
 * log entries (`PgAuditEntry`) read through Cloud Logging's REST `entries.list`, and the GCE
 * metadata server that gives the credentials' access token (Google's auth library reads
 * GCE_METADATA_HOST, its documented way to point at another metadata server). No Google Cloud
 * project is reachable from the tests. The entries are made from the real PostgreSQL's csvlog, from
 * the pgaudit lines written after the fake started, as Cloud SQL makes them: one entry per line,
 * the log time as the entry's timestamp, a statement longer than `chunkChars` cut into chunks
 * (chunkIndex of chunkCount). It behaves as the API is documented to, taking the worst reading
 * where it is silent:
 * - an entry is readable only `delayMs` after it was written (ingestion delay);
 * - a page holds at most `pageSize` entries (the caller's pageSize is an upper bound), with a
 *   nextPageToken; within one timestamp the order is the reverse of the log's;
 * - an entry is listed twice now and then (the API dedupes only within one result);
 * - every fifth request is throttled (HTTP 429, RESOURCE_EXHAUSTED), which the client retries;
 * - a request without the metadata server's token is refused (HTTP 401).
 * The filter is read for its timestamp bounds and the instance; the rest of it is checked to be
 * the one the ingester sends.
 */
/** The most messages one pull returns (the ingester asks for 1,000). */
const PULL_CAP = 50;

export interface FakeCloudLogging {
  /** Cloud Logging's endpoint (--cloud-logging-endpoint), and Pub/Sub's (--pubsub-endpoint) */
  url: string;
  /**
   * A log sink to a Pub/Sub topic and its subscription (`projects/<project>/subscriptions/pgaudit`),
   * REST `pull`, `acknowledge` and `modifyAckDeadline`, as Pub/Sub is documented to behave without
   * exactly-once delivery, taking the worst reading where it is silent: each made entry is published
   * as one message (data: the LogEntry as JSON, base64) once readable; a pull returns at most
   * PULL_CAP messages (fewer than asked) in no order (a subscription keeps none); a message not
   * acknowledged within `ackDeadlineMs` (or its modified deadline) is delivered again under a new
   * ackId, and only its newest ackId acknowledges it; every fifth acknowledged message, and every
   * second chunk of a long line, is delivered once more anyway (at least once); every fifth pull is
   * throttled (429).
   */
  pubsub: {
    subscription: string;
    /** messages delivered, and delivered again */
    deliveries: number;
    redeliveries: number;
    /** refuse acknowledgements (HTTP 400) while set */
    refuseAcks: boolean;
    /** deliver nothing while set (an idle subscription) */
    idle: boolean;
    /** publish raw bytes to the topic, as anyone with roles/pubsub.publisher on it could */
    publish(data: Buffer): void;
    /** messages not acknowledged yet whose entry holds this text */
    unacked(text: string): number;
  };
  /** for GCE_METADATA_HOST */
  metadataHost: string;
  /** the environment that points Google's auth library at the fake metadata server, and at nothing of a developer's own */
  googleEnv(): Record<string, string>;
  requests: { filter: string; pageToken?: string; entries: number }[];
  throttled: number;
  /** chunks never delivered: statements holding this text lose their second chunk */
  dropChunkOf: string | null;
  close(): Promise<void>;
}

export async function fakeCloudLogging(
  logDir: string,
  where: { project: string; instance: string },
  opts: { delayMs?: number; pageSize?: number; chunkChars?: number; ackDeadlineMs?: number } = {},
): Promise<FakeCloudLogging> {
  const delayMs = opts.delayMs ?? 300;
  const pageSize = opts.pageSize ?? 3;
  const chunkChars = opts.chunkChars ?? 4000;
  const token = `ya29.fake-${Date.now()}`;
  const since = new Map<string, number>();
  for (const n of await readdir(logDir)) since.set(n, (await stat(path.join(logDir, n))).size);
  /** entries made so far, with when each became readable; and how far into each file they were made */
  const made: { entry: CloudLogEntry; readableAt: number }[] = [];
  const upTo = new Map<string, number>();
  let serial = 0;

  let collecting: Promise<void> = Promise.resolve();
  /** New pgaudit lines of the csvlog become entries (complete records only; only the bytes written since the last look are read). */
  const collect = async () => {
    for (const name of (await readdir(logDir)).filter((n) => n.endsWith('.csv')).sort()) {
      const size = (await stat(path.join(logDir, name))).size;
      let from = upTo.get(name) ?? since.get(name) ?? 0;
      if (size <= from) continue;
      const fh = await open(path.join(logDir, name), 'r');
      let bytes: Buffer;
      try {
        const start = upTo.has(name) || from === 0 ? from : from - 1;
        bytes = Buffer.alloc(size - start);
        await fh.read(bytes, 0, bytes.length, start);
        if (start < from) {
          // A file that existed when the fake started: its entries begin with the first line after that.
          const nl = bytes.indexOf(0x0a);
          if (nl < 0) continue;
          from = start + nl + 1;
          bytes = bytes.subarray(nl + 1);
        }
      } finally {
        await fh.close();
      }
      const parser = new CsvRecordStream(from, 1 << 24);
      const records = parser.push(bytes);
      upTo.set(name, records.length > 0 ? records[records.length - 1]!.end : from);
      for (const rec of records) {
        const line = toLogLine(rec.fields);
        if (!line || line.errorSeverity !== 'LOG' || !line.message.startsWith('AUDIT: ')) continue;
        const f = parseCsvLine(line.message.slice('AUDIT: '.length));
        if (!f || f.length < 9) continue;
        const [auditType, statementId, substatementId, auditClass, command, objectType, object, statement, parameter] = f as string[];
        const timestamp = new Date(line.logTime.replace(' UTC', 'Z').replace(' ', 'T')).toISOString();
        const chunks: string[] = [];
        for (let i = 0; i < statement!.length || i === 0; i += chunkChars) chunks.push(statement!.slice(i, i + chunkChars));
        chunks.forEach((chunk, i) => {
          if (fake.dropChunkOf && statement!.includes(fake.dropChunkOf) && i === 1) return;
          made.push({
            readableAt: Date.parse(timestamp) + delayMs,
            entry: {
              insertId: `${(++serial).toString(36)}x${line.sessionLineNum}`,
              timestamp,
              protoPayload: {
                request: {
                  '@type': 'type.googleapis.com/google.cloud.sql.audit.v1.PgAuditEntry',
                  auditClass,
                  auditType,
                  chunkCount: String(chunks.length),
                  chunkIndex: String(i + 1),
                  command,
                  database: line.databaseName,
                  databaseSessionId: line.processId ?? 0,
                  object,
                  objectType,
                  parameter: i === 0 ? parameter : '',
                  statement: chunk,
                  statementId: Number(statementId),
                  substatementId: Number(substatementId),
                  user: line.userName,
                },
              },
            },
          });
        });
      }
    }
  };

  /** The subscription's messages: published from `made` as they become readable (`published` of them so far). */
  interface Message {
    id: string;
    data: string;
    publishTime: string;
    acked: boolean;
    /** the ackId of its newest delivery, and until when it is out */
    ackId: string | null;
    outUntil: number;
    deliveries: number;
    againAfterAck: boolean;
  }
  const messages: Message[] = [];
  let published = 0;
  let ackSerial = 0;
  let pulls = 0;
  const ackDeadlineMs = opts.ackDeadlineMs ?? 1000;
  const publish = (data: string, againAfterAck = messages.length % 5 === 2) => {
    messages.push({
      id: String(1000 + messages.length),
      data,
      publishTime: new Date().toISOString(),
      acked: false,
      ackId: null,
      outUntil: 0,
      deliveries: 0,
      againAfterAck,
    });
  };
  const publishReadable = () => {
    const now = Date.now();
    // `made` grows in log order and readableAt follows the log time: publish the readable prefix.
    while (published < made.length && made[published]!.readableAt <= now) {
      const e = made[published++]!.entry;
      const logEntry = {
        ...e,
        logName: `projects/${where.project}/logs/cloudaudit.googleapis.com%2Fdata_access`,
        resource: {
          type: 'cloudsql_database',
          labels: { database_id: `${where.project}:${where.instance}`, project_id: where.project, region: 'europe-west1' },
        },
        receiveTimestamp: new Date(now).toISOString(),
      };
      // Every second chunk of a long line is among those delivered again after their acknowledgement.
      const chunkIndex = String(e.protoPayload?.request?.chunkIndex ?? '1');
      publish(Buffer.from(JSON.stringify(logEntry)).toString('base64'), chunkIndex === '2' ? true : undefined);
    }
  };
  const subscriptionPath = `projects/${where.project}/subscriptions/pgaudit`;
  const fake: FakeCloudLogging = {
    url: '',
    metadataHost: '',
    googleEnv: () => ({
      GCE_METADATA_HOST: fake.metadataHost,
      METADATA_SERVER_DETECTION: 'assume-present',
      // never a developer's own gcloud credentials
      CLOUDSDK_CONFIG: '/nonexistent',
      GOOGLE_APPLICATION_CREDENTIALS: '',
    }),
    requests: [],
    throttled: 0,
    dropChunkOf: null,
    close: () => Promise.resolve(),
    pubsub: {
      subscription: subscriptionPath,
      deliveries: 0,
      redeliveries: 0,
      refuseAcks: false,
      idle: false,
      publish: (data) => publish(data.toString('base64')),
      unacked: (text) => messages.filter((m) => !m.acked && Buffer.from(m.data, 'base64').toString().includes(text)).length,
    },
  };
  const pubsubRequest = async (verb: string, body: string, res: import('node:http').ServerResponse) => {
    const q = JSON.parse(body || '{}') as { maxMessages?: number; ackIds?: string[]; ackDeadlineSeconds?: number };
    const byAckId = (id: string) => messages.find((m) => m.ackId === id);
    if (verb === 'pull') {
      if (++pulls % 5 === 0) {
        fake.throttled++;
        return send(res, 429, { error: { code: 429, message: 'Too many requests', status: 'RESOURCE_EXHAUSTED' } });
      }
      if (!q.maxMessages || q.maxMessages < 1)
        return send(res, 400, { error: { code: 400, message: 'maxMessages must be positive', status: 'INVALID_ARGUMENT' } });
      if (fake.pubsub.idle) return send(res, 200, {});
      await (collecting = collecting.catch(() => undefined).then(collect));
      publishReadable();
      const now = Date.now();
      // No order, but no starving either (Pub/Sub hands out the backlog, oldest roughly first): of the
      // oldest deliverable messages, this pull's share, odd ones first, each half reversed.
      const take = Math.min(PULL_CAP, q.maxMessages);
      const ready = messages.filter((m) => !m.acked && m.outUntil <= now).slice(0, take);
      const out = [...ready.filter((_, i) => i % 2 === 1).reverse(), ...ready.filter((_, i) => i % 2 === 0).reverse()].map((m) => {
        if (m.deliveries > 0) fake.pubsub.redeliveries++;
        m.deliveries++;
        fake.pubsub.deliveries++;
        m.ackId = `ack-${m.id}-${++ackSerial}`;
        m.outUntil = now + ackDeadlineMs;
        return { ackId: m.ackId, message: { data: m.data, messageId: m.id, publishTime: m.publishTime, attributes: {} }, deliveryAttempt: m.deliveries };
      });
      return send(res, 200, out.length > 0 ? { receivedMessages: out } : {});
    }
    if (verb === 'acknowledge') {
      if (fake.pubsub.refuseAcks) return send(res, 400, { error: { code: 400, message: 'refused by the test', status: 'INVALID_ARGUMENT' } });
      for (const id of q.ackIds ?? []) {
        const m = byAckId(id);
        if (!m) continue; // an older delivery's ackId: ignored
        if (m.againAfterAck) {
          m.againAfterAck = false; // delivered once more, though acknowledged (at least once)
          m.outUntil = 0;
          m.ackId = null;
        } else m.acked = true;
      }
      return send(res, 200, {});
    }
    if (verb === 'modifyAckDeadline') {
      for (const id of q.ackIds ?? []) {
        const m = byAckId(id);
        if (m) m.outUntil = Date.now() + (q.ackDeadlineSeconds ?? 0) * 1000;
      }
      return send(res, 200, {});
    }
    return send(res, 404, { error: { code: 404, message: `no method ${verb}` } });
  };
  let requests = 0;
  const send = (res: import('node:http').ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += String(d)));
    req.on('end', () => {
      void (async () => {
        if (req.url?.startsWith('/computeMetadata/v1/')) {
          if (req.headers['metadata-flavor'] !== 'Google') return send(res, 403, { error: 'Metadata-Flavor: Google is required' });
          if (req.url.startsWith('/computeMetadata/v1/instance/service-accounts/default/token'))
            return send(res, 200, { access_token: token, expires_in: 3599, token_type: 'Bearer' }, { 'metadata-flavor': 'Google' });
          if (req.url.startsWith('/computeMetadata/v1/project/project-id')) {
            res.writeHead(200, { 'content-type': 'application/text', 'metadata-flavor': 'Google' });
            return res.end(where.project);
          }
          res.writeHead(200, { 'content-type': 'application/text', 'metadata-flavor': 'Google' });
          return res.end('');
        }
        const pubsubCall = req.method === 'POST' && req.url?.startsWith('/v1/projects/') ? /^\/v1\/(.+):(\w+)$/.exec(req.url) : null;
        if (req.method !== 'POST' || (req.url !== '/v2/entries:list' && !pubsubCall))
          return send(res, 404, { error: { code: 404, message: `no ${req.method} ${req.url}` } });
        if (req.headers.authorization !== `Bearer ${token}`)
          return send(res, 401, { error: { code: 401, message: 'Request had invalid authentication credentials.', status: 'UNAUTHENTICATED' } });
        if (pubsubCall) {
          if (pubsubCall[1] !== subscriptionPath)
            return send(res, 404, { error: { code: 404, message: `Resource not found (resource=${pubsubCall[1]}).`, status: 'NOT_FOUND' } });
          return pubsubRequest(pubsubCall[2]!, body, res);
        }
        if (++requests % 5 === 0) {
          fake.throttled++;
          return send(res, 429, { error: { code: 429, message: 'Quota exceeded for quota metric Read requests', status: 'RESOURCE_EXHAUSTED' } });
        }
        const q = JSON.parse(body) as { resourceNames?: string[]; filter?: string; orderBy?: string; pageSize?: number; pageToken?: string };
        const filter = q.filter ?? '';
        const ge = /timestamp>="([^"]+)"/.exec(filter)?.[1];
        const lt = /timestamp<"([^"]+)"/.exec(filter)?.[1];
        if (
          q.resourceNames?.[0] !== `projects/${where.project}` ||
          q.orderBy !== 'timestamp asc' ||
          !ge ||
          !lt ||
          !filter.includes(`resource.labels.database_id="${where.project}:${where.instance}"`) ||
          !filter.includes('cloudaudit.googleapis.com%2Fdata_access') ||
          !filter.includes('google.cloud.sql.audit.v1.PgAuditEntry')
        )
          return send(res, 400, { error: { code: 400, message: `unexpected request: ${body}`, status: 'INVALID_ARGUMENT' } });
        // One look at a time: two requests at once (a retry while a slow look at a 20 MB record is
        // still reading) would each make entries of the same lines, under different insertIds.
        await (collecting = collecting.catch(() => undefined).then(collect));
        const now = Date.now();
        const from = Date.parse(ge);
        const to = Date.parse(lt);
        const matching = made
          .filter((m) => m.readableAt <= now && Date.parse(m.entry.timestamp) >= from && Date.parse(m.entry.timestamp) < to)
          .map((m) => m.entry)
          .sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp) || (a.insertId < b.insertId ? 1 : -1));
        // One entry in seven is listed twice, back to back.
        const listed = matching.flatMap((e, i) => (i % 7 === 3 ? [e, e] : [e]));
        const start = q.pageToken ? Number(q.pageToken) : 0;
        const size = Math.min(pageSize, q.pageSize ?? pageSize);
        const page = listed.slice(start, start + size);
        fake.requests.push({ filter, ...(q.pageToken ? { pageToken: q.pageToken } : {}), entries: page.length });
        send(res, 200, { entries: page, ...(start + size < listed.length ? { nextPageToken: String(start + size) } : {}) });
      })().catch((err: unknown) => send(res, 500, { error: { code: 500, message: String(err) } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  fake.url = `http://127.0.0.1:${port}`;
  fake.metadataHost = `127.0.0.1:${port}`;
  fake.close = () => new Promise((resolve) => server.close(() => resolve()));
  return fake;
}
