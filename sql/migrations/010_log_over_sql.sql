-- The server's csvlog read through SQL (ingest --log-source sql), so the ingester needs neither the
-- database host nor the server's file functions, which read any file of the data directory (the
-- tables' own pages included). Two SECURITY DEFINER functions owned by audit_owner read csvlog and
-- jsonlog files of log_directory and nothing else; audit_ingester may call them.

GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_logdir() TO audit_owner;
GRANT pg_read_all_settings TO audit_owner; -- log_directory is readable by superusers and this role only
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO audit_owner;

CREATE OR REPLACE FUNCTION audit.log_files() RETURNS TABLE (name text, size bigint, modification timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT l.name, l.size, l.modification FROM pg_catalog.pg_ls_logdir() AS l WHERE l.name ~ '^[A-Za-z0-9._-]+\.(csv|json)$'
$$;
ALTER FUNCTION audit.log_files() OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.log_files() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.log_files() TO audit_ingester;

-- `bytes` bytes of csvlog or jsonlog file `name` from byte `from_byte`; NULL when the file is gone. A name is a
-- plain file name (no directory part): nothing outside log_directory, nothing but the server's csvlog and jsonlog files.
CREATE OR REPLACE FUNCTION audit.read_log(name text, from_byte bigint, bytes bigint) RETURNS bytea
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  IF name IS NULL OR name !~ '^[A-Za-z0-9._-]+\.(csv|json)$' THEN
    RAISE EXCEPTION 'not a csvlog or jsonlog file name: %', name USING ERRCODE = '22023';
  END IF;
  IF from_byte < 0 OR bytes < 0 OR bytes > 16777216 THEN
    RAISE EXCEPTION 'bytes % from % is no range read_log serves (at most 16 MiB at a time)', bytes, from_byte USING ERRCODE = '22023';
  END IF;
  RETURN pg_catalog.pg_read_binary_file(pg_catalog.current_setting('log_directory') || '/' || name, from_byte, bytes, true);
END
$$;
ALTER FUNCTION audit.read_log(text, bigint, bigint) OWNER TO audit_owner;
REVOKE ALL ON FUNCTION audit.read_log(text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.read_log(text, bigint, bigint) TO audit_ingester;
