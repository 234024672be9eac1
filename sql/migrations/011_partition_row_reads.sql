-- Version 11: row reads of partitioned tables (`protect --reads rows|both` on a partitioned table).
--
-- A read through a partitioned table checks that table's policies only; a read of a partition by its
-- own name checks that partition's policies only (PostgreSQL applies no parent's policy to it). So
-- with row reads on, every partition (present, and created or attached later) gets a policy
-- audit_read_context of its own, built as the partitioned table's, and both call
--   audit.note_read('<partitioned table>'::oid, <key>, tableoid)
-- tableoid is the partition the row is stored in, whichever name the read used: the message names
-- the protected table and that partition, and the row-read record holds the partition in
-- relation_name, as the write triggers do. Version 9 refused --reads rows on partitioned tables for
-- want of exactly this.
--
-- The DDL guard installs the policy on a new partition while the owner's command is being completed.
-- Those steps (ALTER TABLE ... ENABLE ROW LEVEL SECURITY) fire the guard again; a partition is listed
-- with setting_up while protect's own steps run, and the guard neither checks it then nor records
-- those steps as the owner's. Only these functions write audit.protected_tables, so an owner cannot
-- mark a table that way.
--
-- A partition protected on its own (its partitioned table is not protected) keeps pgaudit's
-- statements: reads through its parent check only the parent's policies, which record no rows.

ALTER TABLE audit.protected_tables ADD COLUMN IF NOT EXISTS setting_up boolean NOT NULL DEFAULT false;

-- Message layout 2: layout 1 (version 9) and the partition the row is stored in, or null when the
-- read was of a table that is not partitioned. Partitioned tables' policies call this one; others
-- keep the two-argument function (one argument fewer per row read).
CREATE OR REPLACE FUNCTION audit.note_read(rel oid, row_key text, part oid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER COST 1000 SET search_path = pg_catalog AS $fn$
BEGIN
  PERFORM pg_logical_emit_message(false, 'pg-audit-shipper/read', json_build_array(2,
    rel::regclass, row_key, session_user, current_setting('role'),
    current_setting('app.user_id', true), current_setting('app.customer_id', true),
    statement_timestamp(), pg_backend_pid(), current_setting('application_name'),
    CASE WHEN part <> rel THEN part::regclass END)::text);
  RETURN true;
END
$fn$;
ALTER FUNCTION audit.note_read(oid, text, oid) OWNER TO audit_owner;
GRANT EXECUTE ON FUNCTION audit.note_read(oid, text, oid) TO PUBLIC; -- the policy runs as whoever reads

-- Intact: as version 9's, for partitions too (their row holds their own policy's tree), whose
-- row-level security must also stay forced: their owner could otherwise read them by name unrecorded.
CREATE OR REPLACE FUNCTION audit.read_context_intact(rel oid, mode text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT EXISTS (
    SELECT FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
      LEFT JOIN audit.protected_tables pt ON pt.relid = p.polrelid
     WHERE p.polrelid = rel AND p.polname = 'audit_read_context' AND p.polcmd = '*' AND p.polroles = '{0}'
       AND p.polpermissive = (mode = 'permissive')
       AND CASE WHEN pt.row_reads IS NULL THEN pg_get_expr(p.polqual, p.polrelid) = '( SELECT audit.read_context() AS read_context)'
                ELSE audit.policy_tree(rel) = pt.row_reads END
       AND pg_get_expr(p.polwithcheck, p.polrelid) = '( SELECT audit.read_context() AS read_context)'
       AND c.relrowsecurity AND (mode = 'restrictive' AND pt.part_of IS NULL OR c.relforcerowsecurity))
$fn$;
REVOKE ALL ON FUNCTION audit.read_context_intact(oid, text) FROM PUBLIC;

-- The policy's USING for a table whose reads are recorded as given; `top` is the protected table
-- (the partitioned table, for one of its partitions).
CREATE OR REPLACE FUNCTION audit.reads_policy(rel oid, top oid, key_columns text[], statements boolean, row_reads boolean) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $fn$
DECLARE
  context constant text := '(SELECT audit.read_context())';
  key_expr text;
  note text;
BEGIN
  IF NOT row_reads THEN RETURN context; END IF;
  SELECT CASE WHEN count(*) = 1 THEN format('(%I)::text', min(k))
              ELSE 'concat_ws('','', ' || string_agg(format('(%I)::text', k), ', ' ORDER BY o) || ')' END
    INTO key_expr FROM unnest(key_columns) WITH ORDINALITY AS u(k, o);
  note := CASE WHEN rel = top AND (SELECT relkind FROM pg_class WHERE oid = rel) <> 'p'
               THEN format('audit.note_read(%L::oid, %s)', top, key_expr)
               ELSE format('audit.note_read(%L::oid, %s, tableoid)', top, key_expr) END;
  RETURN CASE WHEN statements THEN context || ' AND ' || note ELSE note END;
END
$fn$;
REVOKE ALL ON FUNCTION audit.reads_policy(oid, oid, text[], boolean, boolean) FROM PUBLIC;

-- A partition's reads, as its partitioned table `top` records them: the auditor's SELECT with
-- statements, the policy with rows (none without). Listed with setting_up meanwhile (see the top).
CREATE OR REPLACE FUNCTION audit.partition_reads(part oid, top oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  t audit.protected_tables;
  was text;
  ctx text;
  tree text;
BEGIN
  SELECT * INTO t FROM audit.protected_tables WHERE relid = top AND part_of IS NULL;
  IF t.relid IS NULL THEN
    RAISE EXCEPTION '% is not a protected table: its partition % takes its reads from it', top::regclass, part::regclass;
  END IF;
  SELECT read_context INTO was FROM audit.protected_tables WHERE relid = part AND part_of = top;
  UPDATE audit.protected_tables SET setting_up = true, read_context = NULL, row_reads = NULL WHERE relid = part;
  IF t.statement_reads THEN
    EXECUTE format('GRANT SELECT ON %s TO audit_auditor', part::regclass);
  ELSE
    EXECUTE format('REVOKE SELECT ON %s FROM audit_auditor', part::regclass);
  END IF;
  IF t.row_reads IS NOT NULL THEN
    -- A table with row-level security of its own gets the policy as a restrictive one and keeps its
    -- FORCE as it is; unforced, its owner's reads of it by name would skip every policy, unrecorded.
    -- An owner could attach such a table on purpose: refused, with what to do instead.
    IF EXISTS (SELECT FROM pg_class WHERE oid = part AND relrowsecurity AND NOT relforcerowsecurity) THEN
      RAISE EXCEPTION 'refused: % records its rows read, and its partition % has row-level security that is not forced, so its owner''s reads of it would go unrecorded', top::regclass, part::regclass
        USING ERRCODE = 'insufficient_privilege', HINT = format('ALTER TABLE %s FORCE ROW LEVEL SECURITY first', part::regclass);
    END IF;
    ctx := audit.install_read_context(part);
    EXECUTE format('ALTER POLICY audit_read_context ON %s USING (%s)', part::regclass,
      audit.reads_policy(part, top, t.key_columns, t.statement_reads, true));
    tree := audit.policy_tree(part);
  ELSE
    PERFORM audit.remove_read_context(part, was);
  END IF;
  UPDATE audit.protected_tables SET setting_up = false, read_context = ctx, row_reads = tree, statement_reads = t.statement_reads
   WHERE relid = part;
END
$fn$;
REVOKE ALL ON FUNCTION audit.partition_reads(oid, oid) FROM PUBLIC;

-- Partitions of a protected partitioned table not yet covered: listed, given the TRUNCATE trigger
-- (the row trigger is cloned by the server) and their reads as the table records them. Returns
-- those it covered.
CREATE OR REPLACE FUNCTION audit.cover_partitions(parent oid)
RETURNS SETOF oid LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE q record; keys text[]; added oid;
BEGIN
  SELECT key_columns INTO keys FROM audit.protected_tables WHERE relid = parent;
  FOR q IN SELECT t.relid, n.nspname::text AS nspname, c.relname::text AS relname
             FROM pg_partition_tree(parent) t JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE t.relid <> parent AND c.relkind IN ('r', 'p')
              AND NOT EXISTS (SELECT FROM audit.protected_tables pt WHERE pt.relid = t.relid)
  LOOP
    added := NULL;
    INSERT INTO audit.protected_tables (schema_name, table_name, key_columns, relid, part_of, setting_up)
    VALUES (q.nspname, q.relname, keys, q.relid, parent, true)
    ON CONFLICT DO NOTHING RETURNING relid INTO added;
    CONTINUE WHEN added IS NULL;
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = q.relid AND tgname = 'audit_truncate') THEN
      EXECUTE format('CREATE TRIGGER audit_truncate AFTER TRUNCATE ON %I.%I '
                     'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()', q.nspname, q.relname);
    END IF;
    PERFORM audit.partition_reads(q.relid, parent);
    RETURN NEXT added;
  END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION audit.cover_partitions(oid) FROM PUBLIC;

-- How a protected table's reads are recorded: as version 9's, and a partitioned table's partitions
-- record theirs alike. Refused only for a partition protected on its own.
CREATE OR REPLACE FUNCTION audit.set_reads(target regclass, statements boolean, row_reads boolean)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  pt audit.protected_tables;
  is_part boolean;
  qual text;
  was_text text;
  now_text text;
  part oid;
BEGIN
  SELECT * INTO pt FROM audit.protected_tables p WHERE p.relid = target AND p.part_of IS NULL;
  IF pt.relid IS NULL THEN
    RAISE EXCEPTION '% is not protected: protect it first', target;
  END IF;
  IF NOT statements AND NOT row_reads THEN
    RAISE EXCEPTION 'reads of % would not be recorded at all: record statements, rows or both', target;
  END IF;
  SELECT c.relispartition INTO is_part FROM pg_class c WHERE c.oid = target;
  IF NOT statements AND is_part THEN
    RAISE EXCEPTION 'reads of % must keep their statements (pgaudit): it is protected on its own, and a read through the table it is a partition of checks only that table''s policies, which record no rows; protect that table instead', target;
  END IF;
  IF row_reads AND pt.read_context IS NULL THEN
    RAISE EXCEPTION 'row reads of % are recorded through its policy audit_read_context: protect it with --read-context on', target;
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
      audit.reads_policy(target, target, pt.key_columns, statements, row_reads));
  END IF;
  IF row_reads THEN
    qual := audit.policy_tree(target);
    SELECT pg_get_expr(polqual, polrelid) INTO now_text FROM pg_policy WHERE polrelid = target AND polname = 'audit_read_context';
  END IF;
  UPDATE audit.protected_tables SET read_context = pt.read_context, row_reads = qual, statement_reads = statements
   WHERE relid = target AND part_of IS NULL;
  FOR part IN SELECT p.relid FROM audit.protected_tables p WHERE p.part_of = target AND EXISTS (SELECT FROM pg_class WHERE oid = p.relid) LOOP
    PERFORM audit.partition_reads(part, target);
  END LOOP;
  -- Protecting again as it was changes nothing: no event for it. (The call to note_read, compared
  -- without the read-context part before it and the parentheses after it, changes with the key.)
  IF rtrim(substr(now_text, strpos(now_text, 'audit.note_read(')), ')') IS DISTINCT FROM rtrim(substr(was_text, strpos(was_text, 'audit.note_read(')), ')') THEN
    PERFORM audit.record_protection_event('ROW READS', pt.schema_name, pt.table_name,
      CASE WHEN NOT row_reads THEN 'rows read are no longer recorded one by one (statements still are)'
           WHEN (SELECT relkind FROM pg_class WHERE oid = target) = 'p'
             THEN format('every row read is recorded with its key (%s) and its partition, through the replication slot; its partitions, present and future, record theirs alike', array_to_string(pt.key_columns, ', '))
           ELSE format('every row read is recorded with its key (%s), through the replication slot', array_to_string(pt.key_columns, ', ')) END);
  END IF;
  IF statements IS DISTINCT FROM pt.statement_reads THEN
    PERFORM audit.record_protection_event('STATEMENT READS', pt.schema_name, pt.table_name,
      CASE WHEN statements THEN 'statements that read it are logged by pgaudit again'
           ELSE 'statements that read it are no longer logged by pgaudit: its reads are recorded row by row only, and reads that skip row-level security (superusers, BYPASSRLS roles) not at all' END);
  END IF;
END
$fn$;
REVOKE ALL ON FUNCTION audit.set_reads(regclass, boolean, boolean) FROM PUBLIC;

-- unprotect(): as version 7's, and the partitions' policies go too.
CREATE OR REPLACE FUNCTION audit.unprotect(target regclass)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE sch text; tbl text; parts oid[]; modes text[]; i int; ctx text;
BEGIN
  SELECT n.nspname, c.relname INTO sch, tbl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  IF EXISTS (SELECT FROM audit.protected_tables WHERE relid = target AND part_of IS NOT NULL) THEN
    RAISE EXCEPTION '%.% is protected as a partition of %: unprotect that table, or detach this one first', sch, tbl,
      (SELECT part_of::regclass FROM audit.protected_tables WHERE relid = target);
  END IF;
  -- Off the list first, the table and its partitions, so the DDL guard neither refuses the steps
  -- below nor covers the partitions again.
  WITH gone AS (DELETE FROM audit.protected_tables WHERE part_of = target RETURNING relid, read_context)
  SELECT array_agg(relid), array_agg(read_context) INTO parts, modes FROM gone;
  SELECT pt.read_context INTO ctx FROM audit.protected_tables pt WHERE pt.relid = target;
  DELETE FROM audit.protected_tables WHERE relid = target OR (schema_name = sch AND table_name = tbl);
  FOR i IN 1 .. coalesce(cardinality(parts), 0) LOOP
    CONTINUE WHEN NOT EXISTS (SELECT FROM pg_class WHERE oid = parts[i]);
    EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %s', parts[i]::regclass);
    EXECUTE format('REVOKE SELECT ON %s FROM audit_auditor', parts[i]::regclass);
    PERFORM audit.remove_read_context(parts[i], modes[i]);
  END LOOP;
  EXECUTE format('DROP TRIGGER IF EXISTS audit_row_change ON %I.%I', sch, tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %I.%I', sch, tbl);
  EXECUTE format('REVOKE SELECT ON %I.%I FROM audit_auditor', sch, tbl);
  PERFORM audit.remove_read_context(target, ctx);
  PERFORM audit.record_protection_event('UNPROTECT', sch, tbl, 'auditing stopped');
END
$fn$;
REVOKE ALL ON FUNCTION audit.unprotect(regclass) FROM PUBLIC;

-- The DDL guard: as version 9's, and
-- * partitions listed with setting_up are neither checked nor have commands recorded (protect's own steps);
-- * a partition's own policy is checked like a table's (read_context_intact: its row holds the tree);
-- * a detached partition with row reads gets the policy of a table of its own (it no longer names
--   the partitioned table).
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
            WHERE cl.relkind = 'p' AND pt.part_of IS NULL AND NOT pt.setting_up LOOP
    FOR part IN SELECT audit.cover_partitions(p.relid) LOOP
      PERFORM audit.record_protection_event('PARTITION', p.schema_name, p.table_name,
        format('%s is a partition of it, now protected with it: %s', part::regclass, current_query()), part::regclass::text);
    END LOOP;
  END LOOP;
  -- Detached partitions stay protected, under their own name, with triggers of their own.
  FOR p IN SELECT pt.relid, pt.schema_name, pt.table_name, pt.key_columns, pt.part_of, pt.row_reads, pt.statement_reads FROM audit.protected_tables pt
            WHERE pt.part_of IS NOT NULL AND NOT pt.setting_up
              AND NOT EXISTS (SELECT FROM pg_partition_tree(pt.part_of) t WHERE t.relid = pt.relid)
              AND EXISTS (SELECT FROM pg_class WHERE oid = pt.relid) LOOP
    UPDATE audit.protected_tables SET part_of = NULL,
           key_attnums = (SELECT array_agg(a.attnum ORDER BY k.ord) FROM unnest(p.key_columns) WITH ORDINALITY AS k(name, ord)
                            JOIN pg_attribute a ON a.attrelid = p.relid AND a.attname = k.name)
     WHERE relid = p.relid;
    PERFORM audit.install_row_trigger(p.relid, p.key_columns);
    PERFORM audit.record_protection_event('DETACH', p.schema_name, p.table_name,
      format('no longer a partition of %s; still protected: %s', p.part_of::regclass, current_query()));
    IF p.row_reads IS NOT NULL THEN
      PERFORM audit.set_reads(p.relid, p.statement_reads, true);
    END IF;
  END LOOP;

  FOR p IN SELECT pt.schema_name, pt.table_name, pt.relid, pt.part_of, pt.key_columns, pt.key_attnums, pt.read_context, pt.statement_reads,
                  cl.relname::text AS relname, ns.nspname::text AS nspname, cl.relkind, cl.relispartition
             FROM audit.protected_tables pt
             LEFT JOIN pg_class cl ON cl.oid = pt.relid
             LEFT JOIN pg_namespace ns ON ns.oid = cl.relnamespace
            WHERE NOT pt.setting_up
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
              AND NOT pt.setting_up
  LOOP
    PERFORM audit.record_protection_event(c.command_tag, c.schema_name, c.table_name, current_query(), c.rel);
  END LOOP;
END
$fn$;

-- Partitioned tables whose reads version 9 recorded by row (--reads both): their partitions record
-- theirs from now on, and the partitioned table's own policy names the partition.
DO $upgrade$
DECLARE p record;
BEGIN
  FOR p IN SELECT pt.relid, pt.statement_reads FROM audit.protected_tables pt JOIN pg_class c ON c.oid = pt.relid
            WHERE pt.part_of IS NULL AND pt.row_reads IS NOT NULL AND c.relkind = 'p' LOOP
    PERFORM audit.set_reads(p.relid, p.statement_reads, true);
  END LOOP;
END
$upgrade$;
