-- Version 14: how long each log file was when the ingester last listed it. A file removed (the
-- server's or the platform's log retention) before the ingester read it to that length held lines
-- nobody read: the ingester records them as missing (src/capture/ingest/ingester.ts) instead of
-- letting the trail look complete. NULL: a position that is no log file's (Cloud Logging's time).
ALTER TABLE audit.ingest_files ADD COLUMN IF NOT EXISTS seen_size bigint;
