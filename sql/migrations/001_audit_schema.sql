-- pg-audit-shipper capture schema, version 1.
-- Applied by `pg-audit-shipper init` inside one transaction; every statement is idempotent so a
-- half-known database (roles already present from another database of the cluster) upgrades cleanly.

-- Roles are cluster-wide. All are NOLOGIN: the operator decides who may log in as what
-- (ALTER ROLE audit_shipper LOGIN PASSWORD ...), so `init` never invents credentials.
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_owner') THEN
    CREATE ROLE audit_owner NOLOGIN;       -- owns the audit schema; nobody logs in as it
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_auditor') THEN
    CREATE ROLE audit_auditor NOLOGIN;     -- pgaudit.role: its SELECT grants decide what reads are logged
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_shipper') THEN
    CREATE ROLE audit_shipper NOLOGIN REPLICATION;  -- streams audit_log; reads nothing else
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_ingester') THEN
    CREATE ROLE audit_ingester NOLOGIN;    -- turns pgaudit log lines into audit_log rows
  END IF;
END
$roles$;

CREATE SCHEMA IF NOT EXISTS audit AUTHORIZATION audit_owner;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO audit_shipper, audit_ingester;

CREATE TABLE IF NOT EXISTS audit.audit_log (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at       timestamptz NOT NULL,  -- statement time (trigger) or log line time (pgaudit)
  tx_started_at     timestamptz,           -- transaction start; unknown for pgaudit events
  source            text NOT NULL CHECK (source IN ('trigger', 'pgaudit')),
  action            text NOT NULL,         -- INSERT, UPDATE, DELETE, TRUNCATE, SELECT, ...
  outcome           text NOT NULL CHECK (outcome IN ('success', 'failure')),
  schema_name       text,
  table_name        text,
  row_id            text,                  -- the protected table's key, as text
  changed_columns   text[],                -- UPDATE only: names, never values
  session_user_name text NOT NULL,
  current_role_name text,                  -- unknown for pgaudit events
  app_user_id       text,                  -- app.user_id when the session set it
  app_customer_id   text,                  -- app.customer_id when the session set it
  application_name  text,
  client_addr       inet,
  client_port       integer,
  backend_pid       integer,
  txid              bigint,                -- 0/NULL for reads: pgaudit has no xid before a write
  statement         text,                  -- pgaudit events only, truncated by the ingester
  error             text,                  -- failures: SQLSTATE and server message (no values)
  log_session_id    text,                  -- pgaudit events: origin log line, unique with log_line_num
  log_line_num      bigint
);
-- Each audited write pays for every index here, inside the application's transaction: keep them
-- few and cheap. The log-line key exists only for pgaudit rows (partial); time ranges use BRIN,
-- which suits an append-only table whose occurred_at grows with its physical order.
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_line_unique ON audit.audit_log (log_session_id, log_line_num)
  WHERE log_session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_log_occurred_at ON audit.audit_log USING brin (occurred_at);
ALTER TABLE audit.audit_log OWNER TO audit_owner;
-- The shipper streams rows and checks completeness; the ingester appends reads. Nobody else.
REVOKE ALL ON audit.audit_log FROM PUBLIC;
GRANT SELECT ON audit.audit_log TO audit_shipper;
GRANT INSERT ON audit.audit_log TO audit_ingester;
-- ON CONFLICT (log_session_id, log_line_num) DO NOTHING reads the arbiter columns, and only those.
GRANT SELECT (log_session_id, log_line_num) ON audit.audit_log TO audit_ingester;

-- Append-only, also for roles that were granted more than they should have been. Raising makes
-- the attempt visible in the server log (ERROR line) and, through the ingester, in the trail.
CREATE OR REPLACE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  RAISE EXCEPTION 'audit.audit_log is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'Audit rows can only be removed by the retention maintenance path after they are proven archived.';
END
$fn$;
ALTER FUNCTION audit.refuse_change() OWNER TO audit_owner;
CREATE OR REPLACE TRIGGER audit_log_append_only
  BEFORE UPDATE OR DELETE ON audit.audit_log FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE OR REPLACE TRIGGER audit_log_no_truncate
  BEFORE TRUNCATE ON audit.audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Which tables are protected, and by which key. The ingester reads this to pick pgaudit lines.
CREATE TABLE IF NOT EXISTS audit.protected_tables (
  schema_name  text NOT NULL,
  table_name   text NOT NULL,
  key_columns  text[] NOT NULL,
  protected_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, table_name)
);
ALTER TABLE audit.protected_tables OWNER TO audit_owner;
REVOKE ALL ON audit.protected_tables FROM PUBLIC;
GRANT SELECT ON audit.protected_tables TO audit_ingester, audit_shipper;

-- Who acts: SECURITY DEFINER hides the caller's current_user, but SET ROLE shows in the `role`
-- setting, which is what an application pool switching roles uses.
CREATE OR REPLACE FUNCTION audit.acting_role() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END
$fn$;
ALTER FUNCTION audit.acting_role() OWNER TO audit_owner;

-- Row-level capture. SECURITY DEFINER so application roles need no privilege on audit_log;
-- only key and column names are written, never PHI values.
CREATE OR REPLACE FUNCTION audit.capture_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $fn$
DECLARE
  new_row jsonb;
  old_row jsonb;
  key_row jsonb;
  changed text[];
BEGIN
  IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
  IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
  key_row := coalesce(new_row, old_row);
  IF TG_OP = 'UPDATE' THEN
    SELECT array_agg(n.key ORDER BY n.key) INTO changed
      FROM jsonb_each(new_row) n JOIN jsonb_each(old_row) o USING (key)
     WHERE n.value IS DISTINCT FROM o.value;
  END IF;
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, schema_name,
    table_name, row_id, changed_columns, session_user_name, current_role_name, app_user_id,
    app_customer_id, application_name, client_addr, client_port, backend_pid, txid)
  VALUES (statement_timestamp(), transaction_timestamp(), 'trigger', TG_OP, 'success', TG_TABLE_SCHEMA,
    TG_TABLE_NAME,
    CASE WHEN TG_NARGS = 1 THEN key_row ->> TG_ARGV[0]   -- the common single-column key, without a subquery
         ELSE (SELECT string_agg(key_row ->> k, ',' ORDER BY ord) FROM unnest(TG_ARGV) WITH ORDINALITY AS t(k, ord)) END,
    changed, session_user,
    CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END,
    nullif(current_setting('app.user_id', true), ''), nullif(current_setting('app.customer_id', true), ''),
    nullif(current_setting('application_name'), ''), inet_client_addr(), inet_client_port(),
    pg_backend_pid(), pg_current_xact_id()::text::bigint);
  RETURN NULL;
END
$fn$;
ALTER FUNCTION audit.capture_row_change() OWNER TO audit_owner;

CREATE OR REPLACE FUNCTION audit.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $fn$
BEGIN
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, schema_name,
    table_name, session_user_name, current_role_name, app_user_id, app_customer_id,
    application_name, client_addr, client_port, backend_pid, txid)
  VALUES (statement_timestamp(), transaction_timestamp(), 'trigger', 'TRUNCATE', 'success',
    TG_TABLE_SCHEMA, TG_TABLE_NAME, session_user, audit.acting_role(),
    nullif(current_setting('app.user_id', true), ''), nullif(current_setting('app.customer_id', true), ''),
    nullif(current_setting('application_name'), ''), inet_client_addr(), inet_client_port(),
    pg_backend_pid(), pg_current_xact_id()::text::bigint);
  RETURN NULL;
END
$fn$;
ALTER FUNCTION audit.capture_truncate() OWNER TO audit_owner;

-- protect(table, key columns): idempotent. Default key: the table's primary key.
CREATE OR REPLACE FUNCTION audit.protect(target regclass, key_columns text[] DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  sch text; tbl text; keys text[]; missing text;
BEGIN
  SELECT n.nspname, c.relname INTO sch, tbl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  IF sch = 'audit' THEN
    RAISE EXCEPTION 'refusing to protect %.%: the audit schema records itself through the shipper', sch, tbl;
  END IF;
  keys := key_columns;
  IF keys IS NULL OR cardinality(keys) = 0 THEN
    SELECT array_agg(a.attname::text ORDER BY k.ord) INTO keys
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = target AND i.indisprimary;
    IF keys IS NULL THEN
      RAISE EXCEPTION '%.% has no primary key: name the key column(s) to record as the row identifier', sch, tbl
        USING HINT = 'pg-audit-shipper protect ' || sch || '.' || tbl || ' --key <column>';
    END IF;
  END IF;
  SELECT string_agg(k, ', ') INTO missing FROM unnest(keys) AS k
   WHERE NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = target AND a.attname = k
                       AND a.attnum > 0 AND NOT a.attisdropped);
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'key column(s) % not found in %.%', missing, sch, tbl;
  END IF;

  EXECUTE format('CREATE OR REPLACE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON %I.%I '
                 'FOR EACH ROW EXECUTE FUNCTION audit.capture_row_change(%s)',
                 sch, tbl, (SELECT string_agg(quote_literal(k), ', ') FROM unnest(keys) AS k));
  EXECUTE format('CREATE OR REPLACE TRIGGER audit_truncate AFTER TRUNCATE ON %I.%I '
                 'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()', sch, tbl);
  -- pgaudit object auditing logs statements that touch what audit_auditor may SELECT.
  EXECUTE format('GRANT SELECT ON %I.%I TO audit_auditor', sch, tbl);
  INSERT INTO audit.protected_tables (schema_name, table_name, key_columns)
  VALUES (sch, tbl, keys)
  ON CONFLICT (schema_name, table_name) DO UPDATE SET key_columns = excluded.key_columns;
END
$fn$;

CREATE OR REPLACE FUNCTION audit.unprotect(target regclass)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE sch text; tbl text;
BEGIN
  SELECT n.nspname, c.relname INTO sch, tbl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  EXECUTE format('DROP TRIGGER IF EXISTS audit_row_change ON %I.%I', sch, tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %I.%I', sch, tbl);
  EXECUTE format('REVOKE SELECT ON %I.%I FROM audit_auditor', sch, tbl);
  DELETE FROM audit.protected_tables WHERE schema_name = sch AND table_name = tbl;
END
$fn$;
REVOKE ALL ON FUNCTION audit.protect(regclass, text[]), audit.unprotect(regclass) FROM PUBLIC;

-- Ingester progress: one row per csvlog file (identified by device, inode and first bytes, so a
-- rotated-and-reused name is a new file), written in the same transaction as the rows it produced.
CREATE TABLE IF NOT EXISTS audit.ingest_files (
  file_key      text PRIMARY KEY,
  file_name     text NOT NULL,
  byte_offset   bigint NOT NULL,
  events        bigint NOT NULL DEFAULT 0,
  updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Sessions' app.user_id / app.customer_id as last SET in the log, carried across restarts.
CREATE TABLE IF NOT EXISTS audit.ingest_sessions (
  log_session_id text PRIMARY KEY,
  context        jsonb NOT NULL,
  last_seen      timestamptz NOT NULL
);
ALTER TABLE audit.ingest_files OWNER TO audit_owner;
ALTER TABLE audit.ingest_sessions OWNER TO audit_owner;
REVOKE ALL ON audit.ingest_files, audit.ingest_sessions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON audit.ingest_files, audit.ingest_sessions TO audit_ingester;
GRANT SELECT ON audit.ingest_files TO audit_shipper;

-- pgaudit: object-level auditing through audit_auditor, and SET commands (misc_set) so the
-- ingester can attribute reads to app.user_id / app.customer_id. Per database, for new sessions.
DO $pgaudit$
DECLARE classes text := coalesce(current_setting('pgaudit.log', true), 'none');
BEGIN
  EXECUTE format('ALTER DATABASE %I SET pgaudit.role = %L', current_database(), 'audit_auditor');
  IF classes = 'none' OR classes = '' THEN
    classes := 'misc_set';
  ELSIF classes !~* '(^|,)\s*(misc_set|all)\s*(,|$)' THEN
    classes := classes || ',misc_set';
  END IF;
  EXECUTE format('ALTER DATABASE %I SET pgaudit.log = %L', current_database(), classes);
END
$pgaudit$;
