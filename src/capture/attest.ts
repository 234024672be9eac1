import { hash } from 'node:crypto';
import type { Queryable } from '../db.js';

/**
 * What capture depends on, as the catalogs say it is now. Roles the database cannot stop (a
 * superuser, a CREATEROLE holder who grants itself audit_owner or a table's owner role) can switch
 * capture off without a trace in audit_log; they cannot do it without changing something here, and
 * the shipper appends this to the trail (audit.attest) at start, when it changes, and at least once
 * per heartbeat interval, so `verify` shows when it changed and how (src/verify/attestations.ts).
 *
 * One query, sent by the shipper and read from pg_catalog: nothing in the audit schema (which those
 * roles control) computes it. Key order is jsonb's, stable across runs and servers.
 */
const CAPTURE_CONFIG_SQL = `
SELECT jsonb_build_object(
  'settings', (SELECT jsonb_object_agg(name, setting) FROM pg_catalog.pg_settings
                WHERE name IN ('shared_preload_libraries', 'pgaudit.log', 'pgaudit.role', 'pgaudit.log_level', 'pgaudit.log_relation',
                               'log_destination', 'logging_collector', 'log_directory', 'log_filename', 'log_min_messages', 'log_error_verbosity')),
  'role_settings', (SELECT coalesce(jsonb_object_agg(coalesce(r.rolname, '*') || ' in ' || coalesce(d.datname, '*'), to_jsonb(s.setconfig)), '{}')
                      FROM pg_catalog.pg_db_role_setting s
                      LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
                      LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
                     WHERE s.setdatabase = 0 OR d.datname = current_database()),
  'tables', (SELECT coalesce(jsonb_object_agg(format('%I.%I', pt.schema_name, pt.table_name), jsonb_build_object(
                'exists', c.oid IS NOT NULL,
                'part_of', CASE WHEN pt.part_of IS NOT NULL THEN pt.part_of::regclass::text END,
                'key', to_jsonb(pt.key_columns),
                'owner', pg_catalog.pg_get_userbyid(c.relowner),
                'triggers', (SELECT coalesce(jsonb_object_agg(t.tgname, t.tgenabled::text), '{}') FROM pg_catalog.pg_trigger t
                              WHERE t.tgrelid = c.oid AND t.tgname IN ('audit_row_change', 'audit_truncate')),
                'auditor_select', c.oid IS NOT NULL AND pg_catalog.has_table_privilege('audit_auditor', c.oid, 'SELECT'),
                'rules', (SELECT count(*) FROM pg_catalog.pg_rewrite WHERE ev_class = c.oid AND rulename <> '_RETURN'),
                -- reads are attributed through this policy (migration 007): its loss makes them 'unknown'
                'row_security', jsonb_build_object('enabled', c.relrowsecurity, 'forced', c.relforcerowsecurity, 'read_context', pt.read_context,
                  'policy', (SELECT (CASE WHEN pol.polpermissive THEN 'permissive ' ELSE 'restrictive ' END) || pol.polcmd::text || ' ' ||
                                    coalesce(pg_catalog.pg_get_expr(pol.polqual, pol.polrelid), '') || ' / ' || coalesce(pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid), '')
                               FROM pg_catalog.pg_policy pol WHERE pol.polrelid = c.oid AND pol.polname = 'audit_read_context')))), '{}')
               FROM audit.protected_tables pt LEFT JOIN pg_catalog.pg_class c ON c.oid = pt.relid),
  'functions', (SELECT coalesce(jsonb_object_agg(p.oid::regprocedure::text,
                  pg_catalog.pg_get_userbyid(p.proowner) || ' ' || encode(sha256(convert_to(pg_catalog.pg_get_functiondef(p.oid), 'UTF8')), 'hex')), '{}')
                  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'audit' AND p.prokind IN ('f', 'p')),
  -- who may write logical decoding messages: row reads are such messages (migration 008 revokes it
  -- from PUBLIC), so a grant back would let an application write made-up reads
  'emit_message', (SELECT coalesce(jsonb_object_agg(p.oid::regprocedure::text, coalesce(p.proacl::text, 'default: PUBLIC may execute')), '{}')
                     FROM pg_catalog.pg_proc p WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace),
  'event_triggers', (SELECT coalesce(jsonb_object_agg(e.evtname, jsonb_build_object('event', e.evtevent, 'enabled', e.evtenabled::text,
                       'function', e.evtfoid::regprocedure::text, 'owner', pg_catalog.pg_get_userbyid(e.evtowner), 'tags', to_jsonb(e.evttags))), '{}')
                       FROM pg_catalog.pg_event_trigger e),
  'audit_log', (SELECT jsonb_build_object(
                  'relid', c.oid::text, 'owner', pg_catalog.pg_get_userbyid(c.relowner),
                  'triggers', (SELECT coalesce(jsonb_object_agg(t.tgname, t.tgenabled::text || ' ' || p.oid::regprocedure::text), '{}')
                                 FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
                  'publication', (SELECT jsonb_build_object('insert', pub.pubinsert, 'update', pub.pubupdate, 'delete', pub.pubdelete,
                                    'truncate', pub.pubtruncate, 'all_tables', pub.puballtables,
                                    'tables', (SELECT coalesce(jsonb_agg(pr.prrelid::regclass::text ORDER BY pr.prrelid::regclass::text), '[]')
                                                 FROM pg_catalog.pg_publication_rel pr WHERE pr.prpubid = pub.oid),
                                    'row_filter', (SELECT pg_catalog.pg_get_expr(pr.prqual, pr.prrelid) FROM pg_catalog.pg_publication_rel pr
                                                    WHERE pr.prpubid = pub.oid AND pr.prrelid = c.oid),
                                    'columns', (SELECT pr.prattrs::text FROM pg_catalog.pg_publication_rel pr WHERE pr.prpubid = pub.oid AND pr.prrelid = c.oid))
                                    FROM pg_catalog.pg_publication pub WHERE pub.pubname = 'audit_log_publication'))
                  FROM pg_catalog.pg_class c WHERE c.oid = 'audit.audit_log'::regclass),
  'roles', jsonb_build_object(
     'superusers', (SELECT jsonb_agg(rolname ORDER BY rolname) FROM pg_catalog.pg_roles WHERE rolsuper),
     'createrole', (SELECT coalesce(jsonb_agg(rolname ORDER BY rolname), '[]') FROM pg_catalog.pg_roles WHERE rolcreaterole AND NOT rolsuper),
     'members', (SELECT jsonb_object_agg(g.rolname, (SELECT coalesce(jsonb_agg(m.rolname ORDER BY m.rolname), '[]') FROM pg_catalog.pg_roles m
                                                       WHERE m.oid <> g.oid AND NOT m.rolsuper AND pg_catalog.pg_has_role(m.oid, g.oid, 'MEMBER')))
                   FROM pg_catalog.pg_roles g
                  WHERE g.rolname IN ('audit_owner', 'audit_auditor', 'audit_shipper', 'audit_ingester', 'audit_reviewer',
                                      'pg_execute_server_program', 'pg_write_server_files', 'pg_read_server_files', 'pg_read_all_data', 'pg_write_all_data')
                     OR g.oid IN (SELECT c.relowner FROM audit.protected_tables pt JOIN pg_catalog.pg_class c ON c.oid = pt.relid)))
)::text AS config`;

export type CaptureConfig = Record<string, unknown>;

export async function readCaptureConfig(client: Queryable): Promise<CaptureConfig> {
  const { rows } = await client.query<{ config: string }>(CAPTURE_CONFIG_SQL);
  return JSON.parse(rows[0]!.config) as CaptureConfig;
}

/** The document appended to the trail (audit_log.statement of an 'attest' record); see docs/format.md. */
export interface Attestation {
  attestation: 1;
  /** the next attestation comes within this many seconds (the shipper's heartbeat interval) */
  interval_s: number;
  /** SHA-256 of the config's JSON text as written here */
  config_sha256: string;
  config: CaptureConfig;
}

export { ATTEST_ACTION, ATTEST_SOURCE } from './attest-record.js';

export function attestation(config: CaptureConfig, intervalS: number): Attestation {
  return { attestation: 1, interval_s: intervalS, config_sha256: hash('sha256', JSON.stringify(config), 'hex'), config };
}

/** Append it to the trail; returns the audit_log id. */
export async function appendAttestation(client: Queryable, a: Attestation): Promise<string> {
  const { rows } = await client.query<{ id: string }>('SELECT audit.attest($1)::text AS id', [JSON.stringify(a)]);
  return rows[0]!.id;
}
