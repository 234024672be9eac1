-- pg-audit-shipper, version 6: the capture configuration, attested in the chain.
--
-- Roles the database cannot stop (superusers; CREATEROLE holders, who can grant themselves
-- audit_owner or a table's owner role) can switch capture off: replace a capture function with a
-- no-op, drop an event trigger, take a table off the list, publish a decoy in audit_log's place.
-- The shipper reads, from the catalogs, everything capture depends on, and appends it to the trail
-- as an attestation (source 'attest'): at start, when it changes, and at least once per heartbeat
-- interval. `verify` reports every change between two attestations, and a stretch without one.
-- The shipper computes the attestation itself; this function only appends it, so the shipper's
-- role needs no INSERT on audit_log (which would let it write events of any source).

ALTER TABLE audit.audit_log DROP CONSTRAINT IF EXISTS audit_log_source_check;
ALTER TABLE audit.audit_log ADD CONSTRAINT audit_log_source_check
  CHECK (source IN ('trigger', 'pgaudit', 'review', 'ingest', 'attest'));

CREATE OR REPLACE FUNCTION audit.attest(content text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE new_id bigint;
BEGIN
  PERFORM content::jsonb; -- an attestation is a JSON document; anything else is refused here
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, session_user_name, current_role_name,
    application_name, client_addr, client_port, backend_pid, txid, statement)
  VALUES (statement_timestamp(), transaction_timestamp(), 'attest', 'ATTESTATION', 'success', session_user, audit.acting_role(),
    nullif(current_setting('application_name'), ''), inet_client_addr(), inet_client_port(), pg_backend_pid(),
    pg_current_xact_id()::text::bigint, content)
  RETURNING id INTO new_id;
  RETURN new_id;
END
$fn$;
ALTER FUNCTION audit.attest(text) OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.attest(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.attest(text) TO audit_shipper;

-- The attestation names the server's logging and preload settings, which PostgreSQL shows only to
-- superusers and to members of pg_read_all_settings (read-only).
GRANT pg_read_all_settings TO audit_shipper;
