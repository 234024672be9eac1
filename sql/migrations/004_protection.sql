-- pg-audit-shipper, version 4: protection that survives its table's owner and migrations.
--
-- A table's owner (no superuser, no access to the audit schema) could switch capture off with
-- ordinary DDL: disable or drop the audit triggers, revoke the auditor's SELECT (no more read
-- auditing), put a rule or an inheriting child in front of it. Event triggers (only a superuser can
-- create them, and they fire for every role) check, after every DDL command, that each protected
-- table is still captured, and refuse the command otherwise. DDL that changes a protected table's
-- shape or name is allowed, recorded as an audit event (who, command, object, statement), and
-- followed: a renamed or moved table stays protected under its new name (tables are tracked by
-- OID); a dropped one is recorded and leaves the list. `protect` and `unprotect` are recorded too.

ALTER TABLE audit.protected_tables ADD COLUMN IF NOT EXISTS relid oid;
UPDATE audit.protected_tables SET relid = to_regclass(format('%I.%I', schema_name, table_name))::oid WHERE relid IS NULL;

-- One place that writes protection events: source 'trigger' (they come from inside the server),
-- action e.g. PROTECT, UNPROTECT, 'ALTER TABLE', 'DROP TABLE', RENAME.
CREATE OR REPLACE FUNCTION audit.record_protection_event(act text, sch text, tbl text, what text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
BEGIN
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, schema_name, table_name,
    session_user_name, current_role_name, app_user_id, application_name, client_addr, client_port, backend_pid, txid, statement)
  VALUES (statement_timestamp(), transaction_timestamp(), 'trigger', act, 'success', sch, tbl, session_user,
    audit.acting_role(), nullif(current_setting('app.user_id', true), ''), nullif(current_setting('application_name'), ''),
    inet_client_addr(), inet_client_port(), pg_backend_pid(), pg_current_xact_id()::text::bigint, left(what, 2000));
END
$fn$;
ALTER FUNCTION audit.record_protection_event(text, text, text, text) OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.record_protection_event(text, text, text, text) FROM PUBLIC;

-- After every DDL command: every protected table must still be captured; renames are followed;
-- DDL on a protected table is recorded.
CREATE OR REPLACE FUNCTION audit.guard_protected_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  p record;
  c record;
  problem text;
BEGIN
  FOR p IN SELECT pt.schema_name, pt.table_name, pt.relid, cl.relname::text AS relname, ns.nspname::text AS nspname, cl.relkind
             FROM audit.protected_tables pt
             LEFT JOIN pg_class cl ON cl.oid = pt.relid
             LEFT JOIN pg_namespace ns ON ns.oid = cl.relnamespace
  LOOP
    CONTINUE WHEN p.relname IS NULL; -- dropped in this command: recorded by audit.follow_protected_drop()
    problem := NULL;
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p.relid AND tgname = 'audit_row_change' AND tgenabled IN ('O', 'A'))
       OR NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p.relid AND tgname = 'audit_truncate' AND tgenabled IN ('O', 'A')) THEN
      problem := 'its audit triggers (audit_row_change, audit_truncate) must stay present and enabled';
    ELSIF NOT has_table_privilege('audit_auditor', p.relid, 'SELECT') THEN
      problem := 'audit_auditor must keep SELECT on it: pgaudit logs its reads through that grant';
    ELSIF p.relkind <> 'p' AND EXISTS (SELECT FROM pg_inherits WHERE inhparent = p.relid) THEN
      problem := 'a table inheriting from it would hold rows read and changed through it that its triggers never see';
    ELSIF EXISTS (SELECT FROM pg_rewrite WHERE ev_class = p.relid AND rulename <> '_RETURN') THEN
      problem := 'a rule on it could turn its writes into other statements that its triggers never see';
    END IF;
    IF problem IS NOT NULL THEN
      RAISE EXCEPTION 'refused: %.% is protected by pg-audit-shipper and %', quote_ident(p.nspname), quote_ident(p.relname), problem
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'to stop auditing it, an audit administrator runs `pg-audit-shipper unprotect` first (recorded in the trail)';
    END IF;
    IF p.relname <> p.table_name OR p.nspname <> p.schema_name THEN
      UPDATE audit.protected_tables SET schema_name = p.nspname, table_name = p.relname WHERE relid = p.relid;
      PERFORM audit.record_protection_event('RENAME', p.nspname, p.relname,
        format('%s.%s is now %s.%s (still protected): %s', quote_ident(p.schema_name), quote_ident(p.table_name),
               quote_ident(p.nspname), quote_ident(p.relname), current_query()));
    END IF;
  END LOOP;
  FOR c IN SELECT DISTINCT d.command_tag, pt.schema_name, pt.table_name
             FROM pg_event_trigger_ddl_commands() d
             JOIN audit.protected_tables pt ON d.classid = 'pg_class'::regclass AND d.objid = pt.relid
            WHERE d.command_tag NOT IN ('CREATE TRIGGER', 'GRANT') -- protect()'s own steps
  LOOP
    PERFORM audit.record_protection_event(c.command_tag, c.schema_name, c.table_name, current_query());
  END LOOP;
END
$fn$;
ALTER FUNCTION audit.guard_protected_ddl() OWNER TO audit_owner;

-- A dropped protected table is recorded and leaves the list.
CREATE OR REPLACE FUNCTION audit.follow_protected_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE o record;
BEGIN
  FOR o IN SELECT pt.schema_name, pt.table_name, pt.relid
             FROM pg_event_trigger_dropped_objects() d
             JOIN audit.protected_tables pt ON d.classid = 'pg_class'::regclass AND d.objid = pt.relid AND d.objsubid = 0
  LOOP
    DELETE FROM audit.protected_tables WHERE relid = o.relid;
    PERFORM audit.record_protection_event('DROP TABLE', o.schema_name, o.table_name, current_query());
  END LOOP;
END
$fn$;
ALTER FUNCTION audit.follow_protected_drop() OWNER TO audit_owner;

DROP EVENT TRIGGER IF EXISTS audit_guard_protected_ddl;
CREATE EVENT TRIGGER audit_guard_protected_ddl ON ddl_command_end EXECUTE FUNCTION audit.guard_protected_ddl();
DROP EVENT TRIGGER IF EXISTS audit_follow_protected_drop;
CREATE EVENT TRIGGER audit_follow_protected_drop ON sql_drop EXECUTE FUNCTION audit.follow_protected_drop();
-- ALWAYS: also under session_replication_role = replica, the switch that silences ordinary
-- triggers (a superuser can still drop or disable these; that is the trust model's limit).
ALTER EVENT TRIGGER audit_guard_protected_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER audit_follow_protected_drop ENABLE ALWAYS;

-- protect() and unprotect(): tracked by OID, recorded by whom. unprotect() takes the table off the
-- list before it drops the triggers, so the guard lets it through.
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
  EXECUTE format('GRANT SELECT ON %I.%I TO audit_auditor', sch, tbl);
  INSERT INTO audit.protected_tables (schema_name, table_name, key_columns, relid)
  VALUES (sch, tbl, keys, target)
  ON CONFLICT (schema_name, table_name) DO UPDATE SET key_columns = excluded.key_columns, relid = excluded.relid;
  PERFORM audit.record_protection_event('PROTECT', sch, tbl, format('key %s', array_to_string(keys, ', ')));
END
$fn$;

CREATE OR REPLACE FUNCTION audit.unprotect(target regclass)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE sch text; tbl text;
BEGIN
  SELECT n.nspname, c.relname INTO sch, tbl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  DELETE FROM audit.protected_tables WHERE relid = target OR (schema_name = sch AND table_name = tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS audit_row_change ON %I.%I', sch, tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %I.%I', sch, tbl);
  EXECUTE format('REVOKE SELECT ON %I.%I FROM audit_auditor', sch, tbl);
  PERFORM audit.record_protection_event('UNPROTECT', sch, tbl, 'auditing stopped');
END
$fn$;
REVOKE ALL ON FUNCTION audit.protect(regclass, text[]), audit.unprotect(regclass) FROM PUBLIC;
