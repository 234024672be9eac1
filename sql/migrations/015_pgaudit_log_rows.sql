-- Version 15: pgaudit.log_rows pinned off for this database. With it on, pgaudit writes no object
-- line for COPY ... TO (pgaudit/pgaudit#240; checked on PostgreSQL 15 with pgaudit 1.7: a COPY of
-- a table the auditor may read left no line at all, where a SELECT did), so a server-wide setting
-- (postgresql.conf, ALTER SYSTEM, a parameter group) would let bulk exports read by statement go
-- unrecorded. A database's setting outranks those; a role's own setting would outrank it, and shows
-- in the shipper's attestations (role_settings). Only a superuser sets it (init as a platform's
-- admin role leaves it out: src/capture/adapt.ts).
DO $logrows$
BEGIN
  IF EXISTS (SELECT FROM pg_catalog.pg_settings WHERE name = 'pgaudit.log_rows') THEN
    EXECUTE format('ALTER DATABASE %I SET pgaudit.log_rows = off', current_database());
  END IF;
END
$logrows$;
