import type pg from 'pg';
import { latestMigration } from './migrate.js';
import { EVENT_TRIGGERS, PLATFORM_ROLES, SETTINGS, type ServerFacts } from './platform.js';

/** What src/capture/platform.ts judges, read off the server in a few catalog queries (any login can). */
export async function readServerFacts(client: pg.Client, slot: string): Promise<ServerFacts> {
  const settings = await client.query<{ name: string; setting: string }>('SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])', [
    [...SETTINGS, 'server_version_num'],
  ]);
  const byName = Object.fromEntries(settings.rows.map((r) => [r.name, r.setting]));
  const login = await client.query<{ name: string; superuser: boolean; replication: boolean; member_of: string[] }>(
    `SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolreplication AS replication,
            ARRAY(SELECT g.rolname FROM pg_roles g WHERE g.oid <> r.oid AND pg_has_role(r.oid, g.oid, 'MEMBER') ORDER BY 1)::text[] AS member_of
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const roles = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [PLATFORM_ROLES]);
  const applied = await client
    .query<{ id: string }>(`SELECT id FROM audit.schema_migrations ORDER BY id`)
    .then((r) => r.rows.map((x) => x.id))
    .catch(() => [] as string[]); // no schema (or no access to it): not installed, as far as this login can tell
  const extensions = await client.query<{ extname: string }>('SELECT extname FROM pg_extension');
  const emit = await client.query<{ public: boolean }>(
    `SELECT EXISTS (SELECT FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                    WHERE p.oid = 'pg_catalog.pg_logical_emit_message(boolean, text, text)'::regprocedure
                      AND a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS public`,
  );
  const triggers = await client.query<{ evtname: string; evtenabled: string }>(
    'SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname = ANY($1::text[])',
    [EVENT_TRIGGERS],
  );
  const slots = await client.query<{ free: number; status: string | null }>(
    `SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)::int AS free,
            (SELECT coalesce(wal_status, 'reserved') FROM pg_replication_slots WHERE slot_name = $1) AS status`,
    [slot],
  );
  const gaps = await client
    .query<{ gap: string; consequence: string; remedy: string }>('SELECT gap, consequence, remedy FROM audit.capture_gaps ORDER BY gap')
    .then((r) => r.rows)
    .catch(() => []); // before version 13, or not readable by this login: none known
  const statementReads = await client
    .query<{ name: string }>(
      `SELECT format('%I.%I', schema_name, table_name) AS name FROM audit.protected_tables
        WHERE part_of IS NULL AND row_reads IS NULL ORDER BY 1`,
    )
    .then((r) => r.rows.map((x) => x.name))
    .catch((err: unknown) => {
      // No schema, or one before row reads (version 8): no table protected that way. Not readable by
      // this login: unknown, which is not the same as none.
      const code = (err as { code?: string }).code;
      return code === '42P01' || code === '3F000' || code === '42703' ? [] : null;
    });
  const me = login.rows[0]!;
  return {
    version: Number(byName.server_version_num),
    settings: byName,
    adminRoles: roles.rows.map((r) => r.rolname),
    login: { name: me.name, superuser: me.superuser, replication: me.replication, memberOf: me.member_of },
    schema: { applied, latest: await latestMigration() },
    extensions: extensions.rows.map((r) => r.extname),
    emitMessagePublic: emit.rows[0]!.public,
    eventTriggers: Object.fromEntries(triggers.rows.map((r) => [r.evtname, r.evtenabled])),
    gaps,
    statementReadTables: statementReads,
    freeSlots: slots.rows[0]!.free,
    slot: { name: slot, walStatus: slots.rows[0]!.status ?? 'missing' },
  };
}
