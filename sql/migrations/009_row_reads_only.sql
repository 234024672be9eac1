-- Version 9: leaner row reads, and tables whose reads are recorded row by row only.
--
-- * audit.note_read() writes its message as a JSON array of positional values, built by one call,
--   without formatting the time or resolving the role itself (the shipper does both): measured with
--   pgbench lookups by key on PostgreSQL 15 (2 clients, a table whose only policy calls it), 0.53-0.60x
--   of the unprotected table's transactions per second, against 0.44-0.47x for version 8's body
--   (json_build_object, to_char, CASE, nullif); 105 bytes of message per row instead of about 170.
--   The per-call overhead of a SECURITY DEFINER plpgsql function with a SET clause, returning true
--   and emitting nothing, is itself 0.6-0.7x: that is the floor of this path in SQL.
-- * `protect --reads rows`: reads of the table are recorded by the policy alone, one event per row
--   returned, without pgaudit: audit_auditor loses its SELECT on the table (pgaudit then logs no
--   statement for it) and the policy no longer writes a read-context line per scan. Reads that skip
--   row-level security (superusers, BYPASSRLS roles) are then not recorded at all (README, trust
--   model). Partitioned tables and partitions keep pgaudit's statements: a read of a partition by its
--   own name checks only that partition's policies, which protect does not add.

-- Message: [1, table (regclass: always schema-qualified under this search_path), key, session_user,
-- the role setting ('none': no SET ROLE), app.user_id, app.customer_id, statement start (timestamptz
-- in JSON's ISO 8601 with the session's offset), backend pid, application_name]. The first element is
-- the layout's version. Unset settings are null; an empty setting is an empty string.
CREATE OR REPLACE FUNCTION audit.note_read(rel oid, row_key text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER COST 1000 SET search_path = pg_catalog AS $fn$
BEGIN
  PERFORM pg_logical_emit_message(false, 'pg-audit-shipper/read', json_build_array(1,
    rel::regclass, row_key, session_user, current_setting('role'),
    current_setting('app.user_id', true), current_setting('app.customer_id', true),
    statement_timestamp(), pg_backend_pid(), current_setting('application_name'))::text);
  RETURN true;
END
$fn$;

ALTER TABLE audit.protected_tables ADD COLUMN IF NOT EXISTS statement_reads boolean NOT NULL DEFAULT true; -- false: reads recorded by row only (no pgaudit grant)

-- The policy's expression with row reads, as the DDL guard compares it: the parse tree without its
-- source positions. Columns are held there by number, so renaming the table or its key column
-- leaves it as it was (version 8 compared pg_get_expr's text, which names them: a key column could
-- not be renamed while row reads were on).
CREATE OR REPLACE FUNCTION audit.policy_tree(rel oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT regexp_replace(polqual::text, ' :location -?[0-9]+', '', 'g') FROM pg_policy WHERE polrelid = rel AND polname = 'audit_read_context'
$fn$;
REVOKE ALL ON FUNCTION audit.policy_tree(oid) FROM PUBLIC;

-- Tables with row reads from version 8, still intact: their policy is held by its tree from now on
-- (before read_context_intact compares trees: the DDL guard runs it after every statement here).
UPDATE audit.protected_tables pt SET row_reads = audit.policy_tree(pt.relid)
 WHERE pt.row_reads IS NOT NULL AND pt.row_reads = (SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = pt.relid AND polname = 'audit_read_context');

CREATE OR REPLACE FUNCTION audit.read_context_intact(rel oid, mode text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT EXISTS (
    SELECT FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
      LEFT JOIN audit.protected_tables pt ON pt.relid = p.polrelid AND pt.part_of IS NULL
     WHERE p.polrelid = rel AND p.polname = 'audit_read_context' AND p.polcmd = '*' AND p.polroles = '{0}'
       AND p.polpermissive = (mode = 'permissive')
       AND CASE WHEN pt.row_reads IS NULL THEN pg_get_expr(p.polqual, p.polrelid) = '( SELECT audit.read_context() AS read_context)'
                ELSE audit.policy_tree(rel) = pt.row_reads END
       AND pg_get_expr(p.polwithcheck, p.polrelid) = '( SELECT audit.read_context() AS read_context)'
       AND c.relrowsecurity AND (mode = 'restrictive' OR c.relforcerowsecurity))
$fn$;
REVOKE ALL ON FUNCTION audit.read_context_intact(oid, text) FROM PUBLIC;

-- The DDL guard: as version 7's, except that a table whose reads are recorded by row only does not
-- need audit_auditor's SELECT.
CREATE OR REPLACE FUNCTION audit.guard_protected_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  p record;
  c record;
  problem text;
  names text[];
  part oid;
BEGIN
  -- New partitions of protected partitioned tables (CREATE TABLE ... PARTITION OF, ATTACH).
  FOR p IN SELECT pt.relid, pt.schema_name, pt.table_name FROM audit.protected_tables pt JOIN pg_class cl ON cl.oid = pt.relid
            WHERE cl.relkind = 'p' LOOP
    FOR part IN SELECT audit.cover_partitions(p.relid) LOOP
      PERFORM audit.record_protection_event('PARTITION', p.schema_name, p.table_name,
        format('%s is a partition of it, now protected with it: %s', part::regclass, current_query()), part::regclass::text);
    END LOOP;
  END LOOP;
  -- Detached partitions stay protected, under their own name, with triggers of their own.
  FOR p IN SELECT pt.relid, pt.schema_name, pt.table_name, pt.key_columns, pt.part_of FROM audit.protected_tables pt
            WHERE pt.part_of IS NOT NULL
              AND NOT EXISTS (SELECT FROM pg_partition_tree(pt.part_of) t WHERE t.relid = pt.relid)
              AND EXISTS (SELECT FROM pg_class WHERE oid = pt.relid) LOOP
    UPDATE audit.protected_tables SET part_of = NULL,
           key_attnums = (SELECT array_agg(a.attnum ORDER BY k.ord) FROM unnest(p.key_columns) WITH ORDINALITY AS k(name, ord)
                            JOIN pg_attribute a ON a.attrelid = p.relid AND a.attname = k.name)
     WHERE relid = p.relid;
    PERFORM audit.install_row_trigger(p.relid, p.key_columns);
    PERFORM audit.record_protection_event('DETACH', p.schema_name, p.table_name,
      format('no longer a partition of %s; still protected: %s', p.part_of::regclass, current_query()));
  END LOOP;

  FOR p IN SELECT pt.schema_name, pt.table_name, pt.relid, pt.part_of, pt.key_columns, pt.key_attnums, pt.read_context, pt.statement_reads,
                  cl.relname::text AS relname, ns.nspname::text AS nspname, cl.relkind, cl.relispartition
             FROM audit.protected_tables pt
             LEFT JOIN pg_class cl ON cl.oid = pt.relid
             LEFT JOIN pg_namespace ns ON ns.oid = cl.relnamespace
  LOOP
    CONTINUE WHEN p.relname IS NULL; -- dropped in this command: recorded by audit.follow_protected_drop()
    problem := NULL;
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p.relid AND tgname = 'audit_row_change' AND tgenabled IN ('O', 'A'))
       OR NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = p.relid AND tgname = 'audit_truncate' AND tgenabled IN ('O', 'A')) THEN
      problem := 'its audit triggers (audit_row_change, audit_truncate) must stay present and enabled';
    ELSIF p.statement_reads AND NOT has_table_privilege('audit_auditor', p.relid, 'SELECT') THEN
      problem := 'audit_auditor must keep SELECT on it: pgaudit logs its reads through that grant';
    ELSIF p.part_of IS NULL AND p.relispartition AND EXISTS (
            SELECT FROM pg_partition_ancestors(p.relid) a WHERE a.relid <> p.relid AND NOT has_table_privilege('audit_auditor', a.relid, 'SELECT')) THEN
      problem := 'audit_auditor must keep SELECT on the tables it is a partition of: pgaudit logs reads through them only by that grant';
    ELSIF p.relkind <> 'p' AND EXISTS (SELECT FROM pg_inherits WHERE inhparent = p.relid) THEN
      problem := 'a table inheriting from it would hold rows read and changed through it that its triggers never see';
    ELSIF EXISTS (SELECT FROM pg_rewrite WHERE ev_class = p.relid AND rulename <> '_RETURN') THEN
      problem := 'a rule on it could turn its writes into other statements that its triggers never see';
    ELSIF p.part_of IS NULL AND EXISTS (SELECT FROM unnest(p.key_attnums) k(n) LEFT JOIN pg_attribute a ON a.attrelid = p.relid AND a.attnum = k.n
                                         WHERE a.attname IS NULL OR a.attisdropped) THEN
      problem := format('its key column(s) %s are the row identifier of every event; protect it again with another --key first', array_to_string(p.key_columns, ', '));
    ELSIF p.read_context IS NOT NULL AND NOT audit.read_context_intact(p.relid, p.read_context) THEN
      problem := 'its row-level security policy audit_read_context (and row-level security itself' ||
                 CASE WHEN p.read_context = 'permissive' THEN ', enabled and forced' ELSE ', enabled' END ||
                 ') must stay as protect made them: the server records who read it through that policy';
    ELSIF p.read_context = 'permissive' AND EXISTS (SELECT FROM pg_policy WHERE polrelid = p.relid AND polname <> 'audit_read_context') THEN
      problem := 'audit_read_context lets every row through (it had no row-level security when protected), so a policy of its own would not restrict anything; ' ||
                 'to add row-level security, in one transaction: unprotect it, enable row-level security, create the policies, protect it again';
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
    -- A renamed key column: the row trigger names key columns, so it is installed again with the new names.
    IF p.part_of IS NULL AND p.key_attnums IS NOT NULL THEN
      SELECT array_agg(a.attname::text ORDER BY k.ord) INTO names
        FROM unnest(p.key_attnums) WITH ORDINALITY AS k(n, ord) JOIN pg_attribute a ON a.attrelid = p.relid AND a.attnum = k.n;
      IF names IS DISTINCT FROM p.key_columns THEN
        UPDATE audit.protected_tables SET key_columns = names WHERE relid = p.relid OR part_of = p.relid;
        PERFORM audit.install_row_trigger(p.relid, names);
        PERFORM audit.record_protection_event('KEY RENAMED', p.nspname, p.relname,
          format('key %s is now %s (still the row identifier): %s', array_to_string(p.key_columns, ', '), array_to_string(names, ', '), current_query()));
      END IF;
    END IF;
  END LOOP;
  FOR c IN SELECT DISTINCT d.command_tag, coalesce(top.schema_name, pt.schema_name) AS schema_name,
                  coalesce(top.table_name, pt.table_name) AS table_name,
                  CASE WHEN top.relid IS NOT NULL THEN format('%I.%I', pt.schema_name, pt.table_name) END AS rel
             FROM pg_event_trigger_ddl_commands() d
             JOIN audit.protected_tables pt ON d.classid = 'pg_class'::regclass AND d.objid = pt.relid
             LEFT JOIN audit.protected_tables top ON top.relid = pt.part_of
            WHERE d.command_tag NOT IN ('CREATE TRIGGER', 'GRANT') -- protect()'s own steps
  LOOP
    PERFORM audit.record_protection_event(c.command_tag, c.schema_name, c.table_name, current_query(), c.rel);
  END LOOP;
END
$fn$;

-- How a protected table's reads are recorded (idempotent): statements (pgaudit, through
-- audit_auditor's SELECT), rows (the policy audit_read_context calls audit.note_read() on every row
-- returned), or both. Replaces version 8's set_row_reads(). An event is recorded for each change.
CREATE OR REPLACE FUNCTION audit.set_reads(target regclass, statements boolean, row_reads boolean)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  pt audit.protected_tables;
  kind "char";
  is_part boolean;
  key_expr text;
  context constant text := '(SELECT audit.read_context())';
  qual text;
  was_text text;
  now_text text;
BEGIN
  SELECT * INTO pt FROM audit.protected_tables p WHERE p.relid = target AND p.part_of IS NULL;
  IF pt.relid IS NULL THEN
    RAISE EXCEPTION '% is not protected: protect it first', target;
  END IF;
  IF NOT statements AND NOT row_reads THEN
    RAISE EXCEPTION 'reads of % would not be recorded at all: record statements, rows or both', target;
  END IF;
  SELECT c.relkind, c.relispartition INTO kind, is_part FROM pg_class c WHERE c.oid = target;
  IF NOT statements AND (kind = 'p' OR is_part) THEN
    RAISE EXCEPTION 'reads of % must keep their statements (pgaudit): a read of a partition by its own name checks only that partition''s policies, which record no rows', target;
  END IF;
  IF row_reads AND pt.read_context IS NULL THEN
    RAISE EXCEPTION 'row reads of % are recorded through its policy audit_read_context: protect it with --read-context on', target;
  END IF;
  IF row_reads THEN
    SELECT CASE WHEN count(*) = 1 THEN format('(%I)::text', min(k))
                ELSE 'concat_ws('','', ' || string_agg(format('(%I)::text', k), ', ' ORDER BY o) || ')' END
      INTO key_expr FROM unnest(pt.key_columns) WITH ORDINALITY AS u(k, o);
  END IF;
  SELECT pg_get_expr(polqual, polrelid) INTO was_text FROM pg_policy WHERE polrelid = target AND polname = 'audit_read_context' AND pt.row_reads IS NOT NULL;
  -- Off the DDL guard's checks while the policy and the grant change (it checks the policy of tables
  -- listed with read_context, and the grant of tables listed with statement_reads).
  UPDATE audit.protected_tables SET read_context = NULL, row_reads = NULL, statement_reads = false WHERE relid = target AND part_of IS NULL;
  IF statements THEN
    EXECUTE format('GRANT SELECT ON %s TO audit_auditor', target);
  ELSE
    EXECUTE format('REVOKE SELECT ON %s FROM audit_auditor', target);
  END IF;
  IF pt.read_context IS NOT NULL THEN
    EXECUTE format('ALTER POLICY audit_read_context ON %s USING (%s)', target,
      CASE WHEN NOT row_reads THEN context
           WHEN statements THEN format('%s AND audit.note_read(%L::oid, %s)', context, target::oid, key_expr)
           ELSE format('audit.note_read(%L::oid, %s)', target::oid, key_expr) END);
  END IF;
  IF row_reads THEN
    qual := audit.policy_tree(target);
    SELECT pg_get_expr(polqual, polrelid) INTO now_text FROM pg_policy WHERE polrelid = target AND polname = 'audit_read_context';
  END IF;
  UPDATE audit.protected_tables SET read_context = pt.read_context, row_reads = qual, statement_reads = statements
   WHERE relid = target AND part_of IS NULL;
  -- Protecting again as it was changes nothing: no event for it. (The call to note_read, compared
  -- without the read-context part before it and the parentheses after it, changes with the key.)
  IF rtrim(substr(now_text, strpos(now_text, 'audit.note_read(')), ')') IS DISTINCT FROM rtrim(substr(was_text, strpos(was_text, 'audit.note_read(')), ')') THEN
    PERFORM audit.record_protection_event('ROW READS', pt.schema_name, pt.table_name,
      CASE WHEN row_reads THEN format('every row read is recorded with its key (%s), through the replication slot', array_to_string(pt.key_columns, ', '))
           ELSE 'rows read are no longer recorded one by one (statements still are)' END);
  END IF;
  IF statements IS DISTINCT FROM pt.statement_reads THEN
    PERFORM audit.record_protection_event('STATEMENT READS', pt.schema_name, pt.table_name,
      CASE WHEN statements THEN 'statements that read it are logged by pgaudit again'
           ELSE 'statements that read it are no longer logged by pgaudit: its reads are recorded row by row only, and reads that skip row-level security (superusers, BYPASSRLS roles) not at all' END);
  END IF;
END
$fn$;
REVOKE ALL ON FUNCTION audit.set_reads(regclass, boolean, boolean) FROM PUBLIC;
DROP FUNCTION IF EXISTS audit.set_row_reads(regclass, boolean);
