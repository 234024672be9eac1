import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { SealedFile } from '../seal/sealer.js';

export interface ShipMetrics {
  registry: Registry;
  records: Counter;
  tamper: Counter<'op'>;
  rowsShipped: Counter;
  bytesShipped: Counter;
  files: Counter<'kind'>;
  retries: Counter;
  uploadSeconds: Histogram;
  slotLagBytes: Gauge;
  slotSafeWalBytes: Gauge;
  lastDurableWrite: Gauge;
  /** the built-in ingester (ship --log-dir): 1 running, 0 failed and waiting to restart */
  ingestUp: Gauge;
  /** 0 while a component (database, replication stream, storage, ingest, attestation) is failing */
  componentFailing: Gauge<'component'>;
  ingestRestarts: Counter;
  ingestLastPass: Gauge;
  /** log bytes not yet ingested after the last pass (a record still being written, or falling behind) */
  ingestPendingBytes: Gauge;
  stored(file: SealedFile): void;
  /** ms timestamp of the last stored file or heartbeat (0: none yet) */
  lastWriteMs(): number;
}

export function createMetrics(): ShipMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'audit_shipper_' });
  const m = {
    registry,
    componentFailing: new Gauge({
      name: 'audit_shipper_component_failing',
      help: '1 while the component is failing (/readyz says why), 0 when it works',
      labelNames: ['component'] as const,
      registers: [registry],
    }),
    records: new Counter({ name: 'audit_shipper_records_received_total', help: 'audit_log changes received from the slot', registers: [registry] }),
    tamper: new Counter({
      name: 'audit_shipper_tamper_attempts_total',
      help: 'UPDATE/DELETE/TRUNCATE of audit_log seen in the stream',
      labelNames: ['op'] as const,
      registers: [registry],
    }),
    rowsShipped: new Counter({ name: 'audit_shipper_rows_shipped_total', help: 'records stored in the archive', registers: [registry] }),
    bytesShipped: new Counter({
      name: 'audit_shipper_bytes_shipped_total',
      help: 'bytes stored in the archive (compressed files and digests)',
      registers: [registry],
    }),
    files: new Counter({ name: 'audit_shipper_files_total', help: 'files stored, by digest kind', labelNames: ['kind'] as const, registers: [registry] }),
    retries: new Counter({
      name: 'audit_shipper_storage_retries_total',
      help: 'failed storage or bookkeeping attempts that were retried',
      registers: [registry],
    }),
    uploadSeconds: new Histogram({
      name: 'audit_shipper_upload_seconds',
      help: 'time to store one file and its digest, retries included',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    slotLagBytes: new Gauge({
      name: 'audit_shipper_slot_lag_bytes',
      help: 'WAL bytes between the server position and the slot confirmed position',
      registers: [registry],
    }),
    slotSafeWalBytes: new Gauge({
      name: 'audit_shipper_slot_safe_wal_bytes',
      help: 'WAL bytes left before max_slot_wal_keep_size invalidates the slot (-1: unlimited)',
      registers: [registry],
    }),
    ingestUp: new Gauge({
      name: 'audit_shipper_ingest_up',
      help: 'the built-in pgaudit ingester: 1 running, 0 failed and waiting to restart',
      registers: [registry],
    }),
    ingestRestarts: new Counter({
      name: 'audit_shipper_ingest_restarts_total',
      help: 'times the built-in ingester failed and was restarted',
      registers: [registry],
    }),
    ingestLastPass: new Gauge({
      name: 'audit_shipper_ingest_last_pass_timestamp_seconds',
      help: 'when the built-in ingester last read the log directory to its end',
      registers: [registry],
    }),
    ingestPendingBytes: new Gauge({
      name: 'audit_shipper_ingest_pending_bytes',
      help: 'csvlog bytes not yet ingested after the last pass',
      registers: [registry],
    }),
    lastDurableWrite: new Gauge({
      name: 'audit_shipper_last_durable_write_timestamp_seconds',
      help: 'when the last file or heartbeat was stored',
      registers: [registry],
    }),
  };
  let lastWrite = 0;
  return {
    ...m,
    lastWriteMs: () => lastWrite,
    stored(file: SealedFile): void {
      lastWrite = Date.now();
      m.rowsShipped.inc(file.records);
      m.bytesShipped.inc(file.objects.reduce((n, o) => n + o.body.length, 0));
      m.files.inc({ kind: file.digest.kind });
      m.lastDurableWrite.set(Date.now() / 1000);
    },
  };
}
