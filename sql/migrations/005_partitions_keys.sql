-- pg-audit-shipper, version 5: protection that covers partitions, follows key columns, records the
-- old key of an UPDATE that changes it, and captures reads of the trail and of planner statistics.
--
-- Partitions. PostgreSQL clones a partitioned table's row trigger onto every partition, present and
-- future, but not its TRUNCATE trigger, not the auditor's SELECT (pgaudit logs a read of a partition
-- only when audit_auditor may SELECT that partition), and DETACH drops the clone: a detached partition
-- silently stops being captured. So every partition of a protected partitioned table is listed in
-- protected_tables with part_of = the protected table, gets its own audit_truncate and the grant, and
-- stays protected (under its own name, with triggers of its own) when detached. Events of a partition
-- are recorded under the protected table, with the partition in relation_name.
-- A protected partition (not its parent) gets the auditor's SELECT on its ancestors too: a read through
-- the parent is logged only under the parent's name (measured on 15.18 + pgaudit 1.7.0).
--
-- The event trigger that follows all this creates triggers and grants on tables its owner does not
-- own, so from this version it runs as the superuser that ran `init` (SECURITY DEFINER with a fixed
-- search_path; a function returning event_trigger cannot be called from SQL, only fired by DDL).

ALTER TABLE audit.audit_log ADD COLUMN IF NOT EXISTS relation_name text;  -- the partition or parent addressed, when not the protected table itself
ALTER TABLE audit.audit_log ADD COLUMN IF NOT EXISTS old_row_id text;     -- UPDATE that changed the key: the key before

ALTER TABLE audit.protected_tables ADD COLUMN IF NOT EXISTS part_of oid;          -- a partition covered by this protected table
ALTER TABLE audit.protected_tables ADD COLUMN IF NOT EXISTS key_attnums int2[];   -- key columns by number: renames are followed
UPDATE audit.protected_tables pt
   SET key_attnums = (SELECT array_agg(a.attnum ORDER BY k.ord) FROM unnest(pt.key_columns) WITH ORDINALITY AS k(name, ord)
                        JOIN pg_attribute a ON a.attrelid = pt.relid AND a.attname = k.name)
 WHERE key_attnums IS NULL AND relid IS NOT NULL;

-- The protected table a partition's row belongs to: its nearest protected partitioned ancestor.
CREATE OR REPLACE FUNCTION audit.protected_ancestor(rel oid, OUT schema_name text, OUT table_name text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $fn$
  SELECT pt.schema_name, pt.table_name
    FROM pg_partition_ancestors(rel) WITH ORDINALITY AS a(relid, lvl)
    JOIN audit.protected_tables pt ON pt.relid = a.relid
   WHERE a.relid <> rel AND pt.part_of IS NULL
   ORDER BY a.lvl LIMIT 1
$fn$;
ALTER FUNCTION audit.protected_ancestor(oid) OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.protected_ancestor(oid) FROM PUBLIC;

-- Row-level capture. Arguments: the key columns; on a partitioned table a leading '' (not a valid
-- column name) marks that rows land in partitions and are recorded under the protected table.
-- An UPDATE that changes the key records the old key too.
CREATE OR REPLACE FUNCTION audit.capture_row_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $fn$
DECLARE
  new_row jsonb;
  old_row jsonb;
  changed text[];
  sch text := TG_TABLE_SCHEMA;
  tbl text := TG_TABLE_NAME;
  rel text;
  keys text[] := TG_ARGV[0:TG_NARGS - 1];  -- TG_ARGV counts from 0; a slice counts from 1
  new_key text;
  old_key text;
BEGIN
  IF TG_ARGV[0] = '' THEN
    keys := TG_ARGV[1:TG_NARGS - 1];
    SELECT a.schema_name, a.table_name INTO sch, tbl FROM audit.protected_ancestor(TG_RELID) a;
    IF sch IS NULL THEN sch := TG_TABLE_SCHEMA; tbl := TG_TABLE_NAME; END IF;
    rel := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
  END IF;
  IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
  IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
  IF cardinality(keys) = 1 THEN   -- the common single-column key, without a subquery
    new_key := new_row ->> keys[1];
    old_key := old_row ->> keys[1];
  ELSE
    SELECT string_agg(new_row ->> k, ',' ORDER BY ord), string_agg(old_row ->> k, ',' ORDER BY ord)
      INTO new_key, old_key FROM unnest(keys) WITH ORDINALITY AS t(k, ord);
  END IF;
  IF TG_OP = 'UPDATE' THEN
    SELECT array_agg(n.key ORDER BY n.key) INTO changed
      FROM jsonb_each(new_row) n JOIN jsonb_each(old_row) o USING (key)
     WHERE n.value IS DISTINCT FROM o.value;
  END IF;
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, schema_name,
    table_name, row_id, changed_columns, session_user_name, current_role_name, app_user_id,
    app_customer_id, application_name, client_addr, client_port, backend_pid, txid, relation_name, old_row_id)
  VALUES (statement_timestamp(), transaction_timestamp(), 'trigger', TG_OP, 'success', sch, tbl,
    coalesce(new_key, old_key), changed, session_user,
    CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END,
    nullif(current_setting('app.user_id', true), ''), nullif(current_setting('app.customer_id', true), ''),
    nullif(current_setting('application_name'), ''), inet_client_addr(), inet_client_port(),
    pg_backend_pid(), pg_current_xact_id()::text::bigint, rel,
    CASE WHEN TG_OP = 'UPDATE' AND old_key IS DISTINCT FROM new_key THEN old_key END);
  RETURN NULL;
END
$fn$;
ALTER FUNCTION audit.capture_row_change() OWNER TO audit_owner;

CREATE OR REPLACE FUNCTION audit.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $fn$
DECLARE
  sch text := TG_TABLE_SCHEMA;
  tbl text := TG_TABLE_NAME;
  rel text;
BEGIN
  SELECT a.schema_name, a.table_name INTO sch, tbl FROM audit.protected_ancestor(TG_RELID) a;
  IF sch IS NULL THEN
    sch := TG_TABLE_SCHEMA; tbl := TG_TABLE_NAME;
  ELSE
    rel := format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME);
  END IF;
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, schema_name,
    table_name, session_user_name, current_role_name, app_user_id, app_customer_id,
    application_name, client_addr, client_port, backend_pid, txid, relation_name)
  VALUES (statement_timestamp(), transaction_timestamp(), 'trigger', 'TRUNCATE', 'success',
    sch, tbl, session_user, audit.acting_role(),
    nullif(current_setting('app.user_id', true), ''), nullif(current_setting('app.customer_id', true), ''),
    nullif(current_setting('application_name'), ''), inet_client_addr(), inet_client_port(),
    pg_backend_pid(), pg_current_xact_id()::text::bigint, rel);
  RETURN NULL;
END
$fn$;
ALTER FUNCTION audit.capture_truncate() OWNER TO audit_owner;

CREATE OR REPLACE FUNCTION audit.record_protection_event(act text, sch text, tbl text, what text, rel text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
BEGIN
  INSERT INTO audit.audit_log (occurred_at, tx_started_at, source, action, outcome, schema_name, table_name,
    session_user_name, current_role_name, app_user_id, application_name, client_addr, client_port, backend_pid, txid, statement, relation_name)
  VALUES (statement_timestamp(), transaction_timestamp(), 'trigger', act, 'success', sch, tbl, session_user,
    audit.acting_role(), nullif(current_setting('app.user_id', true), ''), nullif(current_setting('application_name'), ''),
    inet_client_addr(), inet_client_port(), pg_backend_pid(), pg_current_xact_id()::text::bigint, left(what, 2000), rel);
END
$fn$;
DROP FUNCTION IF EXISTS audit.record_protection_event(text, text, text, text);
ALTER FUNCTION audit.record_protection_event(text, text, text, text, text) OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.record_protection_event(text, text, text, text, text) FROM PUBLIC;

-- The row trigger of a protected table, with its key columns as arguments.
CREATE OR REPLACE FUNCTION audit.install_row_trigger(target oid, keys text[])
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE partitioned boolean := (SELECT relkind = 'p' FROM pg_class WHERE oid = target);
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON %s '
                 'FOR EACH ROW EXECUTE FUNCTION audit.capture_row_change(%s)', target::regclass,
                 (SELECT string_agg(quote_literal(k), ', ') FROM unnest(CASE WHEN partitioned THEN ARRAY['']::text[] || keys ELSE keys END) AS k));
END
$fn$;
REVOKE ALL ON FUNCTION audit.install_row_trigger(oid, text[]) FROM PUBLIC;

-- Every partition of a protected partitioned table: listed, its TRUNCATE captured, its reads logged.
-- Returns the partitions newly covered. Each step runs only when still needed and the row goes in
-- last: the GRANT and CREATE TRIGGER here fire the DDL guard again (event triggers fire for DDL that
-- event triggers run), and that nested guard must neither see a half-covered partition on the list
-- (it would refuse it) nor start the same steps over without end.
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
    IF NOT has_table_privilege('audit_auditor', q.relid, 'SELECT') THEN
      EXECUTE format('GRANT SELECT ON %I.%I TO audit_auditor', q.nspname, q.relname);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = q.relid AND tgname = 'audit_truncate') THEN
      EXECUTE format('CREATE TRIGGER audit_truncate AFTER TRUNCATE ON %I.%I '
                     'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()', q.nspname, q.relname);
    END IF;
    added := NULL;
    INSERT INTO audit.protected_tables (schema_name, table_name, key_columns, relid, part_of)
    VALUES (q.nspname, q.relname, keys, q.relid, parent)
    ON CONFLICT DO NOTHING RETURNING relid INTO added;
    IF added IS NOT NULL THEN RETURN NEXT added; END IF;
  END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION audit.cover_partitions(oid) FROM PUBLIC;

-- The relations whose pgaudit lines count, and the protected table each belongs to: the protected
-- tables and their partitions, the ancestors of a protected partition, the trail itself, and the
-- views that show column values from planner statistics. The ingester reads this. `relation` is the
-- relation's name as the capture triggers write relation_name (quoted by the server), or null when
-- it is the protected table itself.
CREATE OR REPLACE VIEW audit.watched_relations AS
  SELECT pt.schema_name, pt.table_name,
         coalesce(top.schema_name, pt.schema_name) AS protected_schema,
         coalesce(top.table_name, pt.table_name) AS protected_table,
         CASE WHEN top.relid IS NOT NULL THEN format('%I.%I', pt.schema_name, pt.table_name) END AS relation
    FROM audit.protected_tables pt
    LEFT JOIN audit.protected_tables top ON top.relid = pt.part_of
  UNION ALL
  SELECT n.nspname::text, c.relname::text, pt.schema_name, pt.table_name, format('%I.%I', n.nspname, c.relname)
    FROM audit.protected_tables pt
    JOIN pg_class me ON me.oid = pt.relid AND me.relispartition
    CROSS JOIN LATERAL pg_partition_ancestors(pt.relid) a
    JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE pt.part_of IS NULL AND a.relid <> pt.relid
  UNION ALL
  SELECT v.s, v.t, v.s, v.t, NULL FROM (VALUES ('audit', 'audit_log'), ('pg_catalog', 'pg_stats'),
    ('pg_catalog', 'pg_stats_ext'), ('pg_catalog', 'pg_stats_ext_exprs')) AS v(s, t);
ALTER VIEW audit.watched_relations OWNER TO audit_owner;
REVOKE ALL ON audit.watched_relations FROM PUBLIC;
GRANT SELECT ON audit.watched_relations TO audit_ingester, audit_shipper;

-- Reads of the trail (who read which patient, statements with literal values) and of the planner's
-- statistics (most common values and histogram bounds are column values) are logged like reads of
-- PHI: pgaudit logs what audit_auditor may SELECT, for every role, superusers included.
GRANT SELECT ON audit.audit_log TO audit_auditor;
GRANT SELECT ON pg_catalog.pg_stats, pg_catalog.pg_stats_ext, pg_catalog.pg_stats_ext_exprs TO audit_auditor;

-- After every DDL command: every protected table must still be captured; renames of tables and key
-- columns are followed; new partitions are covered and detached ones keep their protection; DDL on
-- a protected table is recorded.
-- Owned by the superuser running `init` (see the top of this file); owner first, as every DDL
-- statement from here on fires it.
ALTER FUNCTION audit.guard_protected_ddl() OWNER TO CURRENT_USER;
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

  FOR p IN SELECT pt.schema_name, pt.table_name, pt.relid, pt.part_of, pt.key_columns, pt.key_attnums,
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
    ELSIF NOT has_table_privilege('audit_auditor', p.relid, 'SELECT') THEN
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

-- A dropped protected table is recorded and leaves the list, with its partitions.
CREATE OR REPLACE FUNCTION audit.follow_protected_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE o record;
BEGIN
  FOR o IN SELECT pt.schema_name, pt.table_name, pt.relid, top.schema_name AS top_schema, top.table_name AS top_table
             FROM pg_event_trigger_dropped_objects() d
             JOIN audit.protected_tables pt ON d.classid = 'pg_class'::regclass AND d.objid = pt.relid AND d.objsubid = 0
             LEFT JOIN audit.protected_tables top ON top.relid = pt.part_of
  LOOP
    DELETE FROM audit.protected_tables WHERE relid = o.relid;
    PERFORM audit.record_protection_event('DROP TABLE', coalesce(o.top_schema, o.schema_name), coalesce(o.top_table, o.table_name), current_query(),
      CASE WHEN o.top_table IS NOT NULL THEN format('%I.%I', o.schema_name, o.table_name) END);
  END LOOP;
END
$fn$;

-- protect(): a partitioned table covers its partitions; a partition's parents log reads through them.
CREATE OR REPLACE FUNCTION audit.protect(target regclass, key_columns text[] DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  sch text; tbl text; keys text[]; missing text; kind "char"; is_part boolean; part oid;
BEGIN
  SELECT n.nspname, c.relname, c.relkind, c.relispartition INTO sch, tbl, kind, is_part
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  IF sch = 'audit' THEN
    RAISE EXCEPTION 'refusing to protect %.%: the audit schema records itself through the shipper', sch, tbl;
  END IF;
  IF kind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION '%.% is not a table: protect the table that holds the rows', sch, tbl;
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

  PERFORM audit.install_row_trigger(target, keys);
  EXECUTE format('CREATE OR REPLACE TRIGGER audit_truncate AFTER TRUNCATE ON %I.%I '
                 'FOR EACH STATEMENT EXECUTE FUNCTION audit.capture_truncate()', sch, tbl);
  EXECUTE format('GRANT SELECT ON %I.%I TO audit_auditor', sch, tbl);
  IF is_part THEN
    FOR part IN SELECT a.relid FROM pg_partition_ancestors(target) a WHERE a.relid <> target LOOP
      EXECUTE format('GRANT SELECT ON %s TO audit_auditor', part::regclass);
    END LOOP;
  END IF;
  INSERT INTO audit.protected_tables (schema_name, table_name, key_columns, relid, part_of, key_attnums)
  VALUES (sch, tbl, keys, target, NULL,
          (SELECT array_agg(a.attnum ORDER BY k.ord) FROM unnest(keys) WITH ORDINALITY AS k(name, ord)
             JOIN pg_attribute a ON a.attrelid = target AND a.attname = k.name))
  ON CONFLICT (schema_name, table_name) DO UPDATE
    SET key_columns = excluded.key_columns, relid = excluded.relid, part_of = NULL, key_attnums = excluded.key_attnums;
  PERFORM audit.record_protection_event('PROTECT', sch, tbl, format('key %s', array_to_string(keys, ', ')));
  IF kind = 'p' THEN
    FOR part IN SELECT audit.cover_partitions(target) LOOP
      PERFORM audit.record_protection_event('PARTITION', sch, tbl, format('%s is a partition of it, now protected with it', part::regclass), part::regclass::text);
    END LOOP;
  END IF;
END
$fn$;

-- unprotect(): a partitioned table takes its partitions off the list with it.
CREATE OR REPLACE FUNCTION audit.unprotect(target regclass)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE sch text; tbl text; parts oid[]; part oid;
BEGIN
  SELECT n.nspname, c.relname INTO sch, tbl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = target;
  IF EXISTS (SELECT FROM audit.protected_tables WHERE relid = target AND part_of IS NOT NULL) THEN
    RAISE EXCEPTION '%.% is protected as a partition of %: unprotect that table, or detach this one first', sch, tbl,
      (SELECT part_of::regclass FROM audit.protected_tables WHERE relid = target);
  END IF;
  -- Off the list first, the table and its partitions, so the DDL guard neither refuses the steps
  -- below nor covers the partitions again.
  WITH gone AS (DELETE FROM audit.protected_tables WHERE part_of = target RETURNING relid) SELECT array_agg(relid) INTO parts FROM gone;
  DELETE FROM audit.protected_tables WHERE relid = target OR (schema_name = sch AND table_name = tbl);
  FOREACH part IN ARRAY coalesce(parts, '{}') LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %s', part::regclass);
    EXECUTE format('REVOKE SELECT ON %s FROM audit_auditor', part::regclass);
  END LOOP;
  EXECUTE format('DROP TRIGGER IF EXISTS audit_row_change ON %I.%I', sch, tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %I.%I', sch, tbl);
  EXECUTE format('REVOKE SELECT ON %I.%I FROM audit_auditor', sch, tbl);
  PERFORM audit.record_protection_event('UNPROTECT', sch, tbl, 'auditing stopped');
END
$fn$;
REVOKE ALL ON FUNCTION audit.protect(regclass, text[]), audit.unprotect(regclass) FROM PUBLIC;

-- Partitioned tables protected before this version: their row trigger takes the partition marker,
-- and their partitions are covered.
DO $upgrade$
DECLARE p record;
BEGIN
  FOR p IN SELECT pt.relid, pt.key_columns FROM audit.protected_tables pt JOIN pg_class c ON c.oid = pt.relid WHERE c.relkind = 'p' LOOP
    PERFORM audit.protect(p.relid::regclass, p.key_columns);
  END LOOP;
END
$upgrade$;
