import pg from 'pg';
import { ConfigError, ServiceError } from '../errors.js';
import { describePgError, type Queryable } from '../db.js';
import { parseLsn, type Lsn } from './lsn.js';

export const PUBLICATION = 'audit_log_publication';

/**
 * Session settings for every connection whose text output is archived (the stream and the backfill
 * snapshot): the same row must render to the same bytes on both paths, in UTC, whatever the server's zone.
 */
export const TEXT_OUTPUT_OPTIONS = '-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=iso_8601';

export interface SystemIdentity {
  systemIdentifier: string;
  timeline: number;
  database: string;
}

export interface SlotState {
  /** the slot existed before this start (false: created now) */
  existed: boolean;
  confirmedFlush: Lsn | null;
  walStatus: string | null;
}

/** IDENTIFY_SYSTEM over a replication connection: who we are streaming from. */
export async function identifySystem(config: pg.ClientConfig): Promise<SystemIdentity> {
  const c = new pg.Client({ ...config, replication: 'database' } as pg.ClientConfig);
  try {
    await c.connect();
    const r = await c.query<{ systemid: string; timeline: string; dbname: string }>('IDENTIFY_SYSTEM');
    const row = r.rows[0]!;
    return { systemIdentifier: String(row.systemid), timeline: Number(row.timeline), database: row.dbname };
  } catch (err) {
    const msg = describePgError(err);
    if (/replication|pg_hba/i.test(msg)) {
      throw new ServiceError(`cannot open a replication connection: ${msg}; the shipper's role needs LOGIN REPLICATION and pg_hba.conf must allow it`);
    }
    throw new ServiceError(`cannot open a replication connection: ${msg}`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Make sure our slot exists and is ours: pgoutput, this database, nobody streaming from it. A slot
 * that is shared would acknowledge for two consumers and lose data for one of them.
 */
export async function ensureSlot(client: pg.Client, slot: string): Promise<SlotState> {
  await checkShippingPrerequisites(client);
  return checkOrCreateSlot(client, slot);
}

/** What streaming needs from the server and the schema, with the fix for each. */
export async function checkShippingPrerequisites(client: pg.Client): Promise<void> {
  const {
    rows: [settings],
  } = await client.query<{ wal_level: string }>(`SELECT current_setting('wal_level') AS wal_level`);
  if (settings!.wal_level !== 'logical') {
    throw new ConfigError(`wal_level is ${settings!.wal_level} on the server: set wal_level = logical in postgresql.conf and restart PostgreSQL`);
  }
  const pub = await client.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [PUBLICATION]);
  if (pub.rowCount === 0) {
    throw new ConfigError(`publication ${PUBLICATION} is missing: run \`pg-audit-shipper init\` on this database`);
  }
}

/**
 * How long a slot held by another process may take to be released. A shipper killed with -9 leaves
 * its walsender holding the slot until the server notices the connection is gone (usually within a
 * second, at most wal_sender_timeout); a replacement started meanwhile should wait, not fail.
 */
const SLOT_RELEASE_WAIT_MS = 15_000;

async function released(client: pg.Client, slot: string): Promise<boolean> {
  for (const deadline = Date.now() + SLOT_RELEASE_WAIT_MS; Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 250));
    const r = await client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    if (!r.rows[0]?.active) return true;
  }
  return false;
}

async function checkOrCreateSlot(client: pg.Client, slot: string): Promise<SlotState> {
  const found = await client.query<{
    plugin: string;
    database: string | null;
    slot_type: string;
    active: boolean;
    active_pid: number | null;
    confirmed_flush_lsn: string | null;
    wal_status: string | null;
  }>(
    `SELECT plugin, database, slot_type, active, active_pid, confirmed_flush_lsn::text, wal_status
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const s = found.rows[0];
  if (!s) {
    try {
      const created = await client.query<{ lsn: string }>(`SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      return { existed: false, confirmedFlush: parseLsn(created.rows[0]!.lsn), walStatus: 'reserved' };
    } catch (err) {
      throw new ServiceError(`cannot create replication slot ${slot}: ${describePgError(err)}`);
    }
  }
  const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]!.db;
  if (s.slot_type !== 'logical' || s.plugin !== 'pgoutput') {
    throw new ConfigError(`replication slot ${slot} uses ${s.plugin ?? s.slot_type}, not pgoutput: choose another --slot or drop it`);
  }
  if (s.database !== db) {
    throw new ConfigError(`replication slot ${slot} belongs to database ${s.database}, not ${db}: choose another --slot`);
  }
  if (s.active && !(await released(client, slot))) {
    const who = (
      await client.query<{ addr: string | null; since: string | null; app: string | null }>(
        `SELECT client_addr::text AS addr, backend_start::text AS since, application_name AS app FROM pg_stat_replication WHERE pid = $1`,
        [s.active_pid],
      )
    ).rows[0];
    throw new ServiceError(
      `replication slot ${slot} is in use by process ${s.active_pid}` +
        `${who ? ` (serving ${who.app || 'a client'} from ${who.addr ?? 'a local socket'} since ${who.since})` : ''}: another shipper is running; ` +
        `two consumers of one slot would lose data, so this one will not start (waited ${SLOT_RELEASE_WAIT_MS / 1000}s for it to be released)`,
    );
  }
  if (s.wal_status === 'lost') {
    throw new ServiceError(
      `replication slot ${slot} was invalidated (wal_status = lost): the server removed WAL it still needed, ` +
        'so audit events were not streamed. Drop the slot to start a new one; the archive will record the gap',
    );
  }
  return { existed: true, confirmedFlush: s.confirmed_flush_lsn ? parseLsn(s.confirmed_flush_lsn) : null, walStatus: s.wal_status };
}

export interface SlotHealth {
  walStatus: string | null;
  /** bytes of WAL between the server's current position and what the slot confirmed */
  lagBytes: number | null;
  /** bytes left before max_slot_wal_keep_size invalidates the slot (null: unlimited) */
  safeWalSize: number | null;
}

/** Where the slot is confirmed up to: null while nothing is, undefined when there is no such slot. */
export async function slotConfirmed(client: Queryable, slot: string): Promise<Lsn | null | undefined> {
  const r = await client.query<{ lsn: string | null }>('SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1', [slot]);
  const row = r.rows[0];
  if (!row) return undefined;
  return row.lsn ? parseLsn(row.lsn) : null;
}

export async function slotHealth(client: Queryable, slot: string): Promise<SlotHealth | null> {
  const r = await client.query<{ wal_status: string | null; lag: string | null; safe_wal_size: string | null }>(
    `SELECT wal_status, (pg_current_wal_lsn() - confirmed_flush_lsn)::text AS lag, safe_wal_size::text
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const row = r.rows[0];
  if (!row) return null;
  return {
    walStatus: row.wal_status,
    lagBytes: row.lag === null ? null : Number(row.lag),
    safeWalSize: row.safe_wal_size === null ? null : Number(row.safe_wal_size),
  };
}
