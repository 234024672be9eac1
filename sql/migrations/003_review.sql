-- pg-audit-shipper, version 3: acknowledging what the archive records as wrong, through the chain.
--
-- `verify` reports every committed change of audit_log (a tamper record) and every streaming gap
-- as a finding. After a person has reviewed one, they acknowledge it here; the acknowledgement is an
-- audit event like any other (source 'review', action 'ACKNOWLEDGE', row_id the finding id,
-- statement the reason, session_user_name and app_user_id who), so it is archived after the
-- finding, signed with it, and `verify` reports the finding as acknowledged, by whom and why.
-- Nobody edits the archive to turn the scheduled check green.

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'audit_reviewer') THEN
    CREATE ROLE audit_reviewer NOLOGIN;    -- may acknowledge findings; sees nothing else
  END IF;
END
$roles$;
GRANT USAGE ON SCHEMA audit TO audit_reviewer;

ALTER TABLE audit.audit_log DROP CONSTRAINT IF EXISTS audit_log_source_check;
-- 'ingest': the ingester's receipts (which bytes of which log file each of its commits consumed).
ALTER TABLE audit.audit_log ADD CONSTRAINT audit_log_source_check CHECK (source IN ('trigger', 'pgaudit', 'review', 'ingest'));

CREATE OR REPLACE FUNCTION audit.acknowledge_finding(finding text, reason text)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE new_id bigint;
BEGIN
  IF finding IS NULL OR finding !~ '^record:[1-9][0-9]*$' THEN
    RAISE EXCEPTION 'finding % is not a finding id: verify names them record:<seq>', coalesce(finding, 'NULL')
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF reason IS NULL OR length(btrim(reason)) < 10 THEN
    RAISE EXCEPTION 'say why the finding is acknowledged (at least 10 characters): the reason is archived with it'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, row_id,
    session_user_name, current_role_name, app_user_id, application_name, client_addr, client_port,
    backend_pid, txid, statement)
  VALUES (statement_timestamp(), transaction_timestamp(), 'review', 'ACKNOWLEDGE', 'success', finding,
    session_user, audit.acting_role(), nullif(current_setting('app.user_id', true), ''),
    nullif(current_setting('application_name'), ''), inet_client_addr(), inet_client_port(),
    pg_backend_pid(), pg_current_xact_id()::text::bigint, left(reason, 2000))
  RETURNING id INTO new_id;
  RETURN new_id;
END
$fn$;
ALTER FUNCTION audit.acknowledge_finding(text, text) OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.acknowledge_finding(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.acknowledge_finding(text, text) TO audit_reviewer;

-- Who may write which source. The triggers and acknowledge_finding() run as audit_owner; the
-- ingester's role may append only what it reads from pgaudit, and its receipts: an ingester login
-- (or anyone who obtains its grant) must not forge trigger events or acknowledgements. The WHEN clause keeps the
-- capture triggers' own inserts (current_user = audit_owner) from calling anything.
CREATE OR REPLACE FUNCTION audit.guard_source() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    RETURN NEW;
  END IF;
  IF NEW.source = 'ingest' AND pg_has_role(current_user, 'audit_ingester', 'USAGE') THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit.audit_log: % may append only pgaudit events, not source %', current_user, NEW.source
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'trigger events come from the capture triggers, acknowledgements from audit.acknowledge_finding()';
END
$fn$;
ALTER FUNCTION audit.guard_source() OWNER TO audit_owner;
CREATE OR REPLACE TRIGGER audit_log_source_guard
  BEFORE INSERT ON audit.audit_log FOR EACH ROW
  WHEN (NEW.source <> 'pgaudit' AND current_user <> 'audit_owner')
  EXECUTE FUNCTION audit.guard_source();
