import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ConfigError, ServiceError } from '../errors.js';
import { connect, describePgError, ReconnectingClient, type Queryable } from '../db.js';
import type { Logger } from '../log.js';
import type { IngesterOf } from '../capture/ingest/choose-ingester.js';
import type { BatchLimits } from '../seal/batch.js';
import type { SigningKey, VerifyKey } from '../seal/keys.js';
import type { SealedFile } from '../seal/sealer.js';
import { digestKey, objectUrl, parseStreamKey } from '../sink/keys.js';
import type { Archive } from '../sink/sink.js';
import { verifyChain } from '../verify/chain.js';
import { fileContent } from '../verify/file.js';
import { openDigest, sha256Hex, type Digest } from '../seal/digest.js';
import { AuditStream } from '../source/audit-stream.js';
import { formatLsn, parseLsn, type Lsn } from '../source/lsn.js';
import { createSlotWithSnapshot, rowsInSnapshot } from '../source/snapshot.js';
import { checkShippingPrerequisites, ensureSlot, identifySystem, slotConfirmed, slotHealth } from '../source/slot.js';
import type { ShipMetrics } from './metrics.js';
import { Pipeline } from './pipeline.js';
import { Attestor } from './attestor.js';
import { BACKOFF, backoffMs } from '../backoff.js';
import { appendAttestation, readCaptureConfig } from '../capture/attest.js';
import { measureSkew, serverClock, skewProblem } from './clock.js';
import { resumeFromArchive } from './resume.js';
import { IdSet } from './id-set.js';
import { WriterLease } from './lease.js';

export interface ShipOptions {
  databaseUrl: string;
  archive: Archive;
  key: SigningKey;
  verifyKeys: VerifyKey[];
  slot: string;
  limits: BatchLimits;
  maxInflightBytes: number;
  heartbeatMs: number;
  /** ship what was committed before start, then stop */
  drain: boolean;
  graceMs: number;
  log: Logger;
  metrics: ShipMetrics;
  signal: AbortSignal;
  /** also ingest pgaudit reads, from the server's csvlog as this gives it (a directory, or SQL on the ingester's connection) */
  ingestFrom?: IngesterOf;
  statementMaxLength: number;
  /** how often the capture configuration is read and, when changed, attested (default 1 min) */
  attestCheckMs?: number;
  /** readiness: connected and storing */
  onReady?: (ready: boolean) => void;
  /** a component failing (`problem`) or recovered (null): /readyz reports it */
  onProblem?: (component: string, problem: string | null) => void;
}

export interface ShipResult {
  files: number;
  headSeq: number;
  records: number;
  complete: boolean;
}

const BACKFILL_DONE = 'backfill-complete';

/**
 * ship: from the slot to the archive, losing nothing. Start-up decides where the chain continues
 * (the archive's own head), whether anything was missed (a lost slot is a recorded gap), and then
 * streams until stopped.
 */
export async function ship(opts: ShipOptions): Promise<ShipResult> {
  const { log } = opts;
  const began = performance.now();
  const phase = (what: string) => log.debug({ ms: Math.round(performance.now() - began) }, `start-up: ${what}`);
  const pgConfig: pg.ClientConfig = { connectionString: opts.databaseUrl, application_name: 'pg-audit-shipper' };
  const client = await connect(opts.databaseUrl);
  // After start-up, the bookkeeping (heads, slot health, attestations) goes through a connection that
  // comes back after a PostgreSQL restart. A server that says it is shutting down also gets its
  // replication connection back at once: its walsender waits for our confirmation before it exits,
  // and we may be unable to give one (storage down), which would hold the shutdown up.
  let streaming: AuditStream | null = null;
  const db = new ReconnectingClient(opts.databaseUrl, 'pg-audit-shipper', client, {
    onLost: (reason, shutdown) => {
      log.error({ err: reason, server_shutting_down: shutdown }, 'lost the database connection; reconnecting at the next use');
      opts.onProblem?.('database', `connection lost: ${reason}`);
      if (shutdown) streaming?.drop('the server is shutting down');
    },
    onBack: () => {
      log.warn('connected to the database again');
      opts.onProblem?.('database', null);
    },
  });
  const heads = new HeadRecorder(db, opts.slot, log);
  const lease = new WriterLease(db, opts.slot);
  // A clock that drifted (or was set) too far while running stops storing until it is right again.
  let clockProblem: string | null = null;
  const checkClock = async (): Promise<void> => {
    const problem = await measureSkew(() => serverClock(db)).then(skewProblem, () => clockProblem); // unreachable: keep the last verdict
    if (problem !== clockProblem) {
      if (problem) log.error({ problem }, 'clock skew: storing stops until the clock is right');
      else log.warn('the clock is right again; storing goes on');
      opts.onProblem?.('clock', problem);
    }
    clockProblem = problem;
  };
  const ingestAbort = new AbortController();
  let ingestDone: Promise<unknown> = Promise.resolve();
  try {
    phase('connected');
    // Independent questions, asked at once; the answers are judged in this order, so the most
    // actionable problem (a missing setting or schema) is the one reported.
    const [recordedAnswer, identityAnswer] = await Promise.allSettled([
      checkShippingPrerequisites(client).then(() => recordedHead(client, opts.slot)),
      identifySystem(pgConfig),
    ]);
    const recorded = settled(recordedAnswer);
    const identity = settled(identityAnswer);
    // Retention dates and partitions come from this machine's clock: refuse to write with one far off.
    const skewAtStart = skewProblem(await measureSkew(() => serverClock(db)));
    if (skewAtStart) throw new ServiceError(skewAtStart);
    phase('database checked');
    const keys = new Map<string, VerifyKey>([[opts.key.keyId, opts.key], ...opts.verifyKeys.map((k) => [k.keyId, k] as const)]);
    const resumed = await resumeFromArchive(opts.archive.reader, opts.archive.location, keys, recorded);
    phase('archive head read');
    if (resumed.digest) {
      const d = resumed.digest;
      // One archive, one database: audit_log ids (which resuming and recovery compare) are unique only
      // within a database, and a slot name can be reused by another database of the cluster.
      if (d.system_identifier !== identity.systemIdentifier || d.slot !== opts.slot || d.database !== identity.database) {
        throw new ConfigError(
          `${opts.archive.location} holds the trail of database ${d.database} (system ${d.system_identifier}, slot ${d.slot}), ` +
            `not of ${identity.database} (system ${identity.systemIdentifier}, slot ${opts.slot}): give each database and slot its own --archive prefix`,
        );
      }
    }
    const source = { ...identity, slot: opts.slot };
    // The initial backfill ends with a marker record, so an archive that is empty or ends inside
    // the backfill never finished it: its snapshot is gone with the old connection, so start over.
    const [lastOpAnswer, slotAnswer] = await Promise.allSettled([
      resumed.digest ? lastRecordOp(opts.archive, keys, resumed.digest) : null,
      client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [opts.slot]).then(async (r) => {
        if (r.rowCount === 0) return false;
        await ensureSlot(client, opts.slot); // ours, pgoutput, not in use, not lost
        return true;
      }),
    ]);
    const lastOp = settled(lastOpAnswer);
    const slotPresent = settled(slotAnswer);
    // Unfinished: nothing archived, only heartbeats (a shipper killed after its first heartbeat and
    // before the backfill's first digest: the slot's snapshot rows are in no file), or a backfill's
    // row last. The backfill ends with its marker, so a finished one always leaves a data file.
    const backfillUnfinished = resumed.digest === null || lastOp?.op === NO_DATA_FILE || (lastOp?.op === 'insert' && lastOp.backfill !== undefined);
    phase('last record read, slot checked');
    const generation = await lease.take();

    const stream = new AuditStream(pgConfig, opts.slot, log);
    streaming = stream;
    const pipeline = new Pipeline(resumed.head, {
      limits: opts.limits,
      maxInflightBytes: opts.maxInflightBytes,
      heartbeatMs: opts.heartbeatMs,
      source,
      key: opts.key,
      sink: opts.archive.sink,
      ...(opts.archive.layout ? { layout: opts.archive.layout } : {}),
      log,
      metrics: opts.metrics,
      onStored: async (file) => heads.record(file),
      commitOffset: (lsn) => stream.acknowledge(lsn),
      onStorageProblem: (p) => opts.onProblem?.('storage', p),
      mayStore: () => clockProblem,
      claimed: async (seq, object) => {
        const [lost, exists] = await Promise.all([lease.lost(), object === 'data' && opts.archive.reader.exists(digestKey(seq))]);
        return lost ?? (exists ? 'another shipper wrote this file of the archive while this one held it in memory' : null);
      },
    });
    log.info(
      { archive: opts.archive.location, head: resumed.head.fileSeq, records: resumed.head.position.recordSeq, slot: opts.slot, writer_generation: generation },
      'resuming the chain from the archive head',
    );
    try {
      // Rows committed before the slot existed were never in its stream: archive them from the slot's snapshot.
      if (backfillUnfinished) {
        if (slotPresent) {
          log.warn('the initial backfill did not finish; re-creating the slot and archiving the rows not yet archived');
          await client.query('SELECT pg_drop_replication_slot($1)', [opts.slot]);
        }
        const skip = resumed.digest ? await archivedIds(opts.archive, keys) : new IdSet();
        await backfill(pgConfig, opts.slot, pipeline, skip, log, lastOp?.backfill ?? 'initial');
      } else if (!slotPresent) {
        // The stream missed whatever was committed while the slot was gone. Say so in the chain, then
        // recover: audit_log keeps rows until they are proven archived, so archive those not yet there.
        log.error(
          { slot: opts.slot, archived_up_to: resumed.digest?.ack_lsn },
          'GAP: the replication slot was missing; events committed meanwhile were not streamed. Recorded in the chain; recovering them from audit_log',
        );
        const at = parseLsn((await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn);
        pipeline.recordGap(at, 'replication slot missing or re-created', {
          archived_up_to_lsn: resumed.digest?.ack_lsn ?? null,
          recovery: 'rows still in audit_log and not in the archive follow as backfill "slot-lost"',
        });
        await backfill(pgConfig, opts.slot, pipeline, await archivedIds(opts.archive, keys), log, 'slot-lost');
      }

      if (opts.ingestFrom) ingestDone = keepIngesting(opts, opts.ingestFrom, ingestAbort.signal);

      // The capture configuration, attested before streaming starts (so a drain ships it too), then
      // checked every minute: appended when it changed, and at least once per heartbeat interval.
      const attestor = new Attestor(
        { read: () => readCaptureConfig(db), append: (a) => appendAttestation(db, a) },
        { intervalMs: opts.heartbeatMs, log, onProblem: (p) => opts.onProblem?.('attestation', p) },
      );
      await attestor.check().catch((err: unknown) => {
        throw attestError(err);
      });

      const startFrom = (await slotConfirmed(client, opts.slot)) ?? null;
      const target = opts.drain ? parseLsn((await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn) : null;
      if (target !== null) pipeline.acks.drainTo(target);
      const streaming = new AbortController();
      const streamLoop = runStream(stream, pipeline, startFrom, opts, streaming.signal);
      const healthTimer = setInterval(() => {
        void watchSlot(db, opts, log);
        void checkClock();
      }, 30_000);
      const attestTimer = setInterval(() => void attestor.checkQuietly(), opts.attestCheckMs ?? 60_000);
      const flushTimer = setInterval(() => void nudgeWalFlush(db, log), WAL_NUDGE_MS);
      void watchSlot(db, opts, log);
      opts.onReady?.(true);
      log.info(
        { slot: opts.slot, from: startFrom === null ? null : formatLsn(startFrom), start_up_ms: Math.round(performance.now()) /* since the process started */ },
        'streaming from the slot',
      );
      try {
        // Wait for a stop: a signal, or (with --drain) everything up to the target stored.
        let starts = stream.starts;
        while (!opts.signal.aborted) {
          pipeline.check();
          if (stream.starts !== starts) {
            // streaming (again): whatever stopped it is over
            starts = stream.starts;
            opts.onProblem?.('replication stream', null);
          }
          if (pipeline.acks.drained() && pipeline.isIdle()) break;
          if (target !== null) stream.ping(); // its answer carries the server's position
          log.trace(
            {
              target: target === null ? null : formatLsn(target),
              confirmed: pipeline.acks.confirmed === null ? null : formatLsn(pipeline.acks.confirmed),
              idle: pipeline.isIdle(),
            },
            'waiting',
          );
          // A drain ends as soon as the last file is stored; between stores, asking the server for its
          // position often is what seals the last, partly filled file without waiting for its age.
          const failed = await Promise.race([
            streamLoop.then(
              () => false,
              () => true,
            ),
            pipeline.progress().then(() => false),
            sleep(target === null ? 200 : 50).then(() => false),
          ]);
          if (failed) throw await streamLoop.catch((e: unknown) => e);
        }
      } finally {
        clearInterval(healthTimer);
        clearInterval(attestTimer);
        clearInterval(flushTimer);
        opts.onReady?.(false);
      }
      log.debug('stopping: storing what is open');
      const complete = await pipeline.drain(Date.now() + opts.graceMs);
      await heads.settle(5000);
      pipeline.close();
      log.debug('stopping: closing the replication stream');
      streaming.abort();
      await stream.stop();
      log.debug('stopping: waiting for the stream loop');
      await streamLoop.catch(() => undefined);
      log.debug('stopped');
      if (!complete) {
        log.error(
          { unstored_records: pipeline.pendingRecords() },
          'stopping with records not yet stored; they stay in the slot and are shipped at the next start',
        );
      }
      return {
        files: pipeline.head.fileSeq - resumed.head.fileSeq,
        headSeq: pipeline.head.fileSeq,
        records: pipeline.head.position.recordSeq - resumed.head.position.recordSeq,
        complete,
      };
    } finally {
      // Whatever ended the run, no timer of ours may keep the process alive.
      pipeline.close();
      await stream.stop();
    }
  } finally {
    ingestAbort.abort();
    await ingestDone;
    heads.close();
    await db.end();
  }
}

/** The first attestation failing is a set-up problem: say which. */
function attestError(err: unknown): Error {
  const code = (err as { code?: string }).code;
  if (code === '42883') return new ServiceError('the audit schema is older than this shipper (no audit.attest()); run `pg-audit-shipper init` to upgrade it');
  if (code === '42501')
    return new ServiceError(
      `the shipper's role may not attest the capture configuration (${describePgError(err)}); grant it audit_shipper and run \`pg-audit-shipper init\``,
    );
  return new ServiceError(`could not attest the capture configuration: ${describePgError(err)}`);
}

/**
 * Create the slot with an exported snapshot and archive the audit_log rows that snapshot sees (minus
 * those already archived): exactly what the new slot's stream will not deliver.
 */
async function backfill(pgConfig: pg.ClientConfig, slot: string, pipeline: Pipeline, skip: IdSet, log: Logger, reason: string): Promise<void> {
  const { consistentPoint, snapshot, done } = await createSlotWithSnapshot(pgConfig, slot);
  let rows = 0;
  try {
    let idx = 0;
    for await (const page of rowsInSnapshot(pgConfig, snapshot)) {
      for (const row of page) {
        if (skip.has(row.id!)) continue;
        await pipeline.appendBackfill(consistentPoint, idx++, row, reason);
        rows++;
      }
    }
    pipeline.appendMarker(consistentPoint, idx, BACKFILL_DONE, { rows, backfill: reason });
  } finally {
    await done();
  }
  log.info({ rows, already_archived: skip.size, at: formatLsn(consistentPoint), reason }, 'archived the audit_log rows the new slot will not stream');
}

/**
 * The built-in ingester (ship --log-dir, or --log-source sql), kept running: a failure (the database restarted, a
 * privilege revoked, a disk error) is logged at error level, counted, shown on /readyz, and the
 * ingester starts again after a backoff; its saved position makes the restart exactly-once.
 */
async function keepIngesting(opts: ShipOptions, ingesterOf: IngesterOf, signal: AbortSignal): Promise<void> {
  const { log, metrics } = opts;
  for (let attempt = 0; !signal.aborted; attempt++) {
    let client: pg.Client | null = null;
    try {
      client = await connect(opts.databaseUrl, 'pg-audit-shipper ingest');
      const ingester = ingesterOf(client, { statementMaxLength: opts.statementMaxLength, log });
      await ingester.follow(signal, 500, (s) => {
        metrics.ingestUp.set(1);
        metrics.ingestLastPass.set(Date.now() / 1000);
        metrics.ingestPendingBytes.set(s.pendingBytes);
        if (attempt > 0) {
          log.warn({ failed_attempts: attempt }, 'ingest is running again'); // warn: the failure was an error, its end must show where errors are watched
          attempt = 0;
        }
        opts.onProblem?.('ingest', null);
      });
      return;
    } catch (err) {
      if (signal.aborted) return;
      const wait = Math.round(backoffMs(BACKOFF.ingest, attempt));
      const message = (err as Error).message;
      log.error({ err: message, retry_in_ms: wait }, 'ingest stopped; restarting it');
      metrics.ingestUp.set(0);
      metrics.ingestRestarts.inc();
      opts.onProblem?.('ingest', `failed: ${message}`);
      await sleep(wait, undefined, { signal }).catch(() => undefined);
    } finally {
      await client?.end().catch(() => undefined);
    }
  }
}

/** Reconnect forever while not stopping: the slot keeps our place. */
async function runStream(stream: AuditStream, pipeline: Pipeline, startFrom: Lsn | null, opts: ShipOptions, stopped: AbortSignal): Promise<void> {
  // The library's subscribe() promise can stay pending forever once its connection is torn down
  // (it drops its listeners before the pending START_REPLICATION is rejected): stopping must not
  // depend on it.
  const stopRequested = new Promise<void>((resolve) => stopped.addEventListener('abort', () => resolve(), { once: true }));
  let attempt = 0;
  while (!stopped.aborted) {
    const received = stream.messagesReceived;
    try {
      pipeline.flow = stream.flow;
      pipeline.streamStarted();
      await Promise.race([stream.run(pipeline, pipeline.acks.resumeFrom(startFrom)), stopRequested]);
      if (stopped.aborted) return;
    } catch (err) {
      if (stopped.aborted) return;
      const msg = describePgError(err);
      if (/does not exist|invalidated|wal_status|has been invalidated/i.test(msg)) {
        throw new ServiceError(`replication slot ${opts.slot} is gone or invalidated: ${msg}`);
      }
      // Another process took the slot while this one was away (paused, partitioned): two writers of one
      // archive would overwrite each other's files. Stop; what is unstored here is in the slot for the other.
      if (/is active for PID/i.test(msg)) {
        throw new ServiceError(`replication slot ${opts.slot} is now used by another process (${msg}): another shipper took over; this one stops`);
      }
      // A connection that streamed before it failed is a new failure, not the next of a series:
      // the wait starts short again (otherwise a week of rare drops would end in 30 s waits).
      attempt = stream.messagesReceived > received ? 0 : attempt + 1;
      const wait = backoffMs(BACKOFF.replication, attempt);
      opts.log.warn({ err: msg, retry_in_ms: Math.round(wait) }, 'replication stream ended; reconnecting');
      opts.onProblem?.('replication stream', `reconnecting: ${msg}`);
      await sleep(wait);
    }
  }
}

async function recordedHead(client: pg.Client, slot: string): Promise<number | null> {
  try {
    const r = await client.query<{ file_seq: string }>('SELECT file_seq::text FROM audit.shipper_head WHERE slot_name = $1', [slot]);
    return r.rows[0] ? Number(r.rows[0].file_seq) : null;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === '42P01' || code === '3F000') throw new ConfigError('the audit schema (version 2) is not installed: run `pg-audit-shipper init`');
    if (code === '42501') throw new ConfigError(`the shipper's role cannot read audit.shipper_head: grant it audit_shipper (${describePgError(err)})`);
    throw new ServiceError(`cannot read audit.shipper_head: ${describePgError(err)}`);
  }
}

/**
 * The head in audit.shipper_head is a second witness of how far the archive got (a shipper refuses an
 * archive behind it), not a condition for acknowledging: writing it never holds up the slot. The
 * newest head wins; a failed write is retried after a backoff or with the next stored file, so a
 * database restart costs at most a late head, and a server shutting down (which waits for the slot)
 * is not kept waiting on a write it refuses.
 */
class HeadRecorder {
  private pending: SealedFile | null = null;
  private running: Promise<void> | null = null;
  private closed = false;
  private readonly stop = new AbortController();

  constructor(
    private readonly db: Queryable,
    private readonly slot: string,
    private readonly log: Logger,
  ) {}

  record(file: SealedFile): void {
    this.pending = file;
    this.running ??= this.loop().finally(() => {
      this.running = null;
    });
  }

  /** Wait (up to `ms`) for the newest head to be written: a drain exits with the head recorded. */
  async settle(ms: number): Promise<void> {
    if (this.running) await Promise.race([this.running, sleep(ms, undefined, { ref: false })]);
  }

  close(): void {
    this.closed = true;
    this.stop.abort();
  }

  private async loop(): Promise<void> {
    for (let attempt = 0; this.pending !== null && !this.closed;) {
      const file = this.pending;
      try {
        await recordHead(this.db, this.slot, file);
        if (this.pending === file) this.pending = null;
        if (attempt > 0) this.log.warn({ file_seq: file.fileSeq }, 'the archive head is recorded in the database again');
        attempt = 0;
      } catch (err) {
        const wait = Math.round(backoffMs(BACKOFF.storage, attempt++));
        this.log.warn(
          { err: describePgError(err), file_seq: file.fileSeq, retry_in_ms: wait },
          'cannot record the archive head in the database; shipping goes on',
        );
        await sleep(wait, undefined, { signal: this.stop.signal }).catch(() => undefined);
      }
    }
  }
}

async function recordHead(client: Queryable, slot: string, file: SealedFile): Promise<void> {
  await client.query(
    `INSERT INTO audit.shipper_head (slot_name, file_seq, record_seq, chain, digest_sha256, last_lsn, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6::pg_lsn, now())
     ON CONFLICT (slot_name) DO UPDATE SET file_seq = excluded.file_seq, record_seq = excluded.record_seq, chain = excluded.chain,
       digest_sha256 = excluded.digest_sha256, last_lsn = excluded.last_lsn, updated_at = now()
     WHERE audit.shipper_head.file_seq < excluded.file_seq`,
    [slot, file.fileSeq, file.position.recordSeq, file.position.chain, file.digestSha256, file.ackLsn === null ? null : formatLsn(file.ackLsn)],
  );
}

/** The value of a settled promise, or its reason thrown. */
function settled<T>(r: PromiseSettledResult<T>): T {
  if (r.status === 'rejected') throw r.reason;
  return r.value;
}

async function watchSlot(client: Queryable, opts: ShipOptions, log: Logger): Promise<void> {
  try {
    const h = await slotHealth(client, opts.slot);
    if (!h) return;
    if (h.lagBytes !== null) opts.metrics.slotLagBytes.set(h.lagBytes);
    opts.metrics.slotSafeWalBytes.set(h.safeWalSize ?? -1);
    if (h.walStatus === 'unreserved' || h.walStatus === 'lost') {
      log.error(
        { wal_status: h.walStatus, lag_bytes: h.lagBytes },
        `replication slot ${opts.slot} is about to be invalidated or was: audit events are at risk`,
      );
    } else if (h.safeWalSize !== null && h.lagBytes !== null && h.safeWalSize < h.lagBytes) {
      log.warn({ safe_wal_size: h.safeWalSize, lag_bytes: h.lagBytes }, `replication slot ${opts.slot} is over half way to max_slot_wal_keep_size`);
    }
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot read the replication slot state');
  }
}

/**
 * Row reads (sql/migrations/008) are WAL messages written outside any transaction. When the reading
 * transaction ends without a transaction id, PostgreSQL 15 asks the WAL writer to flush its WAL if it
 * commits (about a second, measured), but not if it rolls back: such a read stayed unflushed (neither
 * streamed nor safe from a crash) until something else flushed, 3.3 s and 9.2 s in two tries on a
 * quiet server (PostgreSQL 17's pg_logical_emit_message(..., flush) would do it itself). So once a second, while some protected
 * table records row reads and the server's WAL insert position is past its flush position, commit a
 * transaction with an id (its commit flushes everything before it): at most one xid a second, none on
 * a server whose WAL is flushed anyway, and none where no table records row reads.
 */
const WAL_NUDGE_MS = 1000;

const WAL_NUDGE_SQL =
  'SELECT CASE WHEN EXISTS (SELECT FROM audit.protected_tables WHERE row_reads IS NOT NULL) ' +
  'AND pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() THEN pg_current_xact_id() END';

async function nudgeWalFlush(client: Queryable, log: Logger): Promise<void> {
  try {
    await client.query(WAL_NUDGE_SQL);
  } catch (err) {
    log.debug({ err: (err as Error).message }, 'cannot nudge the WAL flush');
  }
}

/** What lastRecordOp says of an archive of heartbeats only: no record was ever archived. */
const NO_DATA_FILE = 'no data file';

/**
 * The op (and backfill tag) of the archive's last record: tells whether a backfill was cut short.
 * NO_DATA_FILE when no digest names a data file; null when the last one cannot be read yet (a
 * delivery stream's, not delivered).
 */
async function lastRecordOp(archive: Archive, keys: Map<string, VerifyKey>, head: Digest): Promise<{ op: string; backfill?: string } | null> {
  for (let seq = head.file_seq; seq >= 1; seq--) {
    let d = head; // the head was read and checked already
    if (seq !== head.file_seq) {
      const bytes = await archive.reader.get(digestKey(seq));
      const opened = bytes ? openDigest(bytes, keys) : null;
      if (!opened?.ok) {
        throw new ServiceError(
          `${objectUrl(archive.location, digestKey(seq))} ${opened ? `cannot be trusted: ${opened.problem}` : 'is missing'}; ` +
            'refusing to continue the chain (run `pg-audit-shipper verify`)',
        );
      }
      d = opened.digest;
    }
    if (!d.object_key) continue;
    const data = await archive.reader.get(d.object_key);
    // A delivery stream writes its objects minutes after the digest that names them: not there yet.
    if (data === null && parseStreamKey(d.object_key)) return null;
    // What this decides can drop and re-create the slot: read only the bytes the signed digest names.
    if (data === null || sha256Hex(data) !== d.object_sha256 || data.length !== d.object_bytes) {
      throw new ServiceError(
        `${objectUrl(archive.location, d.object_key)} ${data === null ? 'is missing' : 'does not match the hash its signed digest records'}; ` +
          'refusing to continue the chain (run `pg-audit-shipper verify`)',
      );
    }
    const content = fileContent(d, data);
    if (typeof content === 'string') return null;
    const lines = content.toString('utf8').trimEnd().split('\n');
    return JSON.parse(lines[lines.length - 1]!) as { op: string; backfill?: string };
  }
  return { op: NO_DATA_FILE };
}

/** audit_log ids already archived (only for recovery: reads the whole archive, checking it on the way). */
async function archivedIds(archive: Archive, keys: Map<string, VerifyKey>): Promise<IdSet> {
  const ids = new IdSet();
  const report = await verifyChain(archive.reader, {
    keys,
    onRecords: (records) => {
      for (const r of records) if (typeof r.id === 'string') ids.add(r.id);
    },
  });
  if (report.findings.length > 0) {
    throw new ServiceError(
      `cannot recover missed rows: the archive has ${report.findings.length} problems, first: ` +
        `${report.findings[0]!.where}: ${report.findings[0]!.message} (run \`pg-audit-shipper verify\`)`,
    );
  }
  return ids;
}
