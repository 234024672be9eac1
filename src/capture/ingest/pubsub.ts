import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ConfigError, ServiceError } from '../../errors.js';
import { googleRest } from './google-rest.js';
import { describePgError, inTransaction } from '../../db.js';
import type { Logger } from '../../log.js';
import type { LogAuditEvent } from './pgaudit.js';
import { entryEvents, entryId, isInstancePgAudit, joinChunks, lineKey, type CloudInstance, type CloudLogEntry, type Joined } from './cloud-logging.js';
import {
  followPasses,
  ingestQuery,
  insertEvents,
  insertReceipt,
  savePosition,
  UNREADABLE_ACTION,
  aboutTheLog,
  watchedTables,
  type IngestStats,
} from './ingester.js';
import { MISSING_LINES_ACTION } from './receipt.js';

/**
 * Cloud SQL and AlloyDB's pgaudit entries through a Cloud Logging sink to a Pub/Sub topic
 * (ingest --log-source pubsub): for an instance busier than entries.list can follow (its quota is
 * 60 requests a minute, 1,000 entries a request). The sink publishes each Data Access entry as one
 * message whose data is the LogEntry as JSON; the ingester pulls them from its subscription (REST
 * `pull`, `acknowledge`, `modifyAckDeadline`, signed by Google's auth library like entries.list).
 *
 * - At least once in, exactly once out: a message is acknowledged only after the transaction that
 *   stored its events (and the receipt and the count of messages stored) committed. A crash in
 *   between has Pub/Sub deliver it again, and its events are keyed by their line (lineKey, as the
 *   entries.list source keys them), so it adds nothing.
 * - Pub/Sub keeps no order: the chunks of one long statement (chunkIndex of chunkCount) may come
 *   in different pulls. A chunk set still open is held, unacknowledged, its deadline extended, until
 *   `chunkWaitMs` after its first chunk was published; then it is stored as far as it came, with a
 *   LOG LINES MISSING event naming the chunks that never did. At most MAX_HELD entries are held.
 *   A one-shot run hands what it held back to Pub/Sub when it ends (the next run pulls it again).
 * - A message that is no LogEntry (whoever could publish to the topic wrote it) is stored as an
 *   UNREADABLE LOG RECORD event, never dropped; an entry of another instance or type is counted as
 *   ignored (the sink's filter should let none through).
 * - What Pub/Sub cannot tell: a message left unacknowledged past the subscription's retention
 *   (7 days by default) is deleted unseen. What the ingester can tell: that it did not pull for
 *   longer than that (lastPull), a LOG LINES MISSING event; the README says which metric to alert on.
 */

/** One message as `pull` returns it (the fields read here). */
export interface ReceivedMessage {
  ackId: string;
  message: { data?: string; messageId?: string; publishTime?: string; attributes?: Record<string, string> };
  deliveryAttempt?: number;
}

export interface PubSubApi {
  /** Up to `max` messages (fewer, or none, when there are no more now). */
  pull(max: number): Promise<ReceivedMessage[]>;
  acknowledge(ackIds: string[]): Promise<void>;
  modifyAckDeadline(ackIds: string[], seconds: number): Promise<void>;
}

const SCOPE = 'https://www.googleapis.com/auth/pubsub';
/** The most messages one pull asks for, and one pass stores at most this many pulls' worth in one transaction. */
const PULL_MAX = 1000;
const PULLS_PER_PASS = 10;
/** Entries of open chunk sets held unacknowledged at once; past it the oldest sets are stored as far as they came. */
const MAX_HELD = 20_000;
/** A held message's deadline is pushed this far each pass (the pass polls far more often). */
const HOLD_DEADLINE_S = 120;
/** Entry identities stored lately, remembered so a message Pub/Sub delivers again after its acknowledgement (it may, rarely) is not taken for a lone chunk. */
const RECENT = 100_000;
/** A subscription's message retention unless --pubsub-retention says otherwise: Pub/Sub's default, and retention/gcp/pubsub-sink.sh's. */
export const DEFAULT_RETENTION_MS = 7 * 86_400_000;
/** How long a line in chunks waits for the rest unless --pubsub-chunk-wait says otherwise. */
export const DEFAULT_CHUNK_WAIT_MS = 120_000;
/** An idle ingester marks that it pulled at most this often (one write a minute, not one a poll). */
const IDLE_TOUCH_MS = 60_000;
/** Pub/Sub takes at most this many ackIds a request (its request size limit is 512 KB). */
const ACK_BATCH = 1000;

/** `projects/<project>/subscriptions/<name>`, as Pub/Sub names a subscription. */
export function pubsubSubscription(name: string | undefined): string {
  if (!name)
    throw new ConfigError(
      '--log-source pubsub needs --pubsub-subscription (AUDIT_PUBSUB_SUBSCRIPTION): projects/<project>/subscriptions/<name>, the subscription of the topic the pgaudit log sink publishes to',
    );
  if (!/^projects\/[a-z][-a-z0-9.:]*[a-z0-9]\/subscriptions\/[A-Za-z][-A-Za-z0-9._~+%]{2,254}$/.test(name))
    throw new ConfigError(`--pubsub-subscription ${name} is not a subscription name: projects/<project>/subscriptions/<name>`);
  return name;
}

/**
 * Pub/Sub's REST API (google-rest.ts: application default credentials, the pubsub scope,
 * throttling and unavailability retried); a refusal (403: roles/pubsub.subscriber missing) is an
 * error to act on.
 */
export function pubsubApi(subscription: string, endpoint = 'https://pubsub.googleapis.com'): PubSubApi {
  const post = googleRest(
    SCOPE,
    (message) =>
      `--log-source pubsub: no Google credentials (${message}); run with a service account that has roles/pubsub.subscriber on ${subscription} (GOOGLE_APPLICATION_CREDENTIALS, workload identity or the metadata server)`,
    (what, { status, said }) => {
      const hint =
        status === 403
          ? ': the credentials need roles/pubsub.subscriber on the subscription'
          : status === 404
            ? ': no such subscription (create it on the topic the log sink publishes to)'
            : '';
      return `--log-source pubsub: ${what} on ${subscription} failed${status ? ` (HTTP ${status})` : ''}: ${said}${hint}`;
    },
  );
  const call = (verb: 'pull' | 'acknowledge' | 'modifyAckDeadline', data: object) =>
    post(`${endpoint.replace(/\/$/, '')}/v1/${subscription}:${verb}`, data, verb);
  return {
    async pull(max) {
      const data = (await call('pull', { maxMessages: max })) as { receivedMessages?: ReceivedMessage[] } | undefined;
      return data?.receivedMessages ?? [];
    },
    async acknowledge(ackIds) {
      for (let i = 0; i < ackIds.length; i += ACK_BATCH) await call('acknowledge', { ackIds: ackIds.slice(i, i + ACK_BATCH) });
    },
    async modifyAckDeadline(ackIds, seconds) {
      for (let i = 0; i < ackIds.length; i += ACK_BATCH)
        await call('modifyAckDeadline', { ackIds: ackIds.slice(i, i + ACK_BATCH), ackDeadlineSeconds: seconds });
    },
  };
}

/** What a message holds: a pgaudit entry of the instance, another entry, or bytes that are no entry. */
export type Decoded = { kind: 'entry'; entry: CloudLogEntry } | { kind: 'other' } | { kind: 'unreadable'; why: string };

/** A message's LogEntry, when it is one of the instance's pgaudit entries (the sink's filter, checked again). */
export function decodeMessage(m: ReceivedMessage, where: CloudInstance): Decoded {
  let entry: CloudLogEntry & { resource?: { labels?: Record<string, string> } };
  try {
    entry = JSON.parse(Buffer.from(m.message.data ?? '', 'base64').toString('utf8')) as typeof entry;
  } catch (err) {
    return { kind: 'unreadable', why: `its data is not JSON (${(err as Error).message})` };
  }
  if (
    typeof entry !== 'object' ||
    entry === null ||
    typeof entry.insertId !== 'string' ||
    typeof entry.timestamp !== 'string' ||
    !Number.isFinite(Date.parse(entry.timestamp))
  )
    return { kind: 'unreadable', why: 'its data is no LogEntry (an insertId and a timestamp)' };
  return isInstancePgAudit(entry, where) ? { kind: 'entry', entry } : { kind: 'other' };
}

export interface PubSubOptions {
  where: CloudInstance;
  subscription: string;
  /** how long the subscription keeps a message nobody acknowledged (its message retention; default 7 days) */
  retentionMs?: number;
  statementMaxLength: number;
  log: Logger;
  /** how long an open chunk set waits for its other chunks (default 2 minutes) */
  chunkWaitMs?: number;
  now?: () => number;
}

interface Held {
  entry: CloudLogEntry;
  ackIds: string[];
  /** when Pub/Sub took the message in (the same on every delivery, so a wait survives restarts) */
  publishedAt: number;
}

const publishedAt = (m: ReceivedMessage, now: number): number => {
  const t = Date.parse(m.message.publishTime ?? '');
  return Number.isFinite(t) ? Math.min(t, now) : now;
};

/**
 * Pulls the instance's pgaudit entries from a Pub/Sub subscription into audit_log, exactly once
 * (see the top of this file). Same results and statistics as the other sources.
 */
export class PubSubIngester {
  /** the position's row in audit.ingest_files: byte_offset counts the messages stored */
  private readonly key: string;
  private readonly name: string;
  private database = '';
  private readonly now: () => number;
  /** entries of chunk sets still open, by entry identity, across passes */
  private readonly held = new Map<string, Held>();
  /** identities of entries stored by this process, oldest first (at most RECENT) */
  private readonly recent = new Set<string>();
  /** when this process last moved the position row's updated_at */
  private touchedAt = 0;

  constructor(
    private readonly client: pg.Client,
    private readonly api: PubSubApi,
    private readonly opts: PubSubOptions,
  ) {
    this.key = `gps:${opts.subscription}`;
    this.name = `pubsub ${opts.subscription}`;
    this.now = opts.now ?? Date.now;
  }

  /** Passes until the signal aborts; open chunk sets stay held from one pass to the next. */
  async follow(signal: AbortSignal, pollMs = 1000, onPass?: (s: IngestStats) => void): Promise<IngestStats> {
    try {
      return await followPasses(() => this.pass(), this.opts.log, signal, pollMs, onPass);
    } finally {
      await this.release();
    }
  }

  /** One pass, then what is held is handed back to Pub/Sub at once (a later run gets it again). */
  async runOnce(): Promise<IngestStats> {
    try {
      return await this.pass();
    } finally {
      await this.release();
    }
  }

  /** Held messages back to Pub/Sub now (deadline 0), not when their extended deadline passes. */
  private async release(): Promise<void> {
    if (this.held.size === 0) return;
    const ackIds = [...this.held.values()].flatMap((h) => h.ackIds);
    this.held.clear();
    await this.api.modifyAckDeadline(ackIds, 0).catch((err: unknown) => {
      this.opts.log.warn(
        { err: (err as Error).message, held: ackIds.length },
        'could not hand held messages back: Pub/Sub delivers them again when their deadline passes',
      );
    });
  }

  /**
   * When the subscription was last pulled from (the position row's updated_at: every store, and an
   * idle pass at least every IDLE_TOUCH_MS), and whether that is longer ago than the subscription
   * keeps messages: then what was published before and not pulled may be gone unread, a LOG LINES
   * MISSING event keyed by that time (so once). The first run starts the clock.
   */
  private async lastPull(): Promise<{ from: number; gap: LogAuditEvent | null }> {
    const { rows } = await ingestQuery<{ byte_offset: string; since: Date; now: Date }>(
      this.client,
      'SELECT byte_offset, updated_at AS since, now() AS now FROM audit.ingest_files WHERE file_key = $1',
      [this.key],
    );
    const row = rows[0];
    if (!row) {
      await ingestQuery(this.client, 'INSERT INTO audit.ingest_files (file_key, file_name, byte_offset) VALUES ($1, $2, 0) ON CONFLICT (file_key) DO NOTHING', [
        this.key,
        this.name,
      ]);
      this.touchedAt = this.now();
      return { from: 0, gap: null };
    }
    const retention = this.opts.retentionMs ?? DEFAULT_RETENTION_MS;
    const idle = row.now.getTime() - row.since.getTime();
    const gap =
      idle > retention
        ? aboutTheLog(
            MISSING_LINES_ACTION,
            `Pub/Sub ${this.opts.subscription}: not pulled from ${row.since.toISOString()} to ${row.now.toISOString()}, longer than it keeps a message (--pubsub-retention ${Math.round(retention / 3_600_000)}h)`,
            `pgaudit entries published before ${new Date(row.now.getTime() - retention).toISOString()} and not pulled by then may have been deleted unread (they are still in Cloud Logging for its retention: --log-source cloud-logging --cloud-logging-from reads them)`,
            { logSessionId: `gps:not-pulled-since:${row.since.toISOString()}`, logLineNum: 0 },
          )
        : null;
    return { from: Number(row.byte_offset), gap };
  }

  /** Pull what is there now (a bounded number of pulls), store it in one transaction, then acknowledge it. */
  private async pass(): Promise<IngestStats> {
    const stats: IngestStats = { files: 0, lines: 0, events: 0, ignored: 0, malformed: 0, duplicates: 0, pendingBytes: 0, held: 0 };
    if (!this.database) this.database = (await ingestQuery<{ db: string }>(this.client, 'SELECT current_database() AS db')).rows[0]!.db;
    const { from, gap } = await this.lastPull();
    const now = this.now();
    /** what this pass settles: acknowledged once stored */
    const done: string[] = [];
    const unreadable: { m: ReceivedMessage; why: string }[] = [];
    let messages = 0;
    let ignored = 0;
    for (let i = 0; i < PULLS_PER_PASS; i++) {
      const got = await this.api.pull(PULL_MAX);
      if (got.length === 0) break;
      for (const m of got) {
        messages++;
        const d = decodeMessage(m, this.opts.where);
        if (d.kind === 'other') {
          ignored++;
          done.push(m.ackId);
        } else if (d.kind === 'unreadable') {
          unreadable.push({ m, why: d.why });
          done.push(m.ackId);
        } else {
          // Delivered again (its deadline passed, or a stored one was not acknowledged in time): one entry, every ackId.
          const id = entryId(d.entry);
          if (this.recent.has(id)) {
            stats.duplicates++;
            done.push(m.ackId);
            continue;
          }
          const h = this.held.get(id);
          if (h) h.ackIds.push(m.ackId);
          else this.held.set(id, { entry: d.entry, ackIds: [m.ackId], publishedAt: publishedAt(m, now) });
        }
      }
      // (A pull may return fewer than asked while more are there: only an empty one says none are.)
    }
    // Chunk sets whole now, or waited for long enough, are stored; the rest stay held.
    const wait = this.opts.chunkWaitMs ?? DEFAULT_CHUNK_WAIT_MS;
    const joined = joinChunks([...this.held.values()].map((h) => h.entry));
    const overflow = Math.max(0, this.held.size - MAX_HELD);
    const since = (j: Joined) => Math.min(...j.entries.map((e) => this.held.get(entryId(e))!.publishedAt));
    const open = joined.filter((j) => j.missing.length > 0).sort((a, b) => since(a) - since(b));
    const expired = new Set(open.filter((j, i) => now - since(j) >= wait || i < overflow));
    const ready = joined.filter((j) => j.missing.length === 0 || expired.has(j));
    const settled = ready.flatMap((j) => j.entries.map(entryId));
    for (const id of settled) done.push(...this.held.get(id)!.ackIds);
    if (done.length === 0 && !gap) {
      await this.extendHeld(stats);
      if (now - this.touchedAt >= IDLE_TOUCH_MS) {
        // Pulled, nothing there: the clock lastPull() reads goes on (once a minute, not every poll).
        await ingestQuery(this.client, 'UPDATE audit.ingest_files SET updated_at = now() WHERE file_key = $1', [this.key]);
        this.touchedAt = now;
      }
      return stats;
    }
    // A set that stopped waiting may be a chunk delivered again after its whole line was stored (by
    // an earlier run): that line's key is there, and the chunk is no loss.
    const storedBefore = await this.stored([...expired].map(lineKey));
    const fresh = ready.filter((j) => !(expired.has(j) && storedBefore.has(lineKey(j))));
    if (fresh.length < ready.length) {
      // Or a chunk that came after its line was stored as far as it had come: the line's event and
      // its LOG LINES MISSING note stand, and the late text is not added to them.
      this.opts.log.info({ lines: ready.length - fresh.length }, 'chunks of lines already stored came again; not stored twice');
      stats.duplicates += ready.length - fresh.length;
    }
    const tables = await watchedTables(this.client);
    const { events, malformed, lost, ...counts } = entryEvents(fresh, {
      database: this.database,
      tables,
      statementMaxLength: this.opts.statementMaxLength,
      where: `Pub/Sub ${this.opts.subscription}`,
    });
    for (const { m, why } of unreadable) {
      events.push(
        aboutTheLog(
          UNREADABLE_ACTION,
          `Pub/Sub ${this.opts.subscription} message ${m.message.messageId ?? '?'} published ${m.message.publishTime ?? '?'}`,
          why,
          {
            logSessionId: `gps:${
              m.message.messageId ??
              createHash('sha256')
                .update(m.message.data ?? '')
                .digest('hex')
            }`,
            logLineNum: 0,
          },
        ),
      );
    }
    if (gap) events.push(gap);
    const ids = [...settled, ...unreadable.map(({ m }) => `message ${m.message.messageId ?? '?'}`)].sort();
    const to = from + ids.length + ignored;
    const file = { key: this.key, name: this.name };
    let inserted = 0;
    try {
      await inTransaction(this.client, async () => {
        if (events.length > 0) inserted = await insertEvents(this.client, events);
        await insertReceipt(this.client, file, { from, to, sha256: createHash('sha256').update(ids.join('\n')).digest('hex') }, to - from, inserted);
        await savePosition(this.client, file, to, inserted);
      });
    } catch (err) {
      throw new ServiceError(`cannot store pgaudit events pulled from ${this.opts.subscription}: ${describePgError(err)}`);
    }
    this.touchedAt = now;
    if (gap) this.opts.log.error({ subscription: this.opts.subscription }, `${gap.statement}; recorded as a ${MISSING_LINES_ACTION} event`);
    // Stored: now, and only now, Pub/Sub may forget them. A failed acknowledgement has them delivered
    // again, and their keys keep them out.
    for (const id of settled) {
      this.held.delete(id);
      this.recent.add(id);
    }
    for (const id of this.recent) {
      if (this.recent.size <= RECENT) break;
      this.recent.delete(id);
    }
    try {
      await this.api.acknowledge(done);
    } catch (err) {
      this.opts.log.warn(
        { err: (err as Error).message, messages: done.length },
        'stored messages were not acknowledged: Pub/Sub delivers them again, and they add nothing',
      );
    }
    await this.extendHeld(stats);
    stats.files = 1;
    stats.lines += messages;
    stats.events += inserted;
    stats.duplicates += events.length - inserted;
    stats.ignored += ignored + counts.ignored;
    stats.malformed += malformed + unreadable.length;
    if (lost > 0) this.opts.log.error({ missing_chunks: lost }, `chunks of pgaudit lines never arrived; recorded as ${MISSING_LINES_ACTION} events`);
    if (unreadable.length > 0)
      this.opts.log.error(
        { messages: unreadable.length },
        `messages that are no log entry were recorded as ${UNREADABLE_ACTION} events (who may publish to the topic?)`,
      );
    return stats;
  }

  /** Which of these line keys audit_log holds already (the ingester may read the key columns). */
  private async stored(keys: string[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set();
    const { rows } = await ingestQuery<{ k: string }>(
      this.client,
      'SELECT DISTINCT log_session_id AS k FROM audit.audit_log WHERE log_session_id = ANY($1::text[]) AND log_line_num = 0',
      [keys],
    );
    return new Set(rows.map((r) => r.k));
  }

  /** Held messages keep their place: their deadline is pushed on, so Pub/Sub does not hand them out again meanwhile. */
  private async extendHeld(stats: IngestStats): Promise<void> {
    stats.held = this.held.size;
    if (this.held.size === 0) return;
    try {
      await this.api.modifyAckDeadline(
        [...this.held.values()].map((h) => h.ackIds[h.ackIds.length - 1]!),
        HOLD_DEADLINE_S,
      );
    } catch (err) {
      // Harmless: a held message delivered again joins its entry (same identity).
      this.opts.log.warn({ err: (err as Error).message, held: this.held.size }, 'could not extend the deadline of held messages');
    }
  }
}
