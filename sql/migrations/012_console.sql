-- Version 12: the compliance console's own use is audited in the same chain.
--
-- Every search, report and evidence export a person makes in `pg-audit-shipper console` is an audit
-- event: source 'console', action CONSOLE SEARCH / CONSOLE REPORT / CONSOLE EVIDENCE / CONSOLE
-- ACKNOWLEDGE, app_user_id the person signed in to the console, app_customer_id the patient when the
-- question named one (so `query --customer 23` also answers "who searched for patient 23's trail"),
-- statement the filters and the number of results as JSON, session_user_name the console's login.
-- The console's login needs audit_console, which may call this function and nothing else.

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_console') THEN
    CREATE ROLE audit_console NOLOGIN;    -- records the console's use; sees nothing
  END IF;
END
$roles$;
GRANT USAGE ON SCHEMA audit TO audit_console;

ALTER TABLE audit.audit_log DROP CONSTRAINT IF EXISTS audit_log_source_check;
ALTER TABLE audit.audit_log ADD CONSTRAINT audit_log_source_check
  CHECK (source IN ('trigger', 'pgaudit', 'review', 'ingest', 'attest', 'console'));

CREATE OR REPLACE FUNCTION audit.record_console_use(what text, console_user text, customer text, detail text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE new_id bigint;
BEGIN
  IF what IS NULL OR what NOT IN ('CONSOLE SEARCH', 'CONSOLE REPORT', 'CONSOLE EVIDENCE', 'CONSOLE ACKNOWLEDGE') THEN
    RAISE EXCEPTION 'console use % is not one the console records', coalesce(what, 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF console_user IS NULL OR btrim(console_user) = '' THEN
    RAISE EXCEPTION 'a console use is recorded with the person who made it' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, session_user_name,
    current_role_name, app_user_id, app_customer_id, application_name, client_addr, client_port,
    backend_pid, txid, statement)
  VALUES (statement_timestamp(), transaction_timestamp(), 'console', what, 'success', session_user,
    audit.acting_role(), left(console_user, 200), nullif(left(customer, 200), ''),
    nullif(current_setting('application_name'), ''), inet_client_addr(), inet_client_port(),
    pg_backend_pid(), pg_current_xact_id()::text::bigint, left(detail, 4000))
  RETURNING id INTO new_id;
  RETURN new_id;
END
$fn$;
ALTER FUNCTION audit.record_console_use(text, text, text, text) OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.record_console_use(text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.record_console_use(text, text, text, text) TO audit_console;
