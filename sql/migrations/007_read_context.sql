-- pg-audit-shipper, version 7: reads attributed by the server itself.
--
-- Until now the ingester followed `SET app.user_id` / `SET app.customer_id` through the log. That
-- cannot be exact: a SET rolled back with its transaction or savepoint, SET LOCAL, set_config(),
-- startup options, role and database defaults, RESET ALL and DISCARD ALL, and a function's own SET
-- clause all change what current_setting() returns without a line pgaudit writes (or with one that
-- does not say whether it took effect). So the server records the settings itself, in the read:
-- every protected table gets a row-level security policy, audit_read_context, whose expression
-- `(SELECT audit.read_context())` the executor evaluates once per scan (an InitPlan), as soon as the
-- scan's first row is checked. audit.read_context() writes one LOG line with the values
-- current_setting() returns at that moment, and lets every row through. A row a read returns, or a
-- write changes, has passed the policy, so every read that returned a row has such a line, in its
-- own session, transaction and statement (checked on PostgreSQL 15: prepared statements, generic
-- plans, reads inside functions, COPY TO). The ingester attributes each pgaudit event only from that
-- line; where there is none (no row returned, a role that bypasses row-level security, a table
-- protected with read_context off) the event says app_context = 'unknown', never an older value.
--
-- The policy must not change what anyone may see or do:
-- * a table without row-level security gets it enabled and forced (its owner is covered too) with
--   audit_read_context as its only, permissive, policy: every row, as before;
-- * a table with row-level security of its own gets audit_read_context as a restrictive policy
--   (AND true): its policies decide as before; its FORCE setting is left as it was (without FORCE,
--   its owner's reads bypass every policy, ours too, and are 'unknown').
-- Consequences, in the README: COPY FROM into the table is refused to roles subject to row-level
-- security (PostgreSQL does not support it); pg_dump by a non-superuser needs --enable-row-security;
-- superusers and BYPASSRLS roles are never attributed. `protect --read-context off` leaves a table's
-- row security alone (its reads are then 'unknown').

ALTER TABLE audit.audit_log ADD COLUMN IF NOT EXISTS app_context text;  -- 'unknown': app_user_id and app_customer_id could not be read when it happened
ALTER TABLE audit.protected_tables ADD COLUMN IF NOT EXISTS read_context text
  CHECK (read_context IN ('permissive', 'restrictive'));                 -- how audit_read_context was added; NULL: not added

-- The function's own search_path keeps audit out of the path while it runs, so the server always
-- names it `audit.read_context()` in the line's context: a function of another schema (a forgery
-- that writes the same message) is named otherwise, and no other role can create one in audit.
CREATE OR REPLACE FUNCTION audit.read_context() RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog AS $fn$
BEGIN
  RAISE LOG USING MESSAGE = 'audit read context ' || json_build_object(
    'user', nullif(current_setting('app.user_id', true), ''),
    'customer', nullif(current_setting('app.customer_id', true), ''))::text;
  RETURN true;
END
$fn$;
ALTER FUNCTION audit.read_context() OWNER TO audit_owner;
GRANT EXECUTE ON FUNCTION audit.read_context() TO PUBLIC;

-- The policy's expression as pg_get_expr prints it (search_path = pg_catalog): the DDL guard
-- compares it, so ALTER POLICY ... USING (true) is refused like a disabled trigger.
CREATE OR REPLACE FUNCTION audit.read_context_intact(rel oid, mode text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $fn$
  SELECT EXISTS (
    SELECT FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
     WHERE p.polrelid = rel AND p.polname = 'audit_read_context' AND p.polcmd = '*' AND p.polroles = '{0}'
       AND p.polpermissive = (mode = 'permissive')
       AND pg_get_expr(p.polqual, p.polrelid) = '( SELECT audit.read_context() AS read_context)'
       AND pg_get_expr(p.polwithcheck, p.polrelid) = '( SELECT audit.read_context() AS read_context)'
       AND c.relrowsecurity AND (mode = 'restrictive' OR c.relforcerowsecurity))
$fn$;
REVOKE ALL ON FUNCTION audit.read_context_intact(oid, text) FROM PUBLIC;

-- Add audit_read_context to a table (see the top of this file); returns how. Idempotent.
CREATE OR REPLACE FUNCTION audit.install_read_context(rel oid) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE mode text; expr constant text := '(SELECT audit.read_context())';
BEGIN
  SELECT CASE WHEN polpermissive THEN 'permissive' ELSE 'restrictive' END INTO mode
    FROM pg_policy WHERE polrelid = rel AND polname = 'audit_read_context';
  IF mode IS NOT NULL THEN RETURN mode; END IF;
  IF (SELECT relrowsecurity FROM pg_class WHERE oid = rel) THEN
    mode := 'restrictive';
    EXECUTE format('CREATE POLICY audit_read_context ON %s AS RESTRICTIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)', rel::regclass, expr, expr);
  ELSE
    mode := 'permissive';
    EXECUTE format('CREATE POLICY audit_read_context ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)', rel::regclass, expr, expr);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', rel::regclass);
  END IF;
  RETURN mode;
END
$fn$;
REVOKE ALL ON FUNCTION audit.install_read_context(oid) FROM PUBLIC;

-- Take it off again, leaving the table's row security as protect found it.
CREATE OR REPLACE FUNCTION audit.remove_read_context(rel oid, mode text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
BEGIN
  IF mode IS NULL OR NOT EXISTS (SELECT FROM pg_class WHERE oid = rel) THEN RETURN; END IF;
  EXECUTE format('DROP POLICY IF EXISTS audit_read_context ON %s', rel::regclass);
  IF mode = 'permissive' THEN
    EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', rel::regclass);
  END IF;
END
$fn$;
REVOKE ALL ON FUNCTION audit.remove_read_context(oid, text) FROM PUBLIC;

-- Partitions are not given the policy: a read through the protected (partitioned) table checks the
-- protected table's policies, whatever partitions it scans, and is attributed; a read of a partition
-- by its own name checks the partition's policies only and is recorded with app_context unknown.
-- (Adding the policy to partitions as they are created would make the DDL guard, which covers them,
-- record its own ALTER TABLE as the owner's.)

-- The ingester needs to know which relations attribute their reads (it waits for the line only there).
CREATE OR REPLACE VIEW audit.watched_relations AS
  SELECT pt.schema_name, pt.table_name,
         coalesce(top.schema_name, pt.schema_name) AS protected_schema,
         coalesce(top.table_name, pt.table_name) AS protected_table,
         CASE WHEN top.relid IS NOT NULL THEN format('%I.%I', pt.schema_name, pt.table_name) END AS relation,
         pt.read_context IS NOT NULL AS read_context
    FROM audit.protected_tables pt
    LEFT JOIN audit.protected_tables top ON top.relid = pt.part_of
  UNION ALL
  SELECT n.nspname::text, c.relname::text, pt.schema_name, pt.table_name, format('%I.%I', n.nspname, c.relname), false
    FROM audit.protected_tables pt
    JOIN pg_class me ON me.oid = pt.relid AND me.relispartition
    CROSS JOIN LATERAL pg_partition_ancestors(pt.relid) a
    JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE pt.part_of IS NULL AND a.relid <> pt.relid
  UNION ALL
  SELECT v.s, v.t, v.s, v.t, NULL, false FROM (VALUES ('audit', 'audit_log'), ('pg_catalog', 'pg_stats'),
    ('pg_catalog', 'pg_stats_ext'), ('pg_catalog', 'pg_stats_ext_exprs')) AS v(s, t);

-- The DDL guard: everything version 5 checked, and the read context kept as protect made it.
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

  FOR p IN SELECT pt.schema_name, pt.table_name, pt.relid, pt.part_of, pt.key_columns, pt.key_attnums, pt.read_context,
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

-- protect(): reads attributed through audit_read_context unless attribute_reads is false.
DROP FUNCTION IF EXISTS audit.protect(regclass, text[]);
CREATE OR REPLACE FUNCTION audit.protect(target regclass, key_columns text[] DEFAULT NULL, attribute_reads boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  sch text; tbl text; keys text[]; missing text; kind "char"; is_part boolean; part oid; ctx text; was text;
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
  -- Listed without read_context while the policy changes: the DDL guard these steps fire checks
  -- the policy only of tables listed with it.
  SELECT pt.read_context INTO was FROM audit.protected_tables pt WHERE pt.relid = target AND pt.part_of IS NULL;
  UPDATE audit.protected_tables pt SET read_context = NULL WHERE pt.relid = target AND pt.part_of IS NULL;
  IF attribute_reads THEN
    ctx := audit.install_read_context(target);
  ELSE
    PERFORM audit.remove_read_context(target, was);
  END IF;
  INSERT INTO audit.protected_tables (schema_name, table_name, key_columns, relid, part_of, key_attnums, read_context)
  VALUES (sch, tbl, keys, target, NULL,
          (SELECT array_agg(a.attnum ORDER BY k.ord) FROM unnest(keys) WITH ORDINALITY AS k(name, ord)
             JOIN pg_attribute a ON a.attrelid = target AND a.attname = k.name), ctx)
  ON CONFLICT (schema_name, table_name) DO UPDATE
    SET key_columns = excluded.key_columns, relid = excluded.relid, part_of = NULL, key_attnums = excluded.key_attnums,
        read_context = excluded.read_context;
  PERFORM audit.record_protection_event('PROTECT', sch, tbl, format('key %s; reads attributed by %s', array_to_string(keys, ', '),
    coalesce('the ' || ctx || ' policy audit_read_context', 'nothing (read_context off): their app_context is unknown')));
  IF kind = 'p' THEN
    FOR part IN SELECT audit.cover_partitions(target) LOOP
      PERFORM audit.record_protection_event('PARTITION', sch, tbl, format('%s is a partition of it, now protected with it', part::regclass), part::regclass::text);
    END LOOP;
  END IF;
END
$fn$;

-- unprotect(): the policy goes with the triggers.
CREATE OR REPLACE FUNCTION audit.unprotect(target regclass)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE sch text; tbl text; parts oid[]; part oid; ctx text;
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
  SELECT pt.read_context INTO ctx FROM audit.protected_tables pt WHERE pt.relid = target;
  DELETE FROM audit.protected_tables WHERE relid = target OR (schema_name = sch AND table_name = tbl);
  FOREACH part IN ARRAY coalesce(parts, '{}') LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %s', part::regclass);
    EXECUTE format('REVOKE SELECT ON %s FROM audit_auditor', part::regclass);
  END LOOP;
  EXECUTE format('DROP TRIGGER IF EXISTS audit_row_change ON %I.%I', sch, tbl);
  EXECUTE format('DROP TRIGGER IF EXISTS audit_truncate ON %I.%I', sch, tbl);
  EXECUTE format('REVOKE SELECT ON %I.%I FROM audit_auditor', sch, tbl);
  PERFORM audit.remove_read_context(target, ctx);
  PERFORM audit.record_protection_event('UNPROTECT', sch, tbl, 'auditing stopped');
END
$fn$;
REVOKE ALL ON FUNCTION audit.protect(regclass, text[], boolean), audit.unprotect(regclass) FROM PUBLIC;

-- Tables protected before this version: their reads are attributed from now on.
DO $upgrade$
DECLARE p record;
BEGIN
  FOR p IN SELECT pt.relid FROM audit.protected_tables pt
            WHERE pt.read_context IS NULL AND pt.part_of IS NULL AND EXISTS (SELECT FROM pg_class WHERE oid = pt.relid) LOOP
    UPDATE audit.protected_tables SET read_context = audit.install_read_context(p.relid) WHERE relid = p.relid;
  END LOOP;
END
$upgrade$;

-- One writer per archive. A shipper takes the lease of its slot at start (the generation goes up);
-- before it stores a file's data it checks that the generation is still its own, so a shipper that
-- was paused (a VM frozen) while another took over its slot writes nothing when it wakes, even on a
-- store that ignores conditional writes. (The second check, that the file's digest is not already
-- in the archive, catches the same from the storage's side.)
CREATE TABLE IF NOT EXISTS audit.shipper_lease (
  slot_name  text PRIMARY KEY,
  generation bigint NOT NULL,
  holder     text NOT NULL,         -- host and process of the shipper that took it
  taken_at   timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE audit.shipper_lease OWNER TO audit_owner;
REVOKE ALL ON audit.shipper_lease FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON audit.shipper_lease TO audit_shipper;
