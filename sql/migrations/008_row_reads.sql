-- Version 8: reads with row identifiers, through the replication slot (opt-in per table:
-- `pg-audit-shipper protect TABLE --row-reads on`).
--
-- The policy audit_read_context (version 7) gets a second part on such a table:
--   USING ((SELECT audit.read_context()) AND audit.note_read('<oid>'::oid, <key>::text))
-- PostgreSQL checks a row-level security policy on every row a scan returns, so audit.note_read()
-- runs once per row read and writes a logical decoding message (pg_logical_emit_message) with the
-- table, the row's key, the login and the role in effect, and app.user_id / app.customer_id as they
-- are at that moment; the shipper receives it through its slot and seals it as a `read` record.
-- * Non-transactional messages: a read is recorded even when its transaction rolls back, and it
--   needs no server log (managed services: where logical decoding works, this works).
-- * The server evaluates the parts of the policies of one table by cost: note_read() is declared
--   expensive (COST 1000), so it runs after the table's own, cheaper policies, and only on rows they
--   let through (a policy of its own that calls a function declared costlier than that may let it run
--   earlier: such rows would be recorded as read although nobody saw them).
-- * A query condition that is not leakproof is checked after the policy: a row it then filters out
--   was checked by the policy, and is recorded as read. Leakproof conditions (=, <, ... on plain
--   types, which index lookups use) come first, so a lookup by key records the rows it returns.
-- * Superusers and roles with BYPASSRLS skip row-level security: their reads have no row events
--   (the statement-level path, pgaudit, still records them).
-- * Nothing here flushes the message: PostgreSQL 15 flushes it about a second after a read-only
--   transaction commits, not after one that rolls back; the shipper flushes the WAL once a second while
--   row reads are on (src/ship/shipper.ts). A server crash before that loses the read.

-- Nobody but audit.note_read() (and superusers) may write messages into the WAL: an application
-- could otherwise forge reads, or flood the slot. (PostgreSQL grants it to PUBLIC.)
DO $revoke$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
            WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO audit_owner', f);
  END LOOP;
END
$revoke$;

ALTER TABLE audit.protected_tables ADD COLUMN IF NOT EXISTS row_reads text; -- the policy's USING as pg_get_expr prints it while row reads are on

-- One message per row read. SECURITY DEFINER: it may emit messages, which the caller may not.
-- The prefix is what the shipper listens for; the fields are short to keep WAL small (about 270 bytes
-- of WAL per row read). Measured with pgbench lookups by key (2 clients), against the same table
-- protected without row reads: 0.55-0.65x. A plpgsql body without the SET search_path clause (every
-- name schema-qualified instead) was not measurably faster in alternating rounds (0.55-0.68x); a
-- LANGUAGE sql body was slower (0.31-0.36x). The clause stays: it is the plainer defence.
CREATE OR REPLACE FUNCTION audit.note_read(rel oid, row_key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER COST 1000 SET search_path = pg_catalog AS $fn$
DECLARE
  names text[] := parse_ident(rel::regclass::text);
BEGIN
  PERFORM pg_logical_emit_message(false, 'pg-audit-shipper/read', json_build_object(
    's', names[1], 't', names[2], 'k', row_key,
    'su', session_user,
    'cu', CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END,
    'au', nullif(current_setting('app.user_id', true), ''),
    'ac', nullif(current_setting('app.customer_id', true), ''),
    'at', to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'),
    'pid', pg_backend_pid(),
    'app', nullif(current_setting('application_name'), ''))::text);
  RETURN true;
END
$fn$;
ALTER FUNCTION audit.note_read(oid, text) OWNER TO audit_owner;
GRANT EXECUTE ON FUNCTION audit.note_read(oid, text) TO PUBLIC; -- the policy runs as whoever reads

-- Intact: the policy's USING is the plain read context, or, with row reads on, what set_row_reads made it.
CREATE OR REPLACE FUNCTION audit.read_context_intact(rel oid, mode text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT EXISTS (
    SELECT FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
      LEFT JOIN audit.protected_tables pt ON pt.relid = p.polrelid AND pt.part_of IS NULL
     WHERE p.polrelid = rel AND p.polname = 'audit_read_context' AND p.polcmd = '*' AND p.polroles = '{0}'
       AND p.polpermissive = (mode = 'permissive')
       AND pg_get_expr(p.polqual, p.polrelid) = coalesce(pt.row_reads, '( SELECT audit.read_context() AS read_context)')
       AND pg_get_expr(p.polwithcheck, p.polrelid) = '( SELECT audit.read_context() AS read_context)'
       AND c.relrowsecurity AND (mode = 'restrictive' OR c.relforcerowsecurity))
$fn$;
REVOKE ALL ON FUNCTION audit.read_context_intact(oid, text) FROM PUBLIC;

-- Turn row reads on or off for a protected table (idempotent). The key is the table's protect key,
-- spelled as the row trigger spells row_id (several columns: comma-separated).
CREATE OR REPLACE FUNCTION audit.set_row_reads(target regclass, enabled boolean)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  pt audit.protected_tables;
  key_expr text;
  qual text;
BEGIN
  SELECT * INTO pt FROM audit.protected_tables p WHERE p.relid = target AND p.part_of IS NULL;
  IF pt.relid IS NULL THEN
    IF NOT enabled THEN RETURN; END IF;
    RAISE EXCEPTION '% is not protected: protect it first', target;
  END IF;
  IF NOT enabled AND pt.row_reads IS NULL THEN RETURN; END IF;
  IF pt.read_context IS NULL THEN
    RAISE EXCEPTION 'row reads of % are recorded through its policy audit_read_context: protect it with --read-context on', target;
  END IF;
  IF enabled THEN
    SELECT CASE WHEN count(*) = 1 THEN format('(%I)::text', min(k))
                ELSE 'concat_ws('','', ' || string_agg(format('(%I)::text', k), ', ' ORDER BY o) || ')' END
      INTO key_expr FROM unnest(pt.key_columns) WITH ORDINALITY AS u(k, o);
  END IF;
  -- Off the DDL guard's list while the policy changes (it checks the policy of listed tables only).
  UPDATE audit.protected_tables SET read_context = NULL, row_reads = NULL WHERE relid = target AND part_of IS NULL;
  EXECUTE format('ALTER POLICY audit_read_context ON %s USING (%s)', target,
    CASE WHEN enabled THEN format('(SELECT audit.read_context()) AND audit.note_read(%L::oid, %s)', target::oid, key_expr)
         ELSE '(SELECT audit.read_context())' END);
  IF enabled THEN
    SELECT pg_get_expr(polqual, polrelid) INTO qual FROM pg_policy WHERE polrelid = target AND polname = 'audit_read_context';
  END IF;
  UPDATE audit.protected_tables SET read_context = pt.read_context, row_reads = qual WHERE relid = target AND part_of IS NULL;
  -- Protecting again with the same key changes nothing: no event for it.
  IF qual IS NOT DISTINCT FROM pt.row_reads THEN RETURN; END IF;
  PERFORM audit.record_protection_event('ROW READS', pt.schema_name, pt.table_name,
    CASE WHEN enabled THEN format('every row read is recorded with its key (%s), through the replication slot', array_to_string(pt.key_columns, ', '))
         ELSE 'rows read are no longer recorded one by one (statements still are)' END);
END
$fn$;
REVOKE ALL ON FUNCTION audit.set_row_reads(regclass, boolean) FROM PUBLIC;
