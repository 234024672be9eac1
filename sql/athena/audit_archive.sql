-- Amazon Athena (or Trino with the Hive connector) over an archive's data files, without the tool.
-- Replace s3://BUCKET/PREFIX with the archive (`--archive s3://BUCKET/PREFIX`).
--
-- Each data file is gzip'd newline-delimited JSON, one record per line, flat, in the Hive-style
-- partition of its UTC commit date: data/dt=YYYY-MM-DD/<file seq>-<hash>.jsonl.gz. Partition
-- projection computes the partitions from dates, so nobody runs MSCK REPAIR and nothing lists six
-- years of objects. Values are kept as the database printed them (text), so columns are strings
-- except the record's own sequence numbers; occurred_at reads "2026-11-27 02:11:09.129119+00" and
-- compares correctly as text against '2026-03-01' or '2026-03-01 08:00:00'.
--
-- Athena does not check the hash chain or the signatures: answers handed to an auditor come from
-- `pg-audit-shipper query` (verifies every file it reads) or are checked with `verify`.
-- The test suite reads this file and queries a real archive with DuckDB using these columns.

CREATE EXTERNAL TABLE IF NOT EXISTS audit_archive (
  `chain`             string  COMMENT 'SHA-256 chain hash of this record (docs/format.md)',
  `seq`               bigint  COMMENT 'record sequence number in the archive, gapless',
  `lsn`               string  COMMENT 'commit LSN of the transaction',
  `idx`               int     COMMENT 'position of the change in its transaction',
  `op`                string  COMMENT 'insert = an audit event; update/delete/truncate = tamper attempt; gap; marker',
  `id`                string,
  `occurred_at`       string  COMMENT 'event time, UTC',
  `tx_started_at`     string,
  `source`            string  COMMENT 'trigger (writes) or pgaudit (reads, denials)',
  `action`            string,
  `outcome`           string  COMMENT 'success or failure',
  `schema_name`       string,
  `table_name`        string,
  `row_id`            string,
  `changed_columns`   string  COMMENT 'UPDATE: column names as a PostgreSQL array text, e.g. {full_name}',
  `session_user_name` string,
  `current_role_name` string,
  `app_user_id`       string,
  `app_customer_id`   string,
  `application_name`  string,
  `client_addr`       string,
  `client_port`       string,
  `backend_pid`       string,
  `txid`              string,
  `statement`         string,
  `error`             string,
  `log_session_id`    string,
  `log_line_num`      string,
  `relation_name`     string  COMMENT 'the partition or parent addressed, when not the protected table itself',
  `old_row_id`        string  COMMENT 'UPDATE that changed the key: the key before',
  `reason`            string  COMMENT 'gap and marker records: why',
  `backfill`          string  COMMENT 'set on records recovered from audit_log rather than streamed'
)
PARTITIONED BY (`dt` string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
LOCATION 's3://BUCKET/PREFIX/data/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.dt.type' = 'date',
  'projection.dt.format' = 'yyyy-MM-dd',
  'projection.dt.range' = '2020-01-01,NOW',
  'projection.dt.interval' = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://BUCKET/PREFIX/data/dt=${dt}/'
);

-- Records with op = 'insert' are audit events, except source = 'ingest' (the ingester's receipts:
-- which log bytes it read, checked by `verify`); filter them out when counting events.
--
-- Who looked at customer 4711's record between March and May? dt is the commit date: never before
-- the event's date, at most a little after it, so a day of margin past the range is enough.
--
--   SELECT occurred_at, session_user_name, app_user_id, application_name, statement
--     FROM audit_archive
--    WHERE dt BETWEEN '2026-03-01' AND '2026-06-01'
--      AND occurred_at >= '2026-03-01' AND occurred_at < '2026-06-01'
--      AND op = 'insert' AND action = 'SELECT' AND app_customer_id = '4711'
--    ORDER BY seq;
--
-- All denied accesses to the customers table this year:
--
--   SELECT occurred_at, session_user_name, action, error
--     FROM audit_archive
--    WHERE dt >= '2026-01-01' AND op = 'insert' AND outcome = 'failure' AND table_name = 'customers'
--    ORDER BY seq;
